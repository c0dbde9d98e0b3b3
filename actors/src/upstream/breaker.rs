//! The per-upstream `CircuitBreaker`: closed → open after N consecutive failures or a failure
//! rate over a rolling window; open for a while (requests fail fast); then half-open with a
//! few probe requests whose success closes it and whose failure reopens it. It is told one
//! outcome per request (the data plane decides which outcomes the upstream answers for).
//! Every transition is a compare-and-swap on atomics on the request path; the one request
//! that trips the circuit learns it (to tell the pool actor once, for logs and the admin API).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use meshgate_config::resilience::BreakerSpec;

use crate::clock;

/// Buckets in the rolling failure-rate window (Hystrix uses 10).
const WINDOW_BUCKETS: usize = 10;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What a request may do.
#[derive(Debug)]
pub enum Admission {
    /// Go ahead; report the outcome on the permit.
    Pass(BreakerPermit),
    /// Fail fast; the circuit may let requests through again after `retry_after`.
    Reject { retry_after: Duration },
}

/// Why the breaker opened (returned to the one request that opened it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    ConsecutiveFailures(u32),
    FailureRate { failed: u32, total: u32 },
    ProbeFailed,
}

#[derive(Debug, Default)]
pub struct CircuitBreaker {
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    /// When the circuit last opened, in [`clock::nanos`].
    opened_at: AtomicU64,
    probes_left: AtomicU32,
    probe_successes: AtomicU32,
    trips: AtomicU64,
    rejected: AtomicU64,
    window: RollingWindow,
}

impl CircuitBreaker {
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Requests failed fast so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// `(failed, total)` requests in the rolling window.
    pub fn window_counts(&self, spec: &BreakerSpec) -> (u32, u32) {
        self.window.counts(clock::nanos(), bucket_nanos(spec))
    }

    /// Until when an open circuit stays open, from now; `None` unless open.
    pub fn open_remaining(&self, spec: &BreakerSpec) -> Option<Duration> {
        (self.state() == BreakerState::Open).then(|| {
            let opened = self.opened_at.load(Ordering::Relaxed);
            let ends = opened.saturating_add(spec.open_for.as_nanos() as u64);
            Duration::from_nanos(ends.saturating_sub(clock::nanos()))
        })
    }

    /// May one request go to the upstream? `spec: None` = breaker disabled.
    pub fn admit(self: &Arc<Self>, spec: Option<&BreakerSpec>) -> Admission {
        let Some(spec) = spec else {
            return Admission::Pass(BreakerPermit::untracked());
        };
        let now = clock::nanos();
        let mut state = self.state.load(Ordering::Acquire);
        if state == OPEN {
            let opened = self.opened_at.load(Ordering::Relaxed);
            let ends = opened.saturating_add(spec.open_for.as_nanos() as u64);
            if now < ends {
                return self.reject(Duration::from_nanos(ends - now));
            }
            // The open period is over: whoever moves the circuit to half-open takes the
            // first probe and arms the rest.
            if self
                .state
                .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.probe_successes.store(0, Ordering::Relaxed);
                self.probes_left
                    .store(spec.half_open_requests.saturating_sub(1), Ordering::Release);
                return Admission::Pass(BreakerPermit::new(self, true));
            }
            state = self.state.load(Ordering::Acquire);
        }
        if state == HALF_OPEN {
            let took = self
                .probes_left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            return match took {
                Ok(_) => Admission::Pass(BreakerPermit::new(self, true)),
                // Probes are out; they will decide soon.
                Err(_) => self.reject(spec.open_for.min(Duration::from_secs(1))),
            };
        }
        Admission::Pass(BreakerPermit::new(self, false))
    }

    fn reject(&self, retry_after: Duration) -> Admission {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Admission::Reject { retry_after }
    }

    fn record(&self, spec: Option<&BreakerSpec>, probe: bool, success: bool) -> Option<Trip> {
        let spec = spec?;
        let now = clock::nanos();
        if probe {
            return self.record_probe(spec, success, now);
        }
        self.window.record(now, bucket_nanos(spec), !success);
        if success {
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let trip = if spec.consecutive_failures > 0 && n >= spec.consecutive_failures {
            Trip::ConsecutiveFailures(n)
        } else {
            let (failed, total) = self.window.counts(now, bucket_nanos(spec));
            let over_rate = spec.failure_rate > 0
                && total >= spec.minimum_requests
                && u64::from(failed) * 100 >= u64::from(total) * u64::from(spec.failure_rate);
            if !over_rate {
                return None;
            }
            Trip::FailureRate { failed, total }
        };
        self.open_from(CLOSED, now).then_some(trip)
    }

    fn record_probe(&self, spec: &BreakerSpec, success: bool, now: u64) -> Option<Trip> {
        if !success {
            return self.open_from(HALF_OPEN, now).then_some(Trip::ProbeFailed);
        }
        let ok = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
        if ok >= spec.half_open_requests
            && self
                .state
                .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // A fresh start: the failures that opened the circuit are history.
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.window.clear();
            tracing::info!("circuit closed after successful probes");
        }
        None
    }

    /// Move `from` → open. The open time is written before the state so that nobody sees
    /// an open circuit with a stale opening time.
    fn open_from(&self, from: u8, now: u64) -> bool {
        if self.state.load(Ordering::Acquire) != from {
            return false;
        }
        self.opened_at.store(now, Ordering::Relaxed);
        let opened = self
            .state
            .compare_exchange(from, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if opened {
            self.probes_left.store(0, Ordering::Release);
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }

    fn return_probe(&self) {
        if self.state.load(Ordering::Acquire) == HALF_OPEN {
            self.probes_left.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Leave for one request to go to the upstream. Report the outcome with
/// [`BreakerPermit::record`]; a probe permit dropped without an outcome (the client went away,
/// or the outcome said nothing about the upstream) is handed back.
#[derive(Debug)]
pub struct BreakerPermit {
    breaker: Option<Arc<CircuitBreaker>>,
    probe: bool,
}

impl BreakerPermit {
    fn new(breaker: &Arc<CircuitBreaker>, probe: bool) -> Self {
        Self {
            breaker: Some(breaker.clone()),
            probe,
        }
    }

    fn untracked() -> Self {
        Self {
            breaker: None,
            probe: false,
        }
    }

    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Report how the request went. `Some` exactly when this outcome opened the circuit.
    pub fn record(mut self, spec: Option<&BreakerSpec>, success: bool) -> Option<Trip> {
        let breaker = self.breaker.take()?;
        breaker.record(spec, self.probe, success)
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if self.probe
            && let Some(breaker) = self.breaker.take()
        {
            breaker.return_probe();
        }
    }
}

fn bucket_nanos(spec: &BreakerSpec) -> u64 {
    (spec.window.as_nanos() as u64 / WINDOW_BUCKETS as u64).max(1)
}

/// Requests and failures over the last [`WINDOW_BUCKETS`] buckets. A bucket is reset by the
/// first writer of a new period; a count racing with that reset may be lost, which only
/// blurs a statistic.
#[derive(Debug, Default)]
struct RollingWindow {
    buckets: [Bucket; WINDOW_BUCKETS],
}

#[derive(Debug, Default)]
struct Bucket {
    /// Which period (`now / bucket_nanos`) the counts belong to.
    period: AtomicU64,
    total: AtomicU32,
    failed: AtomicU32,
}

impl RollingWindow {
    fn record(&self, now: u64, bucket_nanos: u64, failed: bool) {
        let period = now / bucket_nanos;
        let bucket = &self.buckets[(period % WINDOW_BUCKETS as u64) as usize];
        let seen = bucket.period.load(Ordering::Acquire);
        if seen != period
            && bucket
                .period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.total.store(0, Ordering::Relaxed);
            bucket.failed.store(0, Ordering::Relaxed);
        }
        bucket.total.fetch_add(1, Ordering::Relaxed);
        if failed {
            bucket.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self, now: u64, bucket_nanos: u64) -> (u32, u32) {
        let current = now / bucket_nanos;
        let oldest = current.saturating_sub(WINDOW_BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=current).contains(&b.period.load(Ordering::Acquire)))
            .fold((0, 0), |(f, t), b| {
                (
                    f + b.failed.load(Ordering::Relaxed),
                    t + b.total.load(Ordering::Relaxed),
                )
            })
    }

    fn clear(&self) {
        for b in &self.buckets {
            b.total.store(0, Ordering::Relaxed);
            b.failed.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
