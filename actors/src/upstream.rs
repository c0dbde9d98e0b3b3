//! Upstreams: the snapshot the data plane reads ([`UpstreamState`] behind an [`UpstreamHandle`]),
//! the per-upstream atomics it updates ([`CircuitBreaker`], [`ConcurrencyLimits`]), and the
//! [`UpstreamPool`] actor that owns and republishes the snapshot.

pub mod balance;
pub mod breaker;
pub mod endpoint;
pub mod limits;
pub mod pool;

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use meshgate_config::UpstreamSpec;
use ractor::ActorRef;
use tokio::sync::watch;

pub use balance::{Balancer, PickContext, stable_hash};
pub use breaker::{Admission, BreakerPermit, BreakerState, CircuitBreaker, Trip};
pub use endpoint::{Endpoint, EndpointHealth, InFlight};
pub use limits::{ConcurrencyLimits, LimitKind, Slot};
pub use pool::{UpstreamPool, UpstreamPoolArgs, UpstreamPoolMsg};

/// The stable, shared home of one upstream's snapshot and failure-handling state. The data
/// plane keeps an `Arc` of it in the route snapshot; the pool actor swaps what is inside.
/// Survives reloads (and the pool actor's restarts) while the upstream keeps its name.
#[derive(Debug)]
pub struct UpstreamHandle {
    pub name: Arc<str>,
    state: ArcSwap<UpstreamState>,
    pub breaker: Arc<CircuitBreaker>,
    pub limits: Arc<ConcurrencyLimits>,
    /// The pool actor currently in charge, for the rare events the data plane reports.
    pool: ArcSwapOption<ActorRef<UpstreamPoolMsg>>,
    /// The version of every publish, for tests and the admin API to follow.
    published: watch::Sender<u64>,
    /// TLS to this upstream's endpoints (re-encryption or mesh mTLS), set on every apply.
    tls: ArcSwapOption<crate::tls::UpstreamTls>,
}

impl UpstreamHandle {
    pub fn new(spec: Arc<UpstreamSpec>) -> Self {
        Self {
            name: spec.name.clone(),
            state: ArcSwap::from_pointee(UpstreamState::empty(spec)),
            breaker: Arc::default(),
            limits: Arc::default(),
            pool: ArcSwapOption::empty(),
            published: watch::Sender::new(0),
            tls: ArcSwapOption::empty(),
        }
    }

    /// How to connect to this upstream over TLS, if it uses TLS.
    pub fn tls(&self) -> Option<Arc<crate::tls::UpstreamTls>> {
        self.tls.load_full()
    }

    pub(crate) fn set_tls(&self, tls: Option<Arc<crate::tls::UpstreamTls>>) {
        self.tls.store(tls);
    }

    /// The current endpoint set; cheap, lock-free.
    pub fn load(&self) -> Guard<Arc<UpstreamState>> {
        self.state.load()
    }

    pub fn load_full(&self) -> Arc<UpstreamState> {
        self.state.load_full()
    }

    /// Follow publishes: the value is the published [`UpstreamState::version`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Tell the pool actor about a rare event (an endpoint to eject, a tripped breaker).
    /// False when no pool is running (it is being restarted; the event is dropped).
    pub fn report(&self, message: UpstreamPoolMsg) -> bool {
        match self.pool.load().as_deref() {
            Some(pool) => pool.cast(message).is_ok(),
            None => false,
        }
    }

    pub(crate) fn attach_pool(&self, pool: Option<ActorRef<UpstreamPoolMsg>>) {
        self.pool.store(pool.map(Arc::new));
    }

    pub(crate) fn publish(&self, state: UpstreamState) {
        let version = state.version;
        self.state.store(Arc::new(state));
        self.published.send_replace(version);
    }
}

/// One immutable view of an upstream: its settings, its endpoints, the ones in rotation and a
/// balancer prepared over them.
#[derive(Debug)]
pub struct UpstreamState {
    pub spec: Arc<UpstreamSpec>,
    /// Every resolved endpoint, in rotation or not (the admin API shows them all).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The endpoints requests go to: the available ones, or all of them in panic mode, or
    /// none when none is available.
    pub rotation: Vec<Arc<Endpoint>>,
    /// Fewer than `panic_threshold` percent were available: balancing over all endpoints.
    pub panic: bool,
    pub balancer: Balancer,
    /// Increases with every publish.
    pub version: u64,
    /// Target names that did not resolve at the last attempt (shown by the admin API).
    pub unresolved: Vec<String>,
}

impl UpstreamState {
    fn empty(spec: Arc<UpstreamSpec>) -> Self {
        Self {
            balancer: Balancer::build(&spec.load_balancing, &[]),
            spec,
            endpoints: Vec::new(),
            rotation: Vec::new(),
            panic: false,
            version: 0,
            unresolved: Vec::new(),
        }
    }

    /// Choose an endpoint for one request.
    pub fn pick(&self, ctx: &PickContext) -> Option<&Arc<Endpoint>> {
        let i = self.balancer.pick(&self.rotation, ctx)?;
        self.rotation.get(i)
    }

    pub fn in_rotation(&self, endpoint: &Endpoint) -> bool {
        self.rotation.iter().any(|e| e.address == endpoint.address)
    }
}
