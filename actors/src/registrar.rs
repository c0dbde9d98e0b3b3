//! The `Registrar` actor: registers the local service in Consul (with a TTL check) or etcd
//! (under a lease), probes the local application's health endpoint and heartbeats at a third
//! of the TTL — passing or critical in Consul; in etcd an unhealthy instance's key is removed
//! and written again once healthy — and deregisters on graceful shutdown.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate_config::model::DiscoveryConfig;
use meshgate_config::model::discovery::{RegistrationBackend, RegistrationConfig};
use meshgate_discovery::{
    CheckStatus, ConsulClient, ConsulConfig, ConsulRegistration, DiscoveryError, Endpoint,
    EtcdConfig, EtcdRegistration, EtcdRegistrationHandle, Heartbeat, ServiceRegistration,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};

#[derive(Default)]
pub struct Registrar;

pub struct RegistrarArgs {
    pub registration: RegistrationConfig,
    pub connections: DiscoveryConfig,
}

pub enum RegistrarMsg {
    /// Probe the local application and report its health.
    Beat,
}

// One per node, held in the actor's state and never moved on a hot path: size is irrelevant.
#[allow(clippy::large_enum_variant)]
enum Registry {
    Consul {
        registration: ConsulRegistration,
        registered: bool,
    },
    Etcd {
        config: EtcdConfig,
        prefix: String,
        endpoint: Endpoint,
        handle: Option<EtcdRegistrationHandle>,
    },
}

pub struct RegistrarState {
    registry: Registry,
    service: String,
    ttl: Duration,
    health: Option<(String, Duration)>,
    probe: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    timer: Option<ractor::concurrency::JoinHandle<Result<(), ractor::MessagingErr<RegistrarMsg>>>>,
}

impl Actor for Registrar {
    type Msg = RegistrarMsg;
    type State = RegistrarState;
    type Arguments = RegistrarArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let reg = &args.registration;
        let registry =
            build_registry(reg, &args.connections).map_err(|e| format!("registration: {e}"))?;
        let _ = myself.cast(RegistrarMsg::Beat);
        Ok(RegistrarState {
            registry,
            service: reg.service.clone(),
            ttl: reg.ttl.get(),
            health: reg
                .health_check
                .as_ref()
                .map(|h| (h.url.clone(), h.timeout.get())),
            probe: Client::builder(TokioExecutor::new()).build_http(),
            timer: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistrarMsg::Beat => {
                let (healthy, note) = state.probe_local().await;
                if let Err(e) = state.report(healthy, &note).await {
                    tracing::warn!(service = %state.service, error = %e, "registration heartbeat failed; retrying next beat");
                }
                let interval = state.ttl / 3;
                state.timer = Some(myself.send_after(interval, || RegistrarMsg::Beat));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        let result = match &mut state.registry {
            Registry::Consul { registration, .. } => registration.deregister().await,
            Registry::Etcd { handle, .. } => match handle.take() {
                Some(handle) => handle.deregister().await,
                None => Ok(()),
            },
        };
        match result {
            Ok(()) => tracing::info!(service = %state.service, "deregistered"),
            Err(e) => tracing::warn!(service = %state.service, error = %e, "deregistration failed"),
        }
        Ok(())
    }
}

fn build_registry(
    reg: &RegistrationConfig,
    connections: &DiscoveryConfig,
) -> Result<Registry, DiscoveryError> {
    let address: IpAddr = reg.address.parse().map_err(|_| DiscoveryError::Config {
        backend: meshgate_discovery::Backend::Static,
        reason: format!("{:?} is not an IP address", reg.address),
    })?;
    let id = reg
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}", reg.service, reg.address, reg.port));
    match reg.backend {
        RegistrationBackend::Consul => {
            let conn = connections.consul.as_ref().ok_or(DiscoveryError::Config {
                backend: meshgate_discovery::Backend::Consul,
                reason: "discovery.consul is not configured".into(),
            })?;
            let client = ConsulClient::new(&ConsulConfig {
                token: conn.token.clone(),
                ..ConsulConfig::new(conn.address.clone())
            })?;
            let service = ServiceRegistration {
                address: Some(address),
                tags: reg.tags.clone(),
                meta: reg.meta.clone(),
                ttl: reg.ttl.get(),
                deregister_critical_after: reg.deregister_critical_after.get(),
                ..ServiceRegistration::new(id, reg.service.clone(), reg.port)
            };
            Ok(Registry::Consul {
                registration: ConsulRegistration::new(client, service)?,
                registered: false,
            })
        }
        RegistrationBackend::Etcd => {
            let conn = connections.etcd.as_ref().ok_or(DiscoveryError::Config {
                backend: meshgate_discovery::Backend::Etcd,
                reason: "discovery.etcd is not configured".into(),
            })?;
            let mut endpoint = Endpoint::new(address, reg.port)
                .with_tags(reg.tags.clone())
                .with_id(id);
            for (key, value) in &reg.meta {
                endpoint = endpoint.with_metadata(key.clone(), value.clone());
            }
            Ok(Registry::Etcd {
                config: EtcdConfig::new(conn.endpoints.clone()),
                prefix: conn.prefix.clone(),
                endpoint,
                handle: None,
            })
        }
    }
}

impl RegistrarState {
    /// Healthy when there is no probe, or the probe answered 2xx in time.
    async fn probe_local(&self) -> (bool, String) {
        let Some((url, timeout)) = &self.health else {
            return (true, "no local health check configured".into());
        };
        let Ok(uri) = url.parse::<http::Uri>() else {
            return (false, format!("invalid health check url {url}"));
        };
        match tokio::time::timeout(*timeout, self.probe.get(uri)).await {
            Ok(Ok(response)) if response.status().is_success() => {
                (true, format!("{url}: {}", response.status()))
            }
            Ok(Ok(response)) => (false, format!("{url}: {}", response.status())),
            Ok(Err(e)) => (false, format!("{url}: {e}")),
            Err(_) => (false, format!("{url}: no answer within {timeout:?}")),
        }
    }

    async fn report(&mut self, healthy: bool, note: &str) -> Result<(), DiscoveryError> {
        let service = self.service.clone();
        match &mut self.registry {
            Registry::Consul {
                registration,
                registered,
            } => {
                if !*registered {
                    registration.register().await?;
                    *registered = true;
                    tracing::info!(%service, "registered in consul");
                }
                let status = if healthy {
                    CheckStatus::Passing
                } else {
                    CheckStatus::Critical
                };
                if registration.heartbeat(status, note).await? == Heartbeat::Reregistered {
                    tracing::info!(%service, "consul had forgotten the service; registered again");
                }
                Ok(())
            }
            Registry::Etcd {
                config,
                prefix,
                endpoint,
                handle,
            } => {
                match (healthy, handle.is_some()) {
                    (true, false) => {
                        let registration = EtcdRegistration::new(
                            config.clone(),
                            prefix,
                            &service,
                            endpoint,
                            self.ttl,
                        )?;
                        *handle = Some(registration.register().await?);
                        tracing::info!(%service, "registered in etcd");
                    }
                    (false, true) => {
                        if let Some(h) = handle.take() {
                            h.deregister().await?;
                        }
                        tracing::warn!(%service, %note, "local application unhealthy: removed from etcd");
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    }
}
