//! Per-upstream `ConcurrencyLimits` (Envoy's circuit-breaker thresholds): counters of open
//! connections, pending requests, requests and retries in flight. A [`Slot`] holds one unit
//! until dropped; acquiring past the bound fails at once (the caller answers 503). Atomics
//! only; the one `Notify` wakes requests waiting for a connection slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use meshgate_config::resilience::LimitsSpec;
use tokio::sync::Notify;

/// Which bound a slot counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Connection,
    Pending,
    Request,
    Retry,
}

#[derive(Debug, Default)]
pub struct ConcurrencyLimits {
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    /// Requests turned away by a full bound (connections, pending, requests).
    overflows: AtomicU64,
    retries_started: AtomicU64,
    /// Retries not made because the retry budget was spent.
    retries_denied: AtomicU64,
    /// Woken whenever a connection slot frees or a connection goes back to a pool.
    released: Notify,
}

impl ConcurrencyLimits {
    fn counter(&self, kind: LimitKind) -> &AtomicU32 {
        match kind {
            LimitKind::Connection => &self.connections,
            LimitKind::Pending => &self.pending,
            LimitKind::Request => &self.requests,
            LimitKind::Retry => &self.retries,
        }
    }

    pub fn current(&self, kind: LimitKind) -> u32 {
        self.counter(kind).load(Ordering::Relaxed)
    }

    /// One unit of `kind` if fewer than `max` are taken.
    pub fn try_acquire(self: &Arc<Self>, kind: LimitKind, max: u32) -> Option<Slot> {
        let taken = self
            .counter(kind)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if taken {
            Some(Slot {
                limits: self.clone(),
                kind,
            })
        } else {
            if kind != LimitKind::Retry {
                self.overflows.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
    }

    /// A retry slot if the budget allows one more concurrent retry (Envoy's
    /// `retry_budget`: a share of the active requests, never below its minimum).
    pub fn try_retry(self: &Arc<Self>, spec: &LimitsSpec) -> Option<Slot> {
        let allowed = spec.retries_allowed(self.current(LimitKind::Request));
        let slot = self.try_acquire(LimitKind::Retry, allowed);
        let counter = if slot.is_some() {
            &self.retries_started
        } else {
            &self.retries_denied
        };
        counter.fetch_add(1, Ordering::Relaxed);
        slot
    }

    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    pub fn retries_started(&self) -> u64 {
        self.retries_started.load(Ordering::Relaxed)
    }

    pub fn retries_denied(&self) -> u64 {
        self.retries_denied.load(Ordering::Relaxed)
    }

    /// Notified when a connection slot frees or a connection is pooled again.
    pub fn released(&self) -> &Notify {
        &self.released
    }
}

/// One unit of a bound, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConcurrencyLimits>,
    kind: LimitKind,
}

impl Slot {
    pub fn kind(&self) -> LimitKind {
        self.kind
    }

    /// The limits this slot counts against.
    pub fn limits(&self) -> &Arc<ConcurrencyLimits> {
        &self.limits
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits
            .counter(self.kind)
            .fetch_sub(1, Ordering::AcqRel);
        if self.kind == LimitKind::Connection {
            self.limits.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_config::resilience::{LimitsSpec, RetryBudget};

    #[test]
    fn slots_are_bounded_and_given_back() {
        let limits = Arc::new(ConcurrencyLimits::default());
        let a = limits.try_acquire(LimitKind::Request, 2).unwrap();
        let _b = limits.try_acquire(LimitKind::Request, 2).unwrap();
        assert!(limits.try_acquire(LimitKind::Request, 2).is_none());
        assert_eq!(limits.overflows(), 1);
        drop(a);
        assert!(limits.try_acquire(LimitKind::Request, 2).is_some());
        assert_eq!(limits.current(LimitKind::Request), 1);
    }

    #[test]
    fn the_retry_budget_follows_active_requests() {
        let spec = LimitsSpec {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: None,
            retry_budget: RetryBudget {
                percent: 20,
                min_concurrency: 3,
            },
        };
        let limits = Arc::new(ConcurrencyLimits::default());
        let requests: Vec<_> = (0..20)
            .map(|_| limits.try_acquire(LimitKind::Request, 1024).unwrap())
            .collect();
        // 20 % of 20 active requests = 4 concurrent retries.
        let retries: Vec<_> = (0..4).map(|_| limits.try_retry(&spec).unwrap()).collect();
        assert!(limits.try_retry(&spec).is_none());
        assert_eq!(limits.retries_denied(), 1);
        drop(requests);
        drop(retries);
        // With no other load the minimum still allows 3.
        let _r: Vec<_> = (0..3).map(|_| limits.try_retry(&spec).unwrap()).collect();
        assert!(limits.try_retry(&spec).is_none());
        assert_eq!(limits.retries_started(), 7);
    }
}
