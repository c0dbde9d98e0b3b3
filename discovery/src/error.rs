//! The one error type of discovery and registration, classified so a caller can tell a registry
//! that is down for now (retry with backoff, keep last-known endpoints) from a configuration that
//! will never work (report it), and an agent that forgot us (register again).

use std::fmt;
use std::time::Duration;

/// Which registry an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Static,
    Dns,
    Consul,
    Etcd,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Static => "static",
            Backend::Dns => "dns",
            Backend::Consul => "consul",
            Backend::Etcd => "etcd",
        })
    }
}

/// Why a discovery or registration call failed. Reasons are kept as text so the error is
/// `Clone` and can travel in actor messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The registry could not be reached, or the connection broke mid-call. Transient.
    #[error("{backend}: cannot reach {target}: {reason}")]
    Unreachable {
        backend: Backend,
        target: String,
        reason: String,
    },
    /// No answer in time. Transient.
    #[error("{backend}: no answer from {target} within {after:?}")]
    Timeout {
        backend: Backend,
        target: String,
        after: Duration,
    },
    /// The registry answered with a server-side failure (HTTP 5xx or 429, gRPC unavailable,
    /// DNS SERVFAIL). Transient.
    #[error("{backend}: {target} failed with {status}: {body}")]
    Server {
        backend: Backend,
        target: String,
        status: u16,
        body: String,
    },
    /// The registry refused the request (HTTP 4xx such as 400 or 403). Retrying the same
    /// request will not help: permanent.
    #[error("{backend}: {target} rejected the request with {status}: {body}")]
    Rejected {
        backend: Backend,
        target: String,
        status: u16,
        body: String,
    },
    /// The agent no longer knows our service or check (agent restarted, service reaped):
    /// register again, then resume heartbeats.
    #[error("{backend}: {what} is not registered: {body}")]
    NotRegistered {
        backend: Backend,
        what: String,
        body: String,
    },
    /// The answer could not be understood (bad JSON, missing index header). Transient: a
    /// proxy or a half-restarted agent can produce this.
    #[error("{backend}: invalid answer from {target}: {reason}")]
    InvalidResponse {
        backend: Backend,
        target: String,
        reason: String,
    },
    /// The configuration can never work (bad address, empty service name). Permanent.
    #[error("{backend}: invalid configuration: {reason}")]
    Config { backend: Backend, reason: String },
}

impl DiscoveryError {
    /// True when retrying later may succeed without any change of configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            DiscoveryError::Unreachable { .. }
            | DiscoveryError::Timeout { .. }
            | DiscoveryError::Server { .. }
            | DiscoveryError::NotRegistered { .. }
            | DiscoveryError::InvalidResponse { .. } => true,
            DiscoveryError::Rejected { .. } | DiscoveryError::Config { .. } => false,
        }
    }

    /// True when the agent has forgotten the registration and the caller should register again.
    pub fn is_not_registered(&self) -> bool {
        matches!(self, DiscoveryError::NotRegistered { .. })
    }

    pub fn backend(&self) -> Backend {
        match self {
            DiscoveryError::Unreachable { backend, .. }
            | DiscoveryError::Timeout { backend, .. }
            | DiscoveryError::Server { backend, .. }
            | DiscoveryError::Rejected { backend, .. }
            | DiscoveryError::NotRegistered { backend, .. }
            | DiscoveryError::InvalidResponse { backend, .. }
            | DiscoveryError::Config { backend, .. } => *backend,
        }
    }

    pub(crate) fn config(backend: Backend, reason: impl Into<String>) -> Self {
        DiscoveryError::Config {
            backend,
            reason: reason.into(),
        }
    }
}

/// An error and its sources on one line, without repeating a cause already in the text.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
