//! The root `Supervisor` actor: starts the tree from a compiled config, reconciles children on
//! every reload (all or nothing: see `apply`), swaps the snapshot, and restarts any child that
//! dies, with backoff. ractor's default supervisor stops when a child dies; this one never
//! does.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshgate_backoff::Backoff;
use meshgate_config::{CompiledConfig, UpstreamSpec};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::config_watcher::{ConfigWatcher, ConfigWatcherArgs};
use crate::error::ControlError;
use crate::health::{HealthChecker, HealthCheckerArgs, HealthCheckerMsg};
use crate::listener::{ConnectionHandler, Listener, ListenerRuntime};
use crate::snapshot::{NodeView, SnapshotExtension};
use crate::supervised_task::{RESTART_RESET_AFTER, restart_backoff};
use crate::upstream::{UpstreamHandle, UpstreamPool, UpstreamPoolArgs};

mod apply;
mod discovery;
mod mesh;
#[cfg(test)]
mod tests;

pub use mesh::CA_LISTENER;

/// The name under which the admin listener appears in `/status`.
pub const ADMIN_LISTENER: &str = "admin";

/// The data-plane services the node plugs into its listeners.
#[derive(Clone)]
pub struct NodeServices {
    pub proxy: Arc<dyn ConnectionHandler>,
    pub admin: Arc<dyn ConnectionHandler>,
    /// The mesh CA service (HTTPS, CSR signing), on nodes configured to run it.
    pub ca: Arc<dyn ConnectionHandler>,
    /// Builds the data plane's per-generation state (telemetry handles) for each snapshot.
    pub extension: Option<Arc<dyn SnapshotExtension>>,
}

pub struct SupervisorArgs {
    pub config: Arc<CompiledConfig>,
    pub view: Arc<NodeView>,
    pub services: NodeServices,
    /// The file the `ConfigWatcher` follows; `None` for a node built from memory (tests).
    pub config_path: Option<PathBuf>,
}

/// Which child an actor is, so that it can be restarted with the right arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChildKey {
    ConfigWatcher,
    Listener(Arc<str>),
    AdminListener,
    UpstreamPool(Arc<str>),
    CertRotator,
    CaListener,
    Registrar,
    HealthChecker(Arc<str>),
    DiscoveryWatcher(Arc<str>),
}

#[derive(Debug)]
pub enum SupervisorMsg {
    /// Make this compiled config the serving one. Replies with the new generation.
    Apply(Arc<CompiledConfig>, RpcReplyPort<Result<u64, ControlError>>),
    /// Restart a child after its backoff delay.
    Restart(ChildKey),
    /// Stop accepting, drain every listener up to the deadline, then stop the tree.
    Shutdown(Duration, RpcReplyPort<usize>),
    /// The live children (admin and tests).
    Children(RpcReplyPort<Vec<(ChildKey, ActorCell)>>),
}

struct ChildRecord {
    key: ChildKey,
    started: tokio::time::Instant,
}

pub struct SupervisorState {
    view: Arc<NodeView>,
    services: NodeServices,
    config_path: Option<PathBuf>,
    config: Arc<CompiledConfig>,
    generation: u64,
    listeners: HashMap<Arc<str>, (String, Arc<ListenerRuntime>)>,
    admin: Option<(SocketAddr, Arc<ListenerRuntime>)>,
    upstreams: HashMap<Arc<str>, Arc<UpstreamHandle>>,
    children: HashMap<ActorId, ChildRecord>,
    cells: HashMap<ChildKey, ActorCell>,
    backoff: HashMap<ChildKey, Backoff>,
    shutting_down: bool,
    mesh: Option<mesh::MeshState>,
    /// The discovery source of every upstream that has a watcher (running or restarting).
    watched: HashMap<Arc<str>, discovery::WatchedSource>,
}

#[derive(Default)]
pub struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            view: args.view,
            services: args.services,
            config_path: args.config_path,
            config: args.config.clone(),
            generation: 0,
            listeners: HashMap::new(),
            admin: None,
            upstreams: HashMap::new(),
            children: HashMap::new(),
            cells: HashMap::new(),
            backoff: HashMap::new(),
            shutting_down: false,
            mesh: None,
            watched: HashMap::new(),
        };
        state
            .apply(&myself, args.config)
            .await
            .map_err(ActorProcessingErr::from)?;
        if let Some(path) = state.config_path.clone() {
            let args = ConfigWatcherArgs {
                path,
                supervisor: myself.clone(),
                view: state.view.clone(),
                watch_file: state.config.server.watch_config,
            };
            state
                .spawn_child::<ConfigWatcher, _>(&myself, ChildKey::ConfigWatcher, || args)
                .await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Apply(config, reply) => {
                let result = if state.shutting_down {
                    Err(ControlError::ShuttingDown)
                } else {
                    state.apply(&myself, config).await
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::Restart(key) => {
                if !state.shutting_down {
                    state.restart(&myself, key).await;
                }
            }
            SupervisorMsg::Shutdown(deadline, reply) => {
                let cut = state.shutdown(deadline).await;
                let _ = reply.send(cut);
                myself.stop(Some("shutdown".into()));
            }
            SupervisorMsg::Children(reply) => {
                let list = state
                    .cells
                    .iter()
                    .map(|(k, c)| (k.clone(), c.clone()))
                    .collect();
                let _ = reply.send(list);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        // Children we stopped on purpose were forgotten first; anything else gets restarted.
        let Some(record) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.cells.remove(&record.key);
        if state.shutting_down {
            return Ok(());
        }
        let backoff = state
            .backoff
            .entry(record.key.clone())
            .or_insert_with(restart_backoff);
        if record.started.elapsed() > RESTART_RESET_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::error!(child = ?record.key, %reason, restart_in = ?delay, "child actor died; restarting");
        let key = record.key;
        myself.send_after(delay, move || SupervisorMsg::Restart(key));
        Ok(())
    }
}

impl SupervisorState {
    async fn spawn_child<A, F>(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ChildKey,
        args: F,
    ) -> Result<ActorRef<A::Msg>, ActorProcessingErr>
    where
        A: Actor + Default,
        F: FnOnce() -> A::Arguments,
    {
        let (child, _) = Actor::spawn_linked(None, A::default(), args(), myself.get_cell()).await?;
        self.children.insert(
            child.get_id(),
            ChildRecord {
                key: key.clone(),
                started: tokio::time::Instant::now(),
            },
        );
        self.cells.insert(key, child.get_cell());
        Ok(child)
    }

    /// Stop a child on purpose (it is not restarted).
    fn stop_child(&mut self, key: &ChildKey) {
        if let Some(cell) = self.cells.remove(key) {
            self.children.remove(&cell.get_id());
            cell.stop(Some("removed by reload".into()));
        }
        self.backoff.remove(key);
    }

    /// Start `key` again after it died or did not start (unless it runs already or is no
    /// longer wanted); a failure is retried after the next backoff delay.
    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, key: ChildKey) {
        if self.cells.contains_key(&key) {
            return;
        }
        match self.start_child(myself, &key).await {
            Ok(true) => {
                tracing::info!(child = ?key, "child actor restarted");
                self.view.record_restart();
            }
            Ok(false) => {}
            Err(e) => self.restart_later(myself, key, &e),
        }
    }

    /// Schedule a restart of `key` after its next backoff delay.
    fn restart_later(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ChildKey,
        error: &dyn Display,
    ) {
        let delay = self
            .backoff
            .entry(key.clone())
            .or_insert_with(restart_backoff)
            .next_delay();
        tracing::error!(child = ?key, %error, retry_in = ?delay, "child actor did not start; retrying with backoff");
        myself.send_after(delay, move || SupervisorMsg::Restart(key));
    }

    /// Start the child `key` from the current state; `Ok(false)` when the current config no
    /// longer has it.
    async fn start_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: &ChildKey,
    ) -> Result<bool, ActorProcessingErr> {
        let key = key.clone();
        match &key {
            ChildKey::ConfigWatcher => {
                let Some(path) = self.config_path.clone() else {
                    return Ok(false);
                };
                let args = ConfigWatcherArgs {
                    path,
                    supervisor: myself.clone(),
                    view: self.view.clone(),
                    watch_file: self.config.server.watch_config,
                };
                self.spawn_child::<ConfigWatcher, _>(myself, key, || args)
                    .await?;
            }
            ChildKey::Listener(name) => {
                let Some((_, runtime)) = self.listeners.get(name) else {
                    return Ok(false);
                };
                let runtime = runtime.clone();
                self.spawn_child::<Listener, _>(myself, key, || runtime)
                    .await?;
            }
            ChildKey::AdminListener => {
                let Some((_, runtime)) = &self.admin else {
                    return Ok(false);
                };
                let runtime = runtime.clone();
                self.spawn_child::<Listener, _>(myself, key, || runtime)
                    .await?;
            }
            ChildKey::CertRotator => {
                let Some(args) = self.cert_rotator_args() else {
                    return Ok(false);
                };
                self.spawn_child::<crate::mesh::CertRotator, _>(myself, key, || args)
                    .await?;
            }
            ChildKey::CaListener => {
                let Some(runtime) = self.ca_listener_runtime() else {
                    return Ok(false);
                };
                self.spawn_child::<Listener, _>(myself, key, || runtime)
                    .await?;
            }
            ChildKey::Registrar => {
                let Some(registration) = self.config.registration.clone() else {
                    return Ok(false);
                };
                let args = crate::registrar::RegistrarArgs {
                    registration,
                    connections: self.config.discovery.clone(),
                };
                self.spawn_child::<crate::registrar::Registrar, _>(myself, key, || args)
                    .await?;
            }
            ChildKey::UpstreamPool(name) => {
                let (Some(spec), Some(handle)) = (
                    self.upstream_spec(name).cloned(),
                    self.upstreams.get(name).cloned(),
                ) else {
                    return Ok(false);
                };
                self.spawn_child::<UpstreamPool, _>(myself, key.clone(), || UpstreamPoolArgs {
                    handle,
                    spec,
                })
                .await?;
                self.restart_discovery_watcher(myself, name).await;
            }
            ChildKey::DiscoveryWatcher(name) => {
                if !self.watched.contains_key(name) {
                    return Ok(false);
                }
                self.start_discovery_watcher(myself, name).await?;
            }
            ChildKey::HealthChecker(name) => {
                let spec = self
                    .upstream_spec(name)
                    .and_then(|u| u.resilience.health_check.clone());
                let (Some(spec), Some(handle)) = (spec, self.upstreams.get(name).cloned()) else {
                    return Ok(false);
                };
                self.spawn_child::<HealthChecker, _>(myself, key, || HealthCheckerArgs {
                    handle,
                    spec,
                })
                .await?;
            }
        }
        Ok(true)
    }

    fn upstream_spec(&self, name: &str) -> Option<&Arc<UpstreamSpec>> {
        self.config.upstreams.iter().find(|u| *u.name == *name)
    }

    async fn reconcile_registrar(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        config: &CompiledConfig,
    ) {
        let running = self.cells.contains_key(&ChildKey::Registrar);
        let unchanged = running
            && config.registration == self.config.registration
            && config.discovery == self.config.discovery;
        if unchanged {
            return;
        }
        if let Some(cell) = self.cells.remove(&ChildKey::Registrar) {
            self.children.remove(&cell.get_id());
            let _ = cell
                .stop_and_wait(
                    Some("registration changed".into()),
                    Some(Duration::from_secs(5)),
                )
                .await;
        }
        if let Some(registration) = config.registration.clone() {
            let args = crate::registrar::RegistrarArgs {
                registration,
                connections: config.discovery.clone(),
            };
            if let Err(e) = self
                .spawn_child::<crate::registrar::Registrar, _>(myself, ChildKey::Registrar, || args)
                .await
            {
                self.restart_later(myself, ChildKey::Registrar, &e);
            }
        }
    }

    /// Start, update or stop the upstream's `HealthChecker` to match its `health_check`.
    async fn reconcile_health_checker(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: &UpstreamSpec,
    ) -> Result<(), ActorProcessingErr> {
        let key = ChildKey::HealthChecker(spec.name.clone());
        let Some(check) = spec.resilience.health_check.clone() else {
            self.stop_child(&key);
            return Ok(());
        };
        if let Some(cell) = self.cells.get(&key) {
            let checker: ActorRef<HealthCheckerMsg> = cell.clone().into();
            let _ = checker.cast(HealthCheckerMsg::UpdateSpec(check));
            return Ok(());
        }
        let Some(handle) = self.upstreams.get(&spec.name).cloned() else {
            return Ok(());
        };
        self.spawn_child::<HealthChecker, _>(myself, key, || HealthCheckerArgs {
            handle,
            spec: check,
        })
        .await
        .map(|_| ())
    }

    async fn shutdown(&mut self, deadline: Duration) -> usize {
        self.shutting_down = true;
        self.view.set_draining();
        // Refuse new connections at once (callers retry elsewhere on a refused connect; an
        // accepted connection that is never served only fails at exit), then leave the
        // registry, then let in-flight requests finish.
        for (_, runtime) in self.listeners.values() {
            runtime.stop_accepting();
        }
        if let Some(cell) = self.cells.remove(&ChildKey::Registrar) {
            self.children.remove(&cell.get_id());
            let _ = cell
                .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
                .await;
        }
        let mut drains = tokio::task::JoinSet::new();
        for (_, runtime) in self.listeners.values() {
            let runtime = runtime.clone();
            drains.spawn(async move { runtime.drain(deadline).await });
        }
        let mut cut = 0;
        while let Some(result) = drains.join_next().await {
            cut += result.unwrap_or(0);
        }
        if let Some((_, admin)) = &self.admin {
            admin.drain(Duration::from_millis(100)).await;
        }
        let keys: Vec<ChildKey> = self.cells.keys().cloned().collect();
        for key in keys {
            self.stop_child(&key);
        }
        cut
    }
}

/// A reload that keeps none of the serving listeners (by name) is refused unless the new
/// config sets `server.allow_removing_all_listeners`: a file caught half-written, or a wrong
/// file, would otherwise close every socket of the node.
fn refuse_removing_every_listener(
    serving: &HashMap<Arc<str>, (String, Arc<ListenerRuntime>)>,
    config: &CompiledConfig,
) -> Result<(), ControlError> {
    let kept = config
        .listeners
        .iter()
        .any(|l| serving.contains_key(&l.name));
    if serving.is_empty() || kept || config.source.server.allow_removing_all_listeners {
        return Ok(());
    }
    let mut names: Vec<String> = serving.keys().map(|n| n.to_string()).collect();
    names.sort_unstable();
    Err(ControlError::RemovesEveryListener { names })
}
