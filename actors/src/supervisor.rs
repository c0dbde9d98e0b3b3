//! The root `Supervisor` actor: starts the tree from a compiled config, reconciles children on
//! every reload (bind new listeners, drain removed ones, update upstream pools), swaps the
//! snapshot, and restarts any child that dies, with backoff. ractor's default supervisor stops
//! when a child dies; this one never does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_config::{CompiledConfig, UpstreamSpec};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::backoff::Backoff;
use crate::config_watcher::{ConfigWatcher, ConfigWatcherArgs};
use crate::health::{HealthChecker, HealthCheckerArgs, HealthCheckerMsg};
use crate::listener::{ConnectionHandler, Listener, ListenerRuntime};
use crate::snapshot::{BoundListener, NodeView, Snapshot, SnapshotExtension};
use crate::upstream::{UpstreamHandle, UpstreamPool, UpstreamPoolArgs, UpstreamPoolMsg};

mod discovery;
mod mesh;

pub use mesh::CA_LISTENER;

/// The first restart waits this long; each further one doubles, up to [`RESTART_CAP`].
const RESTART_BASE: Duration = Duration::from_millis(50);
const RESTART_CAP: Duration = Duration::from_secs(10);
/// A child that stayed up this long starts its backoff from the beginning again.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);

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
    Apply(Arc<CompiledConfig>, RpcReplyPort<Result<u64, String>>),
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
                    Err("the node is shutting down".to_string())
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
            .or_insert_with(|| Backoff::new(RESTART_BASE, RESTART_CAP));
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

    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, key: ChildKey) {
        let result = match &key {
            ChildKey::ConfigWatcher => match self.config_path.clone() {
                Some(path) => {
                    let args = ConfigWatcherArgs {
                        path,
                        supervisor: myself.clone(),
                        view: self.view.clone(),
                        watch_file: self.config.server.watch_config,
                    };
                    self.spawn_child::<ConfigWatcher, _>(myself, key.clone(), || args)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            },
            ChildKey::Listener(name) => match self.listeners.get(name) {
                Some((_, runtime)) => {
                    let runtime = runtime.clone();
                    self.spawn_child::<Listener, _>(myself, key.clone(), || runtime)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            },
            ChildKey::AdminListener => match &self.admin {
                Some((_, runtime)) => {
                    let runtime = runtime.clone();
                    self.spawn_child::<Listener, _>(myself, key.clone(), || runtime)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            },
            ChildKey::CertRotator => match self.cert_rotator_args() {
                Some(args) => self
                    .spawn_child::<crate::mesh::CertRotator, _>(myself, key.clone(), || args)
                    .await
                    .map(|_| ()),
                None => Ok(()),
            },
            ChildKey::CaListener => match self.ca_listener_runtime() {
                Some(runtime) => self
                    .spawn_child::<Listener, _>(myself, key.clone(), || runtime)
                    .await
                    .map(|_| ()),
                None => Ok(()),
            },
            ChildKey::Registrar => match self.config.registration.clone() {
                Some(registration) => {
                    let args = crate::registrar::RegistrarArgs {
                        registration,
                        connections: self.config.discovery.clone(),
                    };
                    self.spawn_child::<crate::registrar::Registrar, _>(myself, key.clone(), || args)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            },
            ChildKey::UpstreamPool(name) => {
                let spec = self
                    .config
                    .upstreams
                    .iter()
                    .find(|u| u.name == *name)
                    .cloned();
                match (spec, self.upstreams.get(name).cloned()) {
                    (Some(spec), Some(handle)) => {
                        let started = self
                            .spawn_child::<UpstreamPool, _>(myself, key.clone(), || {
                                UpstreamPoolArgs { handle, spec }
                            })
                            .await
                            .map(|_| ());
                        if started.is_ok() {
                            self.restart_discovery_watcher(myself, name).await;
                        }
                        started
                    }
                    _ => Ok(()),
                }
            }
            ChildKey::DiscoveryWatcher(name) => self.start_discovery_watcher(myself, name).await,
            ChildKey::HealthChecker(name) => {
                let spec = self
                    .config
                    .upstreams
                    .iter()
                    .find(|u| u.name == *name)
                    .and_then(|u| u.resilience.health_check.clone());
                match (spec, self.upstreams.get(name).cloned()) {
                    (Some(spec), Some(handle)) => self
                        .spawn_child::<HealthChecker, _>(myself, key.clone(), || {
                            HealthCheckerArgs { handle, spec }
                        })
                        .await
                        .map(|_| ()),
                    _ => Ok(()),
                }
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(child = ?key, "child actor restarted");
                self.view.record_restart();
            }
            Err(e) => {
                let delay = self
                    .backoff
                    .entry(key.clone())
                    .or_insert_with(|| Backoff::new(RESTART_BASE, RESTART_CAP))
                    .next_delay();
                tracing::error!(child = ?key, error = %e, retry_in = ?delay, "restart failed");
                myself.send_after(delay, move || SupervisorMsg::Restart(key));
            }
        }
    }

    /// Reconcile the tree with `config` and publish its snapshot. Either everything needed
    /// (new sockets) is in place and the snapshot is swapped, or nothing changes.
    async fn apply(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        config: Arc<CompiledConfig>,
    ) -> Result<u64, String> {
        refuse_removing_every_listener(&self.listeners, &config)?;
        // 0. The mesh identity first: inbound listeners cannot serve without a certificate.
        let mesh = self.reconcile_mesh(myself, &config).await?;
        // 1. Read TLS files and bind every new or moved listener first: a failure of either
        //    rejects the reload whole.
        let mut tls = crate::tls::load_all(&config).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        tls.extend(mesh.inbound_tls);
        let identity = mesh.runtime.as_ref().map(|m| m.identity.clone());
        let upstream_tls =
            crate::tls::load_upstreams(&config, identity.as_deref()).map_err(|errors| {
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        let mut new_listeners = Vec::new();
        for spec in &config.listeners {
            let address = spec.address.to_string();
            // Same configured address, or the address this socket already holds (a port 0
            // that a later config spells out): keep the socket.
            let unchanged = self
                .listeners
                .get(&spec.name)
                .is_some_and(|(configured, rt)| {
                    *configured == address || rt.local_addr == spec.address
                });
            if !unchanged {
                let runtime = ListenerRuntime::bind(
                    spec.name.clone(),
                    spec.address,
                    self.services.proxy.clone(),
                )
                .map_err(|e| {
                    format!("listeners.{}: cannot bind {}: {e}", spec.name, spec.address)
                })?;
                new_listeners.push((spec.name.clone(), address, runtime));
            }
        }
        let mut new_admin = None;
        if let Some(address) = config.admin
            && self
                .admin
                .as_ref()
                .is_none_or(|(a, rt)| *a != address && rt.local_addr != address)
        {
            let runtime =
                ListenerRuntime::bind(ADMIN_LISTENER.into(), address, self.services.admin.clone())
                    .map_err(|e| format!("admin.address: cannot bind {address}: {e}"))?;
            new_admin = Some((address, runtime));
        }

        // 2. Upstream pools: new ones resolve their targets (or hear from discovery, within
        //    a bound) before the snapshot names them.
        let mut handles = Vec::with_capacity(config.upstreams.len());
        let mut first_answers = Vec::new();
        for (spec, tls) in config.upstreams.iter().zip(upstream_tls) {
            let key = ChildKey::UpstreamPool(spec.name.clone());
            match self.upstreams.get(&spec.name).cloned() {
                Some(handle) => {
                    self.stop_changed_watcher(spec, &config.discovery);
                    let changed = *handle.load().spec != **spec;
                    if changed && let Some(cell) = self.cells.get(&key) {
                        let pool: ActorRef<UpstreamPoolMsg> = cell.clone().into();
                        let _ = pool.cast(UpstreamPoolMsg::UpdateSpec(spec.clone()));
                    }
                    handles.push(handle);
                }
                None => {
                    let handle = Arc::new(UpstreamHandle::new(spec.clone()));
                    let args = UpstreamPoolArgs {
                        handle: handle.clone(),
                        spec: spec.clone(),
                    };
                    self.spawn_child::<UpstreamPool, _>(myself, key, || args)
                        .await
                        .map_err(|e| format!("upstreams.{}: {e}", spec.name))?;
                    self.upstreams.insert(spec.name.clone(), handle.clone());
                    handles.push(handle);
                }
            }
            if let Some(handle) = handles.last() {
                handle.set_tls(tls);
            }
            self.reconcile_health_checker(myself, spec)
                .await
                .map_err(|e| format!("upstreams.{}.health_check: {e}", spec.name))?;
            first_answers.extend(
                self.ensure_discovery_watcher(myself, spec, &config.discovery)
                    .await,
            );
        }
        discovery::await_first_answers(first_answers).await;

        // 3. Listeners: start the new ones.
        let mut retired = Vec::new();
        for (name, address, runtime) in new_listeners {
            let key = ChildKey::Listener(name.clone());
            self.stop_child(&key);
            let rt = runtime.clone();
            self.spawn_child::<Listener, _>(myself, key, || rt)
                .await
                .map_err(|e| format!("listeners.{name}: {e}"))?;
            if let Some((_, old)) = self.listeners.insert(name, (address, runtime)) {
                retired.push(old);
            }
        }
        if let Some((address, runtime)) = new_admin {
            self.stop_child(&ChildKey::AdminListener);
            let rt = runtime.clone();
            self.spawn_child::<Listener, _>(myself, ChildKey::AdminListener, || rt)
                .await
                .map_err(|e| format!("admin: {e}"))?;
            if let Some((_, old)) = self.admin.replace((address, runtime)) {
                retired.push(old);
            }
            self.view.admin_address.store(Arc::new(Some(
                self.admin.as_ref().map_or(address, |(_, r)| r.local_addr),
            )));
        }
        if config.admin.is_none()
            && let Some((_, old)) = self.admin.take()
        {
            self.stop_child(&ChildKey::AdminListener);
            self.view.admin_address.store(Arc::new(None));
            retired.push(old);
        }
        let removed: Vec<Arc<str>> = self
            .listeners
            .keys()
            .filter(|name| !config.listeners.iter().any(|l| l.name == **name))
            .cloned()
            .collect();
        for name in removed {
            self.stop_child(&ChildKey::Listener(name.clone()));
            if let Some((_, old)) = self.listeners.remove(&name) {
                retired.push(old);
            }
        }

        // 4. Swap: requests in flight finish on the old snapshot, new ones take this one.
        self.generation += 1;
        let bound = config
            .listeners
            .iter()
            .filter_map(|l| {
                self.listeners.get(&l.name).map(|(_, rt)| BoundListener {
                    name: l.name.clone(),
                    address: rt.local_addr,
                })
            })
            .collect();
        self.view.store(Snapshot {
            generation: self.generation,
            config: config.clone(),
            upstreams: handles,
            bound,
            tls,
            mesh: mesh.runtime,
            ca_address: self.ca_bound(),
            loaded_at: SystemTime::now(),
            extension: self.services.extension.as_ref().map(|e| e.build(&config)),
        });

        // 5. Registration follows the new config (a changed one deregisters, then registers).
        self.reconcile_registrar(myself, &config).await;

        // 6. Forget what the new generation no longer names.
        let gone: Vec<Arc<str>> = self
            .upstreams
            .keys()
            .filter(|name| !config.upstreams.iter().any(|u| u.name == **name))
            .cloned()
            .collect();
        for name in gone {
            self.stop_discovery_watcher(&name);
            self.stop_child(&ChildKey::HealthChecker(name.clone()));
            self.stop_child(&ChildKey::UpstreamPool(name.clone()));
            self.upstreams.remove(&name);
        }
        let drain_timeout = config.server.drain_timeout;
        for old in retired {
            tokio::spawn(async move {
                let cut = old.drain(drain_timeout).await;
                tracing::info!(listener = %old.name, address = %old.local_addr, cut_off = cut, "retired listener drained");
            });
        }
        self.config = config;
        Ok(self.generation)
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
                tracing::error!(error = %e, "registrar did not start; retrying with backoff");
                myself.send_after(RESTART_BASE, || SupervisorMsg::Restart(ChildKey::Registrar));
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
) -> Result<(), String> {
    let kept = config
        .listeners
        .iter()
        .any(|l| serving.contains_key(&l.name));
    if serving.is_empty() || kept || config.source.server.allow_removing_all_listeners {
        return Ok(());
    }
    let mut names: Vec<&str> = serving.keys().map(|n| &**n).collect();
    names.sort_unstable();
    Err(format!(
        "listeners: this reload would remove every listener ({}); the node keeps serving. \
         Set server.allow_removing_all_listeners: true to do it on purpose",
        names.join(", ")
    ))
}
