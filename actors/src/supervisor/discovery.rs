//! The supervisor's share of discovery: one `DiscoveryWatcher` child per upstream with
//! `discovery:`, started, restarted and stopped as the upstream's source (or the connection
//! it uses) changes. Each watcher feeds its upstream's pool through the upstream handle,
//! tagged with an epoch so that a replaced watcher's late events are ignored.

use std::sync::Arc;
use std::time::Duration;

use meshgate_config::UpstreamSpec;
use meshgate_config::model::DiscoveryConfig;
use meshgate_config::model::discovery::UpstreamDiscoveryConfig;
use ractor::{ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use super::{ChildKey, SupervisorMsg, SupervisorState};
use crate::discovery_watcher::{
    DiscoveryEvent, DiscoverySink, DiscoveryWatcher, DiscoveryWatcherArgs, WatchSource,
};
use crate::upstream::{UpstreamHandle, UpstreamPoolMsg};

/// How long applying a config waits for the first answer (or failure) of the discovery
/// sources it started, so that a node starts serving with its endpoints; a slow registry
/// delays startup and reloads by at most this.
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What a watcher is started from: a change of either part restarts it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WatchedSource {
    source: UpstreamDiscoveryConfig,
    /// Only the connection this source uses: editing another backend's does not restart it.
    connection: DiscoveryConfig,
}

impl WatchedSource {
    fn of(spec: &UpstreamSpec, connections: &DiscoveryConfig) -> Option<Self> {
        let source = spec.discovery.clone()?;
        let connection = match &source {
            UpstreamDiscoveryConfig::Consul(_) => DiscoveryConfig {
                consul: connections.consul.clone(),
                ..DiscoveryConfig::default()
            },
            UpstreamDiscoveryConfig::Etcd(_) => DiscoveryConfig {
                etcd: connections.etcd.clone(),
                ..DiscoveryConfig::default()
            },
            UpstreamDiscoveryConfig::Dns(_) => DiscoveryConfig {
                dns: connections.dns.clone(),
                ..DiscoveryConfig::default()
            },
        };
        Some(Self { source, connection })
    }
}

impl SupervisorState {
    /// Stop the upstream's watcher when its source or connection changed or went. Called
    /// before the pool hears of the new spec, so that nothing the old watcher says after
    /// that is applied.
    pub(super) fn stop_changed_watcher(
        &mut self,
        spec: &UpstreamSpec,
        connections: &DiscoveryConfig,
    ) {
        if self.watched.get(&spec.name) != WatchedSource::of(spec, connections).as_ref() {
            self.stop_discovery_watcher(&spec.name);
        }
    }

    pub(super) fn stop_discovery_watcher(&mut self, name: &Arc<str>) {
        if self.watched.remove(name).is_some() {
            self.stop_child(&ChildKey::DiscoveryWatcher(name.clone()));
            if let Some(handle) = self.upstreams.get(name) {
                handle.next_discovery_epoch();
            }
        }
    }

    /// Start the watcher the spec asks for unless it runs already (call after the pool
    /// exists). Returns a receiver of the pool's publishes when it started one.
    pub(super) async fn ensure_discovery_watcher(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: &UpstreamSpec,
        connections: &DiscoveryConfig,
    ) -> Option<watch::Receiver<u64>> {
        let wanted = WatchedSource::of(spec, connections)?;
        if self.watched.contains_key(&spec.name) {
            return None;
        }
        let published = self.upstreams.get(&spec.name)?.subscribe();
        self.watched.insert(spec.name.clone(), wanted);
        if let Err(e) = self.start_discovery_watcher(myself, &spec.name).await {
            self.restart_later(myself, ChildKey::DiscoveryWatcher(spec.name.clone()), &e);
        }
        Some(published)
    }

    /// Start the watcher of `name` as `watched` describes it (nothing when it is not
    /// wanted or already running). A failure to start is also the pool's staleness.
    pub(super) async fn start_discovery_watcher(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        name: &Arc<str>,
    ) -> Result<(), ActorProcessingErr> {
        let key = ChildKey::DiscoveryWatcher(name.clone());
        let (Some(watched), Some(handle)) = (
            self.watched.get(name).cloned(),
            self.upstreams.get(name).cloned(),
        ) else {
            return Ok(());
        };
        if self.cells.contains_key(&key) {
            return Ok(());
        }
        let epoch = handle.next_discovery_epoch();
        let args = DiscoveryWatcherArgs {
            upstream: name.clone(),
            source: WatchSource::Configured {
                source: watched.source,
                connections: watched.connection,
            },
            sink: pool_sink(handle.clone(), epoch),
        };
        let started = self
            .spawn_child::<DiscoveryWatcher, _>(myself, key, || args)
            .await;
        if let Err(e) = &started {
            handle.report(UpstreamPoolMsg::DiscoveryStale {
                epoch,
                reason: format!("the discovery watcher did not start: {e}"),
            });
        }
        started.map(|_| ())
    }

    /// A restarted pool missed what the watcher said meanwhile: a new watcher's first
    /// answer is the full current set.
    pub(super) async fn restart_discovery_watcher(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        name: &Arc<str>,
    ) {
        if !self.watched.contains_key(name) {
            return;
        }
        let key = ChildKey::DiscoveryWatcher(name.clone());
        if let Some(cell) = self.cells.remove(&key) {
            self.children.remove(&cell.get_id());
            cell.stop(Some("its pool restarted".into()));
        }
        if let Err(e) = self.start_discovery_watcher(myself, name).await {
            self.restart_later(myself, key, &e);
        }
    }
}

/// Wait (bounded by [`FIRST_ANSWER_WAIT`] in all) until each pool published again: its
/// watcher's first set, or the staleness of a failing source.
pub(super) async fn await_first_answers(mut published: Vec<watch::Receiver<u64>>) {
    let deadline = tokio::time::Instant::now() + FIRST_ANSWER_WAIT;
    for receiver in &mut published {
        if tokio::time::timeout_at(deadline, receiver.changed())
            .await
            .is_err()
        {
            tracing::info!(
                "a discovery source has not answered yet; serving without its endpoints until it does"
            );
            return;
        }
    }
}

/// Where a watcher's events go: its upstream's pool, tagged with the watcher's epoch. An
/// event that finds no pool (it is restarting) is dropped; the supervisor restarts the
/// watcher along with the pool.
fn pool_sink(handle: Arc<UpstreamHandle>, epoch: u64) -> DiscoverySink {
    Arc::new(move |event| {
        let message = match event {
            DiscoveryEvent::Updated(set) => UpstreamPoolMsg::Discovered { epoch, set },
            DiscoveryEvent::Stale(reason) => UpstreamPoolMsg::DiscoveryStale { epoch, reason },
        };
        if !handle.report(message) {
            tracing::debug!(upstream = %handle.name, "discovery event dropped: the pool is restarting");
        }
    })
}
