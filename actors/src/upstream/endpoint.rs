//! One resolved backend address and the per-endpoint atomics the data plane updates inline
//! (in-flight count, peak-EWMA latency, consecutive failures) beside what the control plane
//! decides (probe verdict, ejection, the weight and labels discovery reports). No locks:
//! readers and writers race benignly.

use std::any::Any;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use http::HeaderValue;

use crate::clock;

/// Latency assumed for an endpoint that has not answered yet (Linkerd's default RTT).
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast old latency observations fade (Finagle/Linkerd peak-EWMA decay).
pub const EWMA_DECAY: Duration = Duration::from_secs(10);

/// A backend endpoint. Kept (same `Arc`) across snapshot republishes while its address stays,
/// so its connection pool and statistics survive reloads, health changes and discovery
/// updates; a discovered endpoint's weight and labels are updated in place.
pub struct Endpoint {
    pub address: SocketAddr,
    /// Relative share of traffic (≥ 1); read by the balancers.
    weight: AtomicU32,
    /// `host:port` as configured, for `preserve_host: false` (a discovered endpoint's is its
    /// `IP:port`).
    pub host_header: HeaderValue,
    /// What discovery reported about the instance; empty for static targets.
    labels: ArcSwap<EndpointLabels>,
    pub stats: EndpointStats,
    pub health: EndpointHealth,
    /// The data plane's per-endpoint state (its connection pool), created on first use.
    data_plane: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("weight", &self.weight())
            .field("in_flight", &self.stats.in_flight())
            .field("health", &self.health)
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
            weight: AtomicU32::new(weight.max(1)),
            host_header,
            labels: ArcSwap::from_pointee(EndpointLabels::default()),
            stats: EndpointStats::default(),
            health: EndpointHealth::default(),
            data_plane: OnceLock::new(),
        }
    }

    /// An endpoint found by discovery: its Host is its `IP:port`.
    pub fn discovered(address: SocketAddr, weight: u32, labels: EndpointLabels) -> Self {
        let endpoint = Self::new(address, weight, &address.to_string());
        endpoint.labels.store(Arc::new(labels));
        endpoint
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Tags, metadata and instance id from discovery (empty for static targets).
    pub fn labels(&self) -> Guard<Arc<EndpointLabels>> {
        self.labels.load()
    }

    /// Discovery reported new attributes for this address (the `UpstreamPool` only; it
    /// republishes so the balancer is rebuilt with the new weight).
    pub(crate) fn update(&self, weight: u32, labels: EndpointLabels) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
        if **self.labels.load() != labels {
            self.labels.store(Arc::new(labels));
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

/// What a registry says about an instance beyond its address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointLabels {
    /// The registry's name for the instance (Consul service ID, etcd key, SRV target).
    pub id: Option<String>,
    pub tags: Vec<String>,
    /// Free-form labels such as `version` or `zone`.
    pub metadata: BTreeMap<String, String>,
}

impl EndpointLabels {
    /// The metadata key that names an instance's zone (`prefer_zone`).
    pub const ZONE: &'static str = "zone";

    pub fn zone(&self) -> Option<&str> {
        self.metadata.get(Self::ZONE).map(String::as_str)
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

/// An endpoint's health. The data plane only counts consecutive failures (and reports the one
/// that crosses the threshold); the `UpstreamPool` actor alone writes the verdicts (probe
/// result, ejection) and republishes the snapshot when they change.
#[derive(Debug, Default)]
pub struct EndpointHealth {
    consecutive_failures: AtomicU32,
    /// The active health checker's verdict (false until a probe says otherwise).
    probe_failed: AtomicBool,
    /// When the current ejection ends, in [`clock::nanos`]; 0 = not ejected.
    ejected_until: AtomicU64,
    /// How long the current (or last) ejection lasts, in nanoseconds.
    ejection_nanos: AtomicU64,
    /// The ejection multiplier: grows with each ejection, decays while the endpoint stays in.
    ejections: AtomicU32,
    /// When the last ejection ended, in [`clock::nanos`].
    unejected_at: AtomicU64,
    total_ejections: AtomicU64,
}

impl EndpointHealth {
    /// A try on this endpoint succeeded.
    pub fn record_success(&self) {
        // Read first: the common case (no failures) then never writes the shared line.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A try on this endpoint failed. True exactly when this failure completes a run of
    /// `threshold`: the caller reports that one failure to the pool, not the ones after it.
    /// The pool restarts the count when it decides; should the report be lost (the pool was
    /// restarting), the next full run reports again.
    pub fn record_failure(&self, threshold: u32) -> bool {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        threshold > 0 && n.is_multiple_of(threshold) && !self.is_ejected()
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Whether a failure here, about to be counted, is evidence against the whole upstream
    /// (its circuit breaker). Not when the endpoint is out of rotation already (ejected,
    /// failing its probes), nor when its failure run already reached the outlier `threshold`
    /// (its ejection is on the way; requests it had in flight when it died fail together):
    /// then the endpoint answers for it alone. An endpoint the pool declines to eject (the
    /// last available one, `max_ejection_percent`) has its run restarted and answers for the
    /// upstream again.
    pub fn answers_for_upstream(&self, threshold: Option<u32>) -> bool {
        // Acquire pairs with `eject`: a reset run seen here comes with its ejection.
        let run = self.consecutive_failures.load(Ordering::Acquire);
        let run_complete = threshold.is_some_and(|t| t > 0 && run >= t);
        !run_complete && self.is_available()
    }

    /// Healthy according to active probes (always true without them).
    pub fn probe_healthy(&self) -> bool {
        !self.probe_failed.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    /// May take traffic: passed its probes and not ejected.
    pub fn is_available(&self) -> bool {
        self.probe_healthy() && !self.is_ejected()
    }

    /// `(ends at, lasts)` of the current ejection, in [`clock::nanos`] and nanoseconds.
    pub fn ejection(&self) -> Option<(u64, Duration)> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until != 0).then(|| {
            (
                until,
                Duration::from_nanos(self.ejection_nanos.load(Ordering::Relaxed)),
            )
        })
    }

    /// The ejection multiplier (how many recent ejections count).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub fn total_ejections(&self) -> u64 {
        self.total_ejections.load(Ordering::Relaxed)
    }

    // Control plane (the `UpstreamPool` actor) only, below.

    pub(crate) fn set_probe_healthy(&self, healthy: bool) {
        self.probe_failed.store(!healthy, Ordering::Relaxed);
    }

    /// Start an ejection: the multiplier first decays by one per `decay_every` spent in
    /// rotation since the last ejection, then grows by one. Returns the multiplier to size
    /// the ejection with.
    pub(crate) fn next_ejection_multiplier(&self, now: u64, decay_every: Duration) -> u32 {
        let since = now.saturating_sub(self.unejected_at.load(Ordering::Relaxed));
        let decay = since / (decay_every.as_nanos().max(1) as u64);
        let previous = self.ejections.load(Ordering::Relaxed);
        let next = previous.saturating_sub(decay.min(u64::from(u32::MAX)) as u32) + 1;
        self.ejections.store(next, Ordering::Relaxed);
        next
    }

    /// Mark ejected until `until` (clock nanos) for `lasts`; returns the stamp to end it with.
    pub(crate) fn eject(&self, until: u64, lasts: Duration) -> u64 {
        let until = until.max(1);
        self.ejection_nanos
            .store(lasts.as_nanos() as u64, Ordering::Relaxed);
        self.ejected_until.store(until, Ordering::Relaxed);
        self.total_ejections.fetch_add(1, Ordering::Relaxed);
        // Release: whoever sees the run restart also sees the ejection.
        self.consecutive_failures.store(0, Ordering::Release);
        until
    }

    /// End the ejection that `stamp` started; false when a newer one replaced it.
    pub(crate) fn uneject(&self, stamp: u64, now: u64) -> bool {
        if self.ejected_until.load(Ordering::Relaxed) != stamp {
            return false;
        }
        self.ejected_until.store(0, Ordering::Relaxed);
        self.unejected_at.store(now, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }

    /// The pool declined to eject (too many ejected already): count afresh.
    pub(crate) fn reset_failures(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_run_of_failures_and_a_success_starts_over() {
        let h = EndpointHealth::default();
        let reports: Vec<bool> = (0..7).map(|_| h.record_failure(3)).collect();
        assert_eq!(reports, [false, false, true, false, false, true, false]);
        h.record_success();
        assert_eq!(h.consecutive_failures(), 0);
        assert!(!h.record_failure(3));
        assert!(!h.record_failure(0), "threshold 0 never reports");
    }

    #[test]
    fn a_failure_run_past_the_outlier_threshold_is_the_endpoints_alone() {
        let h = EndpointHealth::default();
        for _ in 0..3 {
            assert!(h.answers_for_upstream(Some(3)));
            h.record_failure(3);
        }
        assert!(
            !h.answers_for_upstream(Some(3)),
            "its ejection is on the way"
        );
        assert!(
            h.answers_for_upstream(None),
            "without outlier detection it always counts"
        );
        // The pool declined to eject it (the last available endpoint): it counts again.
        h.reset_failures();
        assert!(h.answers_for_upstream(Some(3)));
        let second = Duration::from_secs(1).as_nanos() as u64;
        h.eject(30 * second, Duration::from_secs(30));
        assert!(!h.answers_for_upstream(Some(3)), "ejected");
        assert!(!h.answers_for_upstream(None));
        h.set_probe_healthy(false);
        h.uneject(30 * second, 30 * second);
        assert!(!h.answers_for_upstream(Some(3)), "failing its probes");
        h.set_probe_healthy(true);
        assert!(h.answers_for_upstream(Some(3)));
    }

    #[test]
    fn ejections_decay_while_the_endpoint_stays_in() {
        let h = EndpointHealth::default();
        let second = Duration::from_secs(1).as_nanos() as u64;
        assert_eq!(h.next_ejection_multiplier(0, Duration::from_secs(10)), 1);
        let stamp = h.eject(30 * second, Duration::from_secs(30));
        assert!(!h.is_available());
        assert!(h.uneject(stamp, 30 * second));
        // Ejected again at once: the multiplier grows.
        assert_eq!(
            h.next_ejection_multiplier(31 * second, Duration::from_secs(10)),
            2
        );
        let stamp = h.eject(100 * second, Duration::from_secs(60));
        assert!(
            !h.uneject(stamp + 1, 40 * second),
            "a stale timer does nothing"
        );
        assert!(h.uneject(stamp, 100 * second));
        // 25 s in rotation with a 10 s interval forgets two ejections.
        assert_eq!(
            h.next_ejection_multiplier(125 * second, Duration::from_secs(10)),
            1
        );
        assert_eq!(h.total_ejections(), 2);
    }
}
