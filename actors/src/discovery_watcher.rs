//! The `DiscoveryWatcher` actor: one per upstream whose endpoints are discovered. It runs the
//! source (a Consul blocking query, an etcd watch, a DNS poll) and forwards every complete
//! endpoint set — or, when the backend fails, a staleness notice — to the upstream's pool,
//! which keeps the last known endpoints until the source recovers (the source loop retries
//! with backoff). The loop is linked to the actor: a panic in it reaches the supervisor.

use std::net::SocketAddr;
use std::sync::Arc;

use meshgate_config::model::DiscoveryConfig;
use meshgate_config::model::discovery::{DnsRecordType, UpstreamDiscoveryConfig};
use meshgate_discovery::{
    AnySource, ConsulClient, ConsulConfig, ConsulWatch, ConsulWatchConfig, DiscoveryError,
    DnsQuery, DnsWatch, DnsWatchConfig, EndpointSet, EtcdConfig, EtcdWatch, EtcdWatchConfig,
    RateLimit, SourceEvent, drive_source, source_backoff,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::error::ControlError;
use crate::supervised_task::LinkedLoop;

#[cfg(test)]
mod tests;

/// What a watcher tells its pool.
#[derive(Debug, Clone)]
pub enum DiscoveryEvent {
    /// The complete current endpoint set (may be empty: the service has no instance).
    Updated(EndpointSet),
    /// The backend failed; keep the last known endpoints and mark them stale.
    Stale(String),
}

/// Where a watcher delivers its events.
pub type DiscoverySink = Arc<dyn Fn(DiscoveryEvent) + Send + Sync>;

/// The actor running one upstream's discovery loop as a [`LinkedLoop`]: a panic in the
/// source or in the sink fails the actor, and the supervisor restarts it (a new source, whose
/// first answer is the full current set) after its backoff delay.
#[derive(Default)]
pub struct DiscoveryWatcher;

/// Where the watcher's endpoints come from.
// Built once per watcher start and consumed by it: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum WatchSource {
    /// The upstream's `discovery:` section and the connection it uses (what the supervisor
    /// starts).
    Configured {
        source: UpstreamDiscoveryConfig,
        connections: DiscoveryConfig,
    },
    /// A source built already (embedders and tests).
    Built(AnySource),
}

pub struct DiscoveryWatcherArgs {
    pub upstream: Arc<str>,
    pub source: WatchSource,
    pub sink: DiscoverySink,
}

#[derive(Debug)]
pub enum DiscoveryWatcherMsg {
    /// The discovery loop panicked or ended.
    LoopFailed(String),
}

pub struct DiscoveryWatcherState {
    upstream: Arc<str>,
    _running: LinkedLoop,
}

impl Actor for DiscoveryWatcher {
    type Msg = DiscoveryWatcherMsg;
    type State = DiscoveryWatcherState;
    type Arguments = DiscoveryWatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let source = match args.source {
            WatchSource::Configured {
                source,
                connections,
            } => build_source(&source, &connections).map_err(|e| {
                ControlError::setting(format!("upstreams.{}.discovery", args.upstream), e)
            })?,
            WatchSource::Built(source) => source,
        };
        let running = LinkedLoop::spawn(
            &myself,
            "the discovery loop",
            watch(source, args.upstream.clone(), args.sink),
            DiscoveryWatcherMsg::LoopFailed,
        );
        Ok(DiscoveryWatcherState {
            upstream: args.upstream,
            _running: running,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let DiscoveryWatcherMsg::LoopFailed(reason) = message;
        Err(format!("upstreams.{}.discovery: {reason}", state.upstream).into())
    }
}

/// Drive `source` (retrying with backoff) and forward each event to `sink`, in one task so
/// that a panic in either is the loop's failure. It never ends by itself.
async fn watch(
    source: AnySource,
    upstream: Arc<str>,
    sink: DiscoverySink,
) -> Result<(), ControlError> {
    let (events, mut received) = tokio::sync::mpsc::channel(4);
    let forward = async {
        while let Some(event) = received.recv().await {
            match event {
                SourceEvent::Updated(set) => {
                    tracing::debug!(%upstream, endpoints = set.len(), "discovered endpoints");
                    sink(DiscoveryEvent::Updated(set));
                }
                SourceEvent::Stale(error) => sink(DiscoveryEvent::Stale(error.to_string())),
            }
        }
    };
    tokio::join!(drive_source(source, source_backoff(), events), forward);
    Err(ControlError::LoopEnded("the source stopped"))
}

fn build_source(
    source: &UpstreamDiscoveryConfig,
    connections: &DiscoveryConfig,
) -> Result<AnySource, DiscoveryError> {
    let missing = |backend: &str| DiscoveryError::Config {
        backend: meshgate_discovery::Backend::Static,
        reason: format!("discovery.{backend} is not configured"),
    };
    match source {
        UpstreamDiscoveryConfig::Consul(c) => {
            let conn = connections
                .consul
                .as_ref()
                .ok_or_else(|| missing("consul"))?;
            let client = ConsulClient::new(&ConsulConfig {
                token: conn.token.clone(),
                ..ConsulConfig::new(conn.address.clone())
            })?;
            let watch = ConsulWatchConfig {
                tags: c.tags.clone(),
                datacenter: conn.datacenter.clone(),
                passing_only: c.passing_only,
                wait: conn.wait.get(),
                rate_limit: RateLimit {
                    burst: conn.rate_limit.burst,
                    interval: conn.rate_limit.interval.get(),
                },
                ..ConsulWatchConfig::new(c.service.clone())
            };
            Ok(AnySource::from(ConsulWatch::new(client, watch)?))
        }
        UpstreamDiscoveryConfig::Etcd(e) => {
            let conn = connections.etcd.as_ref().ok_or_else(|| missing("etcd"))?;
            let watch = EtcdWatchConfig {
                prefix: conn.prefix.clone(),
                service: e.service.clone(),
            };
            Ok(AnySource::from(EtcdWatch::new(
                EtcdConfig::new(conn.endpoints.clone()),
                watch,
            )?))
        }
        UpstreamDiscoveryConfig::Dns(d) => {
            let query = match d.record {
                DnsRecordType::A => DnsQuery::Ip {
                    port: d.port.unwrap_or(80),
                },
                DnsRecordType::Srv => DnsQuery::Srv,
            };
            let mut config = DnsWatchConfig::new(d.name.clone(), query);
            if let Some(dns) = &connections.dns {
                config.nameserver = dns
                    .nameserver
                    .as_deref()
                    .and_then(|n| n.parse::<SocketAddr>().ok());
                config.min_refresh = dns.min_refresh.get();
                config.max_refresh = dns.max_refresh.get();
            }
            Ok(AnySource::from(DnsWatch::new(config)?))
        }
    }
}
