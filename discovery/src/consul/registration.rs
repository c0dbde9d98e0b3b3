//! Registration of the local service in the Consul agent with a TTL check, the heartbeats that
//! keep the check alive, and deregistration (docs/consul.md §2–3). The caller (the `Registrar`
//! actor) decides when to beat and with which status; this module only speaks the protocol.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::client::ConsulClient;
use super::go_duration;
use super::wire::{RegisterBody, TtlCheckBody, Weights};
use crate::error::{Backend, DiscoveryError};

/// A TTL check status, as the `pass|warn|fail` endpoints set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    /// The status name in Consul's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// The verb of `PUT /v1/agent/check/<verb>/:check_id`.
    pub(crate) fn verb(self) -> &'static str {
        match self {
            CheckStatus::Passing => "pass",
            CheckStatus::Warning => "warn",
            CheckStatus::Critical => "fail",
        }
    }
}

/// Consul's `Weights`: traffic share while passing and while in warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceWeights {
    pub passing: u32,
    pub warning: u32,
}

/// The local service as it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRegistration {
    /// Unique per agent, e.g. `web-10.0.0.5-8080`.
    pub id: String,
    pub name: String,
    /// `None`: the agent's node address. Never `0.0.0.0`/`::` (the agent answers 400).
    pub address: Option<IpAddr>,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    /// `None`: Consul's default `{"Passing":1,"Warning":1}`.
    pub weights: Option<ServiceWeights>,
    /// The TTL check's TTL: a heartbeat must arrive within it.
    pub ttl: Duration,
    /// Consul removes the service after its check stayed critical this long (the agent raises
    /// anything under 1 minute to 1 minute, and reaps every 30 s).
    pub deregister_critical_after: Duration,
    /// `None`: the check starts critical (Consul's default), so traffic only arrives after the
    /// first passing heartbeat.
    pub initial_status: Option<CheckStatus>,
}

impl ServiceRegistration {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
    pub const DEFAULT_DEREGISTER_CRITICAL_AFTER: Duration = Duration::from_secs(90 * 60);

    pub fn new(id: impl Into<String>, name: impl Into<String>, port: u16) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            address: None,
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: None,
            ttl: Self::DEFAULT_TTL,
            deregister_critical_after: Self::DEFAULT_DEREGISTER_CRITICAL_AFTER,
            initial_status: None,
        }
    }

    fn body(&self) -> RegisterBody {
        RegisterBody {
            id: self.id.clone(),
            name: self.name.clone(),
            tags: self.tags.clone(),
            address: self.address.map(|a| a.to_string()),
            port: self.port,
            meta: self.meta.clone(),
            weights: self.weights.map(|w| Weights {
                passing: i64::from(w.passing),
                warning: i64::from(w.warning),
            }),
            check: TtlCheckBody {
                ttl: go_duration(self.ttl),
                deregister_critical_service_after: go_duration(self.deregister_critical_after),
                status: self.initial_status.map(|s| s.as_str().to_owned()),
                notes: Some(format!(
                    "meshgate TTL heartbeat every {:?}",
                    heartbeat_interval(self.ttl)
                )),
            },
        }
    }

    #[cfg(test)]
    pub(crate) fn body_for_tests(&self) -> RegisterBody {
        self.body()
    }

    fn validate(&self) -> Result<(), DiscoveryError> {
        let invalid = |reason: &str| Err(DiscoveryError::config(Backend::Consul, reason));
        if self.id.is_empty() || self.name.is_empty() {
            return invalid("a registration needs a service ID and a name");
        }
        if self.address.is_some_and(|a| a.is_unspecified()) {
            return invalid(
                "the service address may not be 0.0.0.0 or :: (Consul: Invalid service address)",
            );
        }
        if self.ttl < Duration::from_secs(1) {
            return invalid("the check TTL must be at least 1s");
        }
        Ok(())
    }
}

/// What a heartbeat took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The check was updated.
    Sent,
    /// The agent had forgotten the service (restart, reaper): it was registered again, then
    /// the check updated.
    Reregistered,
}

/// The local service's registration in one Consul agent.
#[derive(Debug, Clone)]
pub struct ConsulRegistration {
    client: ConsulClient,
    service: ServiceRegistration,
}

impl ConsulRegistration {
    pub fn new(client: ConsulClient, service: ServiceRegistration) -> Result<Self, DiscoveryError> {
        service.validate()?;
        Ok(Self { client, service })
    }

    pub fn service(&self) -> &ServiceRegistration {
        &self.service
    }

    /// The TTL check's ID: `service:<ID>`, the agent's name for a service's only check (§2).
    pub fn check_id(&self) -> String {
        format!("service:{}", self.service.id)
    }

    /// How often to beat: a third of the TTL, so two beats can be lost before it expires.
    pub fn heartbeat_interval(&self) -> Duration {
        heartbeat_interval(self.service.ttl)
    }

    /// Registers (or re-registers: the agent keeps the check's state) the service and its check.
    pub async fn register(&self) -> Result<(), DiscoveryError> {
        self.client.register(&self.service.body()).await
    }

    /// Sets the TTL check to `status` with `note` as its output. If the agent no longer knows
    /// the check, registers again and retries once.
    pub async fn heartbeat(
        &self,
        status: CheckStatus,
        note: &str,
    ) -> Result<Heartbeat, DiscoveryError> {
        let check_id = self.check_id();
        match self.client.update_ttl_check(&check_id, status, note).await {
            Ok(()) => Ok(Heartbeat::Sent),
            Err(error) if error.is_not_registered() => {
                tracing::warn!(%error, service_id = %self.service.id, "consul: registering again");
                self.register().await?;
                self.client
                    .update_ttl_check(&check_id, status, note)
                    .await?;
                Ok(Heartbeat::Reregistered)
            }
            Err(error) => Err(error),
        }
    }

    /// Removes the service and its check; an already-unknown service counts as removed.
    pub async fn deregister(&self) -> Result<(), DiscoveryError> {
        self.client.deregister(&self.service.id).await
    }
}

fn heartbeat_interval(ttl: Duration) -> Duration {
    ttl / 3
}
