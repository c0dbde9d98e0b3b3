//! What the control plane publishes for the data plane and the admin API: the route
//! [`Snapshot`] (swapped whole on reload) and the [`NodeView`] that holds it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use arc_swap::{ArcSwap, Guard};
use meshgate_config::{CompiledConfig, RouteTable};
use tokio::sync::watch;

use crate::tls::ListenerTls;
use crate::upstream::UpstreamHandle;

/// One config generation, ready to serve: compiled routes plus the live upstream handles they
/// point at (same order as `config.upstreams`).
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<CompiledConfig>,
    pub upstreams: Vec<Arc<UpstreamHandle>>,
    /// Listeners as actually bound (port 0 resolved).
    pub bound: Vec<BoundListener>,
    /// TLS of the listeners that terminate it, loaded from their files.
    pub tls: crate::tls::LoadedTls,
    /// The mesh identity, authorization and CA service, when this node is in a mesh.
    pub mesh: Option<Arc<crate::mesh::MeshRuntime>>,
    /// Where the CA service listens, on the node that runs it.
    pub ca_address: Option<SocketAddr>,
    pub loaded_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    pub name: Arc<str>,
    pub address: SocketAddr,
}

impl Snapshot {
    /// The routes of one listener, if it exists in this generation.
    pub fn route_table(&self, listener: &str) -> Option<&Arc<RouteTable>> {
        self.config
            .listeners
            .iter()
            .find(|l| &*l.name == listener)
            .map(|l| &l.routes)
    }

    /// Whether a listener accepts h2c in this generation (default true for unknown ones).
    pub fn listener_http2(&self, listener: &str) -> bool {
        self.config
            .listeners
            .iter()
            .find(|l| &*l.name == listener)
            .is_none_or(|l| l.http2)
    }

    /// A listener's compiled settings.
    pub fn listener(&self, name: &str) -> Option<&meshgate_config::ListenerSpec> {
        self.config.listeners.iter().find(|l| &*l.name == name)
    }

    /// The TLS a listener terminates, if any.
    pub fn listener_tls(&self, listener: &str) -> Option<&Arc<ListenerTls>> {
        self.tls
            .iter()
            .find(|(name, _)| &**name == listener)
            .map(|(_, tls)| tls)
    }

    pub fn bound_address(&self, listener: &str) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|b| &*b.name == listener)
            .map(|b| b.address)
    }
}

/// The outcome of one reload attempt, for `/status` and for tests to await.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadEvent {
    /// Counts attempts, successful or not.
    pub attempt: u64,
    /// The generation serving after the attempt.
    pub generation: u64,
    /// `Err` carries every problem, one per line.
    pub result: Result<(), String>,
}

/// Shared, lock-free view of the running node.
#[derive(Debug)]
pub struct NodeView {
    snapshot: ArcSwap<Snapshot>,
    draining: AtomicBool,
    pub started_at: SystemTime,
    pub admin_address: ArcSwap<Option<SocketAddr>>,
    reloads: watch::Sender<ReloadEvent>,
    restarts: watch::Sender<u64>,
}

impl NodeView {
    pub fn new(initial: Snapshot) -> Arc<Self> {
        let generation = initial.generation;
        let (reloads, _) = watch::channel(ReloadEvent {
            attempt: 0,
            generation,
            result: Ok(()),
        });
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(initial),
            draining: AtomicBool::new(false),
            started_at: SystemTime::now(),
            admin_address: ArcSwap::from_pointee(None),
            reloads,
            restarts: watch::Sender::new(0),
        })
    }

    /// The current snapshot (request path: cheap, lock-free).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn generation(&self) -> u64 {
        self.snapshot.load().generation
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn record_reload(&self, generation: u64, result: Result<(), String>) {
        self.reloads.send_modify(|e| {
            e.attempt += 1;
            e.generation = generation;
            e.result = result;
        });
    }

    /// Follow reload attempts (tests await the next one instead of sleeping).
    pub fn reloads(&self) -> watch::Receiver<ReloadEvent> {
        self.reloads.subscribe()
    }

    /// Count one actor restart by the supervisor.
    pub fn record_restart(&self) {
        self.restarts.send_modify(|n| *n += 1);
    }

    /// Actor restarts so far, to follow (tests) or read (`/status`).
    pub fn restarts(&self) -> watch::Receiver<u64> {
        self.restarts.subscribe()
    }

    pub fn last_reload(&self) -> ReloadEvent {
        self.reloads.borrow().clone()
    }
}
