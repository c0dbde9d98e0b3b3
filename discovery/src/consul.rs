//! Consul over its HTTP API, as docs/consul.md describes: health blocking queries for discovery,
//! agent service registration with a TTL check for the local service, and the Connect CA's
//! roots and leaf certificates for the mesh identity. Control plane only; it must never
//! special-case the in-repo Consul double.

mod client;
pub mod connect;
mod registration;
mod watch;
pub mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use client::{ConsulClient, HealthAnswer, HealthQuery};
pub use connect::{CaRoot, CaRoots, LeafCert};
pub use registration::{
    CheckStatus, ConsulRegistration, Heartbeat, ServiceRegistration, ServiceWeights,
};
pub use watch::{ConsulWatch, ConsulWatchConfig, RateLimit};

/// How to reach the local Consul agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulConfig {
    /// The agent's HTTP address: `http://127.0.0.1:8500` or just `127.0.0.1:8500`.
    pub address: String,
    /// Sent as `X-Consul-Token` (a header, never `?token=`, so it stays out of access logs).
    pub token: Option<String>,
    pub connect_timeout: Duration,
    /// Deadline for non-blocking calls; blocking queries get `wait * 17/16` on top of it.
    pub request_timeout: Duration,
}

impl ConsulConfig {
    pub const DEFAULT_ADDRESS: &'static str = "http://127.0.0.1:8500";
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

impl Default for ConsulConfig {
    fn default() -> Self {
        Self::new(Self::DEFAULT_ADDRESS)
    }
}

/// A duration as Go's `time.ParseDuration` reads it (`"15s"`, `"1500ms"`): Consul's `wait`,
/// `TTL` and `DeregisterCriticalServiceAfter` are Go durations, and a bare number is rejected.
pub(crate) fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}ns", duration.as_nanos())
    }
}
