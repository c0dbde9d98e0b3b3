//! Upstreams: the snapshot the data plane reads ([`UpstreamState`] behind an [`UpstreamHandle`])
//! and the [`UpstreamPool`] actor that owns and republishes it.

pub mod balance;
pub mod endpoint;
pub mod pool;

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use meshgate_config::UpstreamSpec;

pub use balance::{Balancer, PickContext, stable_hash};
pub use endpoint::{Endpoint, InFlight};
pub use pool::{UpstreamPool, UpstreamPoolArgs, UpstreamPoolMsg};

/// The stable, shared home of one upstream's snapshot. The data plane keeps an `Arc` of it in
/// the route snapshot; the pool actor swaps what is inside.
#[derive(Debug)]
pub struct UpstreamHandle {
    pub name: Arc<str>,
    state: ArcSwap<UpstreamState>,
}

impl UpstreamHandle {
    pub fn new(spec: Arc<UpstreamSpec>) -> Self {
        Self {
            name: spec.name.clone(),
            state: ArcSwap::from_pointee(UpstreamState::empty(spec)),
        }
    }

    /// The current endpoint set; cheap, lock-free.
    pub fn load(&self) -> Guard<Arc<UpstreamState>> {
        self.state.load()
    }

    pub(crate) fn publish(&self, state: UpstreamState) {
        self.state.store(Arc::new(state));
    }
}

/// One immutable view of an upstream: its settings, its endpoints, and a prepared balancer.
#[derive(Debug)]
pub struct UpstreamState {
    pub spec: Arc<UpstreamSpec>,
    pub endpoints: Vec<Arc<Endpoint>>,
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
            version: 0,
            unresolved: Vec::new(),
        }
    }

    /// Choose an endpoint for one request.
    pub fn pick(&self, ctx: &PickContext) -> Option<&Arc<Endpoint>> {
        let i = self.balancer.pick(&self.endpoints, ctx)?;
        self.endpoints.get(i)
    }
}
