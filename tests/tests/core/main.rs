//! End-to-end tests of the proxy core (issue 2): routing, proxying over HTTP/1.1 and h2c,
//! balancing, streaming, upgrades, reloads, draining, supervision and the CLI.
#![allow(clippy::unwrap_used)]

mod balancing;
mod cli;
mod lifecycle;
mod observability;
mod proxying;
mod routing;
mod streaming;
