//! The `DiscoveryWatcher` actor: one per upstream whose endpoints are discovered. It runs the
//! source (a Consul blocking query, an etcd watch, a DNS poll) and forwards every complete
//! endpoint set — or, when the backend fails, a staleness notice — to the upstream's pool,
//! which keeps the last known endpoints until the source recovers (the source loop retries
//! with backoff).

use std::net::SocketAddr;
use std::sync::Arc;

use meshgate_config::model::DiscoveryConfig;
use meshgate_config::model::discovery::{DnsRecordType, UpstreamDiscoveryConfig};
use meshgate_discovery::{
    AnySource, Backoff, ConsulClient, ConsulConfig, ConsulWatch, ConsulWatchConfig, DiscoveryError,
    DnsQuery, DnsWatch, DnsWatchConfig, EndpointSet, EtcdConfig, EtcdWatch, EtcdWatchConfig,
    SourceEvent, drive_source,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::{CancellationToken, DropGuard};

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

#[derive(Default)]
pub struct DiscoveryWatcher;

pub struct DiscoveryWatcherArgs {
    pub upstream: Arc<str>,
    pub source: UpstreamDiscoveryConfig,
    pub connections: DiscoveryConfig,
    pub sink: DiscoverySink,
}

pub struct DiscoveryWatcherState {
    _running: DropGuard,
}

impl Actor for DiscoveryWatcher {
    type Msg = ();
    type State = DiscoveryWatcherState;
    type Arguments = DiscoveryWatcherArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let source = build_source(&args.source, &args.connections)
            .map_err(|e| format!("upstreams.{}.discovery: {e}", args.upstream))?;
        let stop = CancellationToken::new();
        let (events, mut received) = tokio::sync::mpsc::channel(4);
        let stopped = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = drive_source(source, Backoff::default(), events) => {}
                () = stopped.cancelled() => {}
            }
        });
        let sink = args.sink;
        let upstream = args.upstream;
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = received.recv() => event,
                    () = stopped.cancelled() => None,
                };
                match event {
                    Some(SourceEvent::Updated(set)) => {
                        tracing::debug!(%upstream, endpoints = set.len(), "discovered endpoints");
                        sink(DiscoveryEvent::Updated(set));
                    }
                    Some(SourceEvent::Stale(error)) => {
                        sink(DiscoveryEvent::Stale(error.to_string()))
                    }
                    None => break,
                }
            }
        });
        Ok(DiscoveryWatcherState {
            _running: stop.drop_guard(),
        })
    }
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
