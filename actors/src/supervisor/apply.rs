//! The supervisor's reconcile of the tree with a new config, in two halves. `prepare` does
//! everything that can fail — read TLS files, obtain a new mesh identity, bind new sockets —
//! with only shared access to the state, so a failure leaves the serving tree as it was (the
//! prepared sockets and certificates are dropped). `commit` then puts it in place and cannot
//! fail: a child that does not start is retried with backoff like one that died.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_config::CompiledConfig;
use ractor::ActorRef;

use super::{
    ADMIN_LISTENER, ChildKey, SupervisorMsg, SupervisorState, discovery,
    refuse_removing_every_listener,
};
use crate::error::ControlError;
use crate::listener::{Listener, ListenerRuntime};
use crate::mesh::MeshRuntime;
use crate::snapshot::{BoundListener, Snapshot};
use crate::tls::{LoadedTls, UpstreamTls};
use crate::upstream::{UpstreamHandle, UpstreamPool, UpstreamPoolArgs, UpstreamPoolMsg};

use super::mesh::MeshPlan;

/// Everything a config needs that could fail, ready to be put in place.
pub(super) struct Plan {
    config: Arc<CompiledConfig>,
    mesh: MeshPlan,
    tls: LoadedTls,
    upstream_tls: Vec<Option<Arc<UpstreamTls>>>,
    /// New or moved listeners, bound.
    listeners: Vec<NewListener>,
    admin: Option<(SocketAddr, Arc<ListenerRuntime>)>,
}

/// A listener's socket bound for a config that is not yet in place.
struct NewListener {
    name: Arc<str>,
    /// The address as configured (`127.0.0.1:0`), to tell a later config's change.
    configured: String,
    runtime: Arc<ListenerRuntime>,
}

impl SupervisorState {
    /// Make `config` the serving one: either everything it needs is in place and its
    /// snapshot is published, or (an error) nothing changed.
    pub(super) async fn apply(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        config: Arc<CompiledConfig>,
    ) -> Result<u64, ControlError> {
        let plan = self.prepare(config).await?;
        Ok(self.commit(myself, plan).await)
    }

    /// Check, load and bind what `config` needs, without changing the running tree.
    async fn prepare(&self, config: Arc<CompiledConfig>) -> Result<Plan, ControlError> {
        refuse_removing_every_listener(&self.listeners, &config)?;
        // The mesh identity first: inbound listeners cannot serve without a certificate.
        let mesh = self.prepare_mesh(&config).await?;
        let mut tls = crate::tls::load_all(&config)?;
        tls.extend(mesh.inbound_tls());
        let upstream_tls = crate::tls::load_upstreams(&config, mesh.identity())?;
        let listeners = self.bind_new_listeners(&config)?;
        let admin = self.bind_new_admin(&config)?;
        Ok(Plan {
            config,
            mesh,
            tls,
            upstream_tls,
            listeners,
            admin,
        })
    }

    /// Put a prepared config in place and publish its snapshot; returns its generation.
    async fn commit(&mut self, myself: &ActorRef<SupervisorMsg>, plan: Plan) -> u64 {
        let Plan {
            config,
            mesh,
            tls,
            upstream_tls,
            listeners,
            admin,
        } = plan;
        let mesh = self.commit_mesh(myself, mesh).await;
        // Upstream pools before the snapshot names them: new ones resolve their targets (or
        // hear from discovery, within a bound) first.
        let upstreams = self
            .reconcile_upstreams(myself, &config, upstream_tls)
            .await;
        let mut retired = self.start_listeners(myself, listeners).await;
        retired.extend(self.reconcile_admin(myself, &config, admin).await);
        retired.extend(self.stop_removed_listeners(&config));
        // The swap: requests in flight finish on the old snapshot, new ones take this one.
        self.publish(&config, upstreams, tls, mesh);
        // Registration follows the new config (a changed one deregisters, then registers).
        self.reconcile_registrar(myself, &config).await;
        self.forget_removed_upstreams(&config);
        drain_retired(retired, config.server.drain_timeout);
        self.config = config;
        self.generation
    }

    /// Bind every listener that is new or moved. The same configured address, or the address
    /// the socket already holds (a port 0 that a later config spells out), keeps the socket.
    fn bind_new_listeners(
        &self,
        config: &CompiledConfig,
    ) -> Result<Vec<NewListener>, ControlError> {
        let mut bound = Vec::new();
        for spec in &config.listeners {
            let address = spec.address.to_string();
            let unchanged = self
                .listeners
                .get(&spec.name)
                .is_some_and(|(configured, rt)| {
                    *configured == address || rt.local_addr == spec.address
                });
            if unchanged {
                continue;
            }
            let runtime =
                ListenerRuntime::bind(spec.name.clone(), spec.address, self.services.proxy.clone())
                    .map_err(|source| ControlError::Bind {
                        field: format!("listeners.{}", spec.name),
                        address: spec.address,
                        source,
                    })?;
            bound.push(NewListener {
                name: spec.name.clone(),
                configured: address,
                runtime,
            });
        }
        Ok(bound)
    }

    fn bind_new_admin(
        &self,
        config: &CompiledConfig,
    ) -> Result<Option<(SocketAddr, Arc<ListenerRuntime>)>, ControlError> {
        let Some(address) = config.admin else {
            return Ok(None);
        };
        let unchanged = self
            .admin
            .as_ref()
            .is_some_and(|(a, rt)| *a == address || rt.local_addr == address);
        if unchanged {
            return Ok(None);
        }
        let runtime =
            ListenerRuntime::bind(ADMIN_LISTENER.into(), address, self.services.admin.clone())
                .map_err(|source| ControlError::Bind {
                    field: "admin.address".into(),
                    address,
                    source,
                })?;
        Ok(Some((address, runtime)))
    }

    /// One pool per upstream (new ones started, changed ones told), with its TLS, health
    /// checker and discovery watcher; waits (bounded) for new watchers' first answers.
    async fn reconcile_upstreams(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        config: &CompiledConfig,
        upstream_tls: Vec<Option<Arc<UpstreamTls>>>,
    ) -> Vec<Arc<UpstreamHandle>> {
        let mut handles = Vec::with_capacity(config.upstreams.len());
        let mut first_answers = Vec::new();
        for (spec, tls) in config.upstreams.iter().zip(upstream_tls) {
            let key = ChildKey::UpstreamPool(spec.name.clone());
            let handle = match self.upstreams.get(&spec.name).cloned() {
                Some(handle) => {
                    self.stop_changed_watcher(spec, &config.discovery);
                    if *handle.load().spec != **spec
                        && let Some(cell) = self.cells.get(&key)
                    {
                        let pool: ActorRef<UpstreamPoolMsg> = cell.clone().into();
                        let _ = pool.cast(UpstreamPoolMsg::UpdateSpec(spec.clone()));
                    }
                    handle
                }
                None => {
                    let handle = Arc::new(UpstreamHandle::new(spec.clone()));
                    self.upstreams.insert(spec.name.clone(), handle.clone());
                    let args = UpstreamPoolArgs {
                        handle: handle.clone(),
                        spec: spec.clone(),
                    };
                    if let Err(e) = self
                        .spawn_child::<UpstreamPool, _>(myself, key.clone(), || args)
                        .await
                    {
                        self.restart_later(myself, key, &e);
                    }
                    handle
                }
            };
            handle.set_tls(tls);
            if let Err(e) = self.reconcile_health_checker(myself, spec).await {
                self.restart_later(myself, ChildKey::HealthChecker(spec.name.clone()), &e);
            }
            first_answers.extend(
                self.ensure_discovery_watcher(myself, spec, &config.discovery)
                    .await,
            );
            handles.push(handle);
        }
        discovery::await_first_answers(first_answers).await;
        handles
    }

    /// Start a `Listener` on each newly bound socket; returns the sockets they replace.
    async fn start_listeners(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        bound: Vec<NewListener>,
    ) -> Vec<Arc<ListenerRuntime>> {
        let mut retired = Vec::new();
        for NewListener {
            name,
            configured,
            runtime,
        } in bound
        {
            let key = ChildKey::Listener(name.clone());
            self.stop_child(&key);
            if let Some((_, old)) = self.listeners.insert(name, (configured, runtime.clone())) {
                retired.push(old);
            }
            if let Err(e) = self
                .spawn_child::<Listener, _>(myself, key.clone(), || runtime)
                .await
            {
                self.restart_later(myself, key, &e);
            }
        }
        retired
    }

    /// Start the admin listener on its new socket, or stop it when the config has none.
    async fn reconcile_admin(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        config: &CompiledConfig,
        bound: Option<(SocketAddr, Arc<ListenerRuntime>)>,
    ) -> Option<Arc<ListenerRuntime>> {
        if let Some((address, runtime)) = bound {
            self.stop_child(&ChildKey::AdminListener);
            let old = self.admin.replace((address, runtime.clone()));
            self.view
                .admin_address
                .store(Arc::new(Some(runtime.local_addr)));
            if let Err(e) = self
                .spawn_child::<Listener, _>(myself, ChildKey::AdminListener, || runtime)
                .await
            {
                self.restart_later(myself, ChildKey::AdminListener, &e);
            }
            return old.map(|(_, rt)| rt);
        }
        if config.admin.is_none()
            && let Some((_, old)) = self.admin.take()
        {
            self.stop_child(&ChildKey::AdminListener);
            self.view.admin_address.store(Arc::new(None));
            return Some(old);
        }
        None
    }

    /// Stop the listeners the config no longer names; returns their sockets.
    fn stop_removed_listeners(&mut self, config: &CompiledConfig) -> Vec<Arc<ListenerRuntime>> {
        let removed: Vec<Arc<str>> = self
            .listeners
            .keys()
            .filter(|name| !config.listeners.iter().any(|l| l.name == **name))
            .cloned()
            .collect();
        let mut retired = Vec::new();
        for name in removed {
            self.stop_child(&ChildKey::Listener(name.clone()));
            if let Some((_, old)) = self.listeners.remove(&name) {
                retired.push(old);
            }
        }
        retired
    }

    /// Swap in the new generation's snapshot.
    fn publish(
        &mut self,
        config: &Arc<CompiledConfig>,
        upstreams: Vec<Arc<UpstreamHandle>>,
        tls: LoadedTls,
        mesh: Option<Arc<MeshRuntime>>,
    ) {
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
            upstreams,
            bound,
            tls,
            mesh,
            ca_address: self.ca_bound(),
            loaded_at: SystemTime::now(),
            extension: self.services.extension.as_ref().map(|e| e.build(config)),
        });
    }

    /// Stop the pools (and their checkers and watchers) of upstreams the config dropped.
    fn forget_removed_upstreams(&mut self, config: &CompiledConfig) {
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
    }
}

/// Let the replaced sockets' connections finish (up to the drain timeout) in the background.
fn drain_retired(retired: Vec<Arc<ListenerRuntime>>, drain_timeout: Duration) {
    for old in retired {
        tokio::spawn(async move {
            let cut = old.drain(drain_timeout).await;
            tracing::info!(listener = %old.name, address = %old.local_addr, cut_off = cut, "retired listener drained");
        });
    }
}
