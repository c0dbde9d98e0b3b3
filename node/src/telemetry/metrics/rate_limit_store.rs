//! The shared rate-limit store (Redis) as the rate-limit filter reports it: whether it answers,
//! how many checks failed, and how many requests were decided without it. Plain atomics, one
//! set per node, exported as `meshgate_rate_limit_redis_*`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct RateLimitStoreMetrics {
    configured: AtomicBool,
    reachable: AtomicBool,
    errors: AtomicU64,
    fallback_open: AtomicU64,
    fallback_closed: AtomicU64,
}

impl RateLimitStoreMetrics {
    /// Whether the serving config has a Redis store (the gauge is exported only then).
    pub fn set_configured(&self, configured: bool) {
        self.configured.store(configured, Ordering::Relaxed);
    }

    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    /// A check failed or timed out.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was decided by a local fallback limit (failure mode open).
    pub fn fallback_open(&self) {
        self.fallback_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused because the store could not answer (failure mode closed).
    pub fn fallback_closed(&self) {
        self.fallback_closed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn configured(&self) -> bool {
        self.configured.load(Ordering::Relaxed)
    }

    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Requests decided without the store: (by the local fallback, refused).
    pub fn fallbacks(&self) -> (u64, u64) {
        (
            self.fallback_open.load(Ordering::Relaxed),
            self.fallback_closed.load(Ordering::Relaxed),
        )
    }
}
