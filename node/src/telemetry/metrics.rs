//! Prometheus metrics: per-route handles of atomic counters and atomic-bucket histograms,
//! resolved when a snapshot is built (never on the request path), and the text exposition
//! served at `GET /metrics`. Recording is a handful of relaxed `fetch_add`s: no lock, no map
//! lookup, no allocation.
//!
//! Why not a crate. `prometheus-client` keeps each histogram behind a `RwLock` that `observe`
//! takes for writing, and its `Family` looks labels up in a locked map on every access unless
//! handles are cached by hand; the `metrics` facade hashes the key into a global recorder on
//! each call unless handles are registered up front, and its Prometheus exporter turns
//! histograms into summaries by default. The label sets here are fixed by config (route ×
//! upstream × method × status class), so pre-resolved handles of plain atomics are both the
//! cheapest option and a few hundred lines; the exposition follows the text format 0.0.4
//! (checked by `promtool check metrics` in the tests).
//!
//! Why shared atomics rather than per-thread shards: a relaxed `fetch_add` on a line that one
//! core owns costs a few nanoseconds; cores only contend when they serve the same route at
//! the same instant, and a route's counters sit together so one request touches few lines.
//! Shards would multiply memory by the worker count and make every scrape sum them; if
//! profiles ever show contention, `Counter` is the one type to shard.

pub mod exposition;
pub mod rate_limit_store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::Method;

/// Bucket upper bounds of every latency histogram, in seconds: sub-millisecond gateway time
/// up to a minute of upstream time; 1 s is a bound so the "p99 > 1 s" alert is exact.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const BUCKET_NANOS: [u64; 16] = {
    let mut out = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// The label value of requests that matched no route (and of their upstream).
pub const NO_ROUTE: &str = "-";

/// Method labels: the standard methods, anything else is `OTHER` (bounded cardinality).
pub const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];
const METHODS: usize = METHOD_LABELS.len();
/// Status classes `1xx` … `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The label slot of a method.
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// The label slot of a status code (`1xx` = 0 … `5xx` = 4).
pub fn status_class(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

/// A latency histogram: one atomic per bucket plus the sum. The count is the sum of the
/// buckets, so a scrape never sees a count that disagrees with them.
#[derive(Debug)]
pub struct Histogram {
    /// Non-cumulative: `buckets[i]` counts observations in `(bound[i-1], bound[i]]`; the last
    /// slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKET_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is `+Inf`, i.e. the total count).
    pub fn cumulative(&self) -> [u64; LATENCY_BUCKETS.len() + 1] {
        let mut running = 0;
        std::array::from_fn(|i| {
            running += self.buckets[i].load(Ordering::Relaxed);
            running
        })
    }

    pub fn count(&self) -> u64 {
        self.cumulative()[LATENCY_BUCKETS.len()]
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// Everything recorded about the requests of one route (its name and upstream are the labels).
/// Kept across reloads while a route of that name proxies to the same upstream.
#[derive(Debug)]
pub struct RouteMetrics {
    pub route: Arc<str>,
    /// The upstream's name, or `-` for a direct response.
    pub upstream: Arc<str>,
    requests: [[AtomicU64; STATUS_CLASSES.len()]; METHODS],
    pub total: Histogram,
    pub upstream_time: Histogram,
    pub gateway_time: Histogram,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    auth_rejected: [AtomicU64; METHODS],
    rate_limited: [AtomicU64; METHODS],
}

/// One finished request, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub method: usize,
    pub status: u16,
    pub total: Duration,
    pub upstream: Option<Duration>,
    pub gateway: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl RouteMetrics {
    pub fn new(route: Arc<str>, upstream: Arc<str>) -> Self {
        Self {
            route,
            upstream,
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            total: Histogram::default(),
            upstream_time: Histogram::default(),
            gateway_time: Histogram::default(),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            auth_rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            rate_limited: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn record(&self, o: &Outcome) {
        self.requests[o.method.min(METHODS - 1)][status_class(o.status)]
            .fetch_add(1, Ordering::Relaxed);
        self.total.observe(o.total);
        if let Some(upstream) = o.upstream {
            self.upstream_time.observe(upstream);
        }
        self.gateway_time.observe(o.gateway);
        self.request_bytes
            .fetch_add(o.request_bytes, Ordering::Relaxed);
        self.response_bytes
            .fetch_add(o.response_bytes, Ordering::Relaxed);
    }

    /// The authentication filter refused a request of this route (401/403).
    pub fn auth_rejected(&self, method: &Method) {
        self.auth_rejected[method_index(method)].fetch_add(1, Ordering::Relaxed);
    }

    /// The rate limiter refused a request of this route (429).
    pub fn rate_limited(&self, method: &Method) {
        self.rate_limited[method_index(method)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self, method: usize, class: usize) -> u64 {
        self.requests[method][class].load(Ordering::Relaxed)
    }

    /// Requests of every method and status class.
    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Connections of one proxy listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    active: AtomicI64,
    total: AtomicU64,
}

impl ListenerMetrics {
    /// Count a new connection; the guard counts it closed when dropped.
    pub fn open(self: &Arc<Self>) -> ConnectionGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    pub fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// One open connection of a listener.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<ListenerMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

type RouteKey = (Arc<str>, Arc<str>);

/// The node's metric registry; lives as long as the process, across every reload.
///
/// The maps are written only by the supervisor building a snapshot (and by the rare hooks
/// below) and read by scrapes; the request path holds resolved `Arc` handles and never
/// touches them.
#[derive(Debug)]
pub struct Metrics {
    routes: ArcSwap<BTreeMap<RouteKey, Arc<RouteMetrics>>>,
    unrouted: Arc<RouteMetrics>,
    listeners: ArcSwap<BTreeMap<Arc<str>, Arc<ListenerMetrics>>>,
    ejections: ArcSwap<BTreeMap<Arc<str>, Arc<AtomicU64>>>,
    discovery_synced: ArcSwap<BTreeMap<Arc<str>, SystemTime>>,
    certificates: ArcSwap<BTreeMap<Arc<str>, SystemTime>>,
    /// Reported by the rate-limit filter.
    pub rate_limit_store: Arc<rate_limit_store::RateLimitStoreMetrics>,
    pub started_at: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            routes: ArcSwap::default(),
            unrouted: Arc::new(RouteMetrics::new(NO_ROUTE.into(), NO_ROUTE.into())),
            listeners: ArcSwap::default(),
            ejections: ArcSwap::default(),
            discovery_synced: ArcSwap::default(),
            certificates: ArcSwap::default(),
            rate_limit_store: Arc::default(),
            started_at: SystemTime::now(),
        }
    }
}

impl Metrics {
    /// The handles of one generation's routes, `(name, upstream)` each, reusing the handle of
    /// every pair the previous generation had; pairs no longer configured stop being exported.
    /// Called only by the snapshot builder (one writer).
    pub fn resolve_routes(&self, routes: &[(Arc<str>, Arc<str>)]) -> Vec<Arc<RouteMetrics>> {
        let previous = self.routes.load();
        let mut next = BTreeMap::new();
        let handles = routes
            .iter()
            .map(|key| {
                let handle = previous
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(RouteMetrics::new(key.0.clone(), key.1.clone())));
                next.insert(key.clone(), handle.clone());
                handle
            })
            .collect();
        self.routes.store(Arc::new(next));
        handles
    }

    /// The handle of requests that matched no route (`route="-"`).
    pub fn unrouted(&self) -> &Arc<RouteMetrics> {
        &self.unrouted
    }

    /// The handles of one generation's listeners, reused by name.
    pub fn resolve_listeners(
        &self,
        names: &[Arc<str>],
    ) -> BTreeMap<Arc<str>, Arc<ListenerMetrics>> {
        let previous = self.listeners.load();
        let next: BTreeMap<_, _> = names
            .iter()
            .map(|name| {
                let handle = previous.get(name).cloned().unwrap_or_default();
                (name.clone(), handle)
            })
            .collect();
        self.listeners.store(Arc::new(next.clone()));
        next
    }

    /// Hook for outlier detection (resilience work): an endpoint of `upstream` was ejected.
    pub fn upstream_ejected(&self, upstream: &str) {
        if let Some(counter) = self.ejections.load().get(upstream) {
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.ejections.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            map.entry(Arc::from(upstream)).or_default();
            map
        });
        if let Some(counter) = self.ejections.load().get(upstream) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hook for discovery watchers: `source` (a discovered service) last synced at `at`;
    /// exported as `meshgate_discovery_staleness_seconds`.
    pub fn discovery_synced(&self, source: &str, at: SystemTime) {
        Self::set_time(&self.discovery_synced, source, at);
    }

    /// Hook for the certificate rotator: certificate `name` expires at `not_after`; exported
    /// as `meshgate_certificate_expiry_seconds`.
    pub fn certificate_expires(&self, name: &str, not_after: SystemTime) {
        Self::set_time(&self.certificates, name, not_after);
    }

    fn set_time(map: &ArcSwap<BTreeMap<Arc<str>, SystemTime>>, key: &str, at: SystemTime) {
        map.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            next.insert(Arc::from(key), at);
            next
        });
    }
}

#[cfg(test)]
mod tests;
