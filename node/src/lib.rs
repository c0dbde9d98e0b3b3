//! meshgate, the node: one binary that is both the API gateway at the edge and the sidecar
//! beside each service. This crate is the data plane (hyper server, router, proxy, admin API)
//! and the CLI; the control plane lives in `meshgate-actors`.

pub mod admin;
pub mod cli;
pub mod error;
pub mod filters;
pub mod mesh;
pub mod node;
pub mod proxy;
pub mod router;
pub mod server;
pub mod telemetry;

pub use node::{ApplyError, Node, NodeHandle, StartError};

/// The config `meshgate run` uses when no `--config` is given: the quickstart example.
pub const EMBEDDED_DEFAULT_CONFIG: &str = include_str!("../../examples/quickstart.yaml");
