//! One resolved backend address and the per-endpoint atomics the data plane updates inline
//! (in-flight count, peak-EWMA latency). No locks: readers and writers race benignly.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderValue;

use crate::clock;

/// Latency assumed for an endpoint that has not answered yet (Linkerd's default RTT).
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast old latency observations fade (Finagle/Linkerd peak-EWMA decay).
pub const EWMA_DECAY: Duration = Duration::from_secs(10);

/// A backend endpoint. Kept (same `Arc`) across snapshot republishes while its address stays,
/// so its connection pool and statistics survive reloads and health changes.
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
    /// `host:port` as configured, for `preserve_host: false`.
    pub host_header: HeaderValue,
    pub stats: EndpointStats,
    /// The data plane's per-endpoint state (its connection pool), created on first use.
    data_plane: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("weight", &self.weight)
            .field("in_flight", &self.stats.in_flight())
            .finish()
    }
}

impl Endpoint {
    pub fn new(address: SocketAddr, weight: u32, host: &str) -> Self {
        let host_header = HeaderValue::from_str(host)
            .or_else(|_| HeaderValue::from_str(&address.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Self {
            address,
            weight: weight.max(1),
            host_header,
            stats: EndpointStats::default(),
            data_plane: OnceLock::new(),
        }
    }

    /// The data plane's state for this endpoint, created by `init` on first use. `None` only if
    /// a different type was stored before, which one binary never does.
    pub fn data_plane<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        self.data_plane
            .get_or_init(|| Box::new(init()))
            .downcast_ref::<T>()
    }

    /// Count a request as started on this endpoint; the guard ends it when dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint: self.clone(),
        }
    }

    /// The data plane's state if it was created.
    pub fn data_plane_if_created<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.data_plane.get()?.downcast_ref::<T>()
    }
}

/// Counters updated on the request path with relaxed atomics.
#[derive(Debug)]
pub struct EndpointStats {
    in_flight: AtomicU32,
    /// Peak-EWMA round-trip time in nanoseconds, stored as f64 bits.
    ewma_nanos: AtomicU64,
    /// When `ewma_nanos` was last updated, in [`clock::nanos`].
    ewma_stamp: AtomicU64,
    requests: AtomicU64,
}

impl Default for EndpointStats {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma_nanos: AtomicU64::new((DEFAULT_RTT.as_nanos() as f64).to_bits()),
            ewma_stamp: AtomicU64::new(clock::nanos()),
            requests: AtomicU64::new(0),
        }
    }
}

impl EndpointStats {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The current peak-EWMA estimate, decayed to now.
    pub fn ewma(&self) -> f64 {
        f64::from_bits(self.ewma_nanos.load(Ordering::Relaxed))
    }

    /// Record one observed round trip (Finagle's peak EWMA: a slower sample replaces the
    /// estimate at once, faster samples pull it down with exponential decay).
    pub fn observe_rtt(&self, rtt: Duration) {
        let now = clock::nanos();
        let rtt = rtt.as_nanos() as f64;
        let prev = self.ewma();
        let elapsed = now.saturating_sub(self.ewma_stamp.swap(now, Ordering::Relaxed)) as f64;
        let next = if rtt > prev {
            rtt
        } else {
            let w = (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
            prev * w + rtt * (1.0 - w)
        };
        self.ewma_nanos.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Peak-EWMA load: latency × (outstanding + 1).
    pub fn ewma_cost(&self) -> f64 {
        self.ewma() * (f64::from(self.in_flight()) + 1.0)
    }
}

/// Marks one request in flight on an endpoint until dropped.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
}

impl InFlight {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint
            .stats
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}
