//! TLS end to end (issue 5): edge termination — SNI, versions, ALPN, HSTS, client
//! certificates, certificate reloads, and Mozilla's "modern" profile checked by sslyze; the
//! mesh, including identities from Consul Connect's CA.
#![allow(clippy::unwrap_used)]

mod consul_connect;
mod edge;
mod example_mesh;
mod mesh;
mod upstream;
