//! The control plane's one error type: why a config was not applied, a config file not read, a
//! certificate was not renewed or a target did not resolve. Each message names the config
//! field it concerns; nothing here is shown to a client.

use std::net::SocketAddr;
use std::time::Duration;

use meshgate_config::ConfigError;

use crate::mesh::IdentityError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The config did not load, validate or compile, or its files did not load: every
    /// problem found, one per line, each with its field path.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<String>),
    #[error("cannot read config file {path}: {reason}")]
    ReadConfig { path: String, reason: String },
    #[error("{field}: cannot bind {address}: {source}")]
    Bind {
        field: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "listeners: this reload would remove every listener ({}); the node keeps serving. \
         Set server.allow_removing_all_listeners: true to do it on purpose",
        .names.join(", ")
    )]
    RemovesEveryListener { names: Vec<String> },
    /// A setting that passed validation but could not be put in place (CA files, TLS).
    #[error("{field}: {reason}")]
    Setting { field: String, reason: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "mesh.identity: the source issued {issued}, not {expected}; keeping the current certificate"
    )]
    IdentityChanged { issued: String, expected: String },
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("the supervisor did not answer: {0}")]
    SupervisorUnavailable(String),
    #[error("applying the config took longer than {0:?}")]
    ApplyTimedOut(Duration),
    #[error("{host}: {reason}")]
    Resolve { host: String, reason: String },
    /// A supervised loop ended although nobody asked it to; its actor fails and is restarted.
    #[error("{0}")]
    LoopEnded(&'static str),
    #[error("cannot register the listening socket with the runtime: {0}")]
    RegisterSocket(#[source] std::io::Error),
}

impl ControlError {
    /// Every problem of a config or of the files it names.
    pub fn invalid<E: ToString>(problems: impl IntoIterator<Item = E>) -> Self {
        ControlError::Invalid(problems.into_iter().map(|p| p.to_string()).collect())
    }

    pub fn setting(field: impl Into<String>, reason: impl ToString) -> Self {
        ControlError::Setting {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<Vec<ConfigError>> for ControlError {
    fn from(errors: Vec<ConfigError>) -> Self {
        ControlError::invalid(errors)
    }
}

fn join_lines(lines: &[String]) -> String {
    lines.join("\n")
}
