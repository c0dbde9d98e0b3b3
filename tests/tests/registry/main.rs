//! Discovery and registration end to end (issue 4): the Registrar keeping the local service
//! registered with heartbeats that follow its health, and gateways following the registry.
#![allow(clippy::unwrap_used)]

mod registrar;
