//! Limits counted in this node's memory, keyed by client, never behind a lock.
//!
//! **GCRA comes from `governor`.** The token bucket as a meter (one theoretical-arrival time
//! per key and window, updated with a compare-and-swap) is the algorithm's canonical form, and
//! governor is the maintained, widely used implementation of it (tower-governor and
//! actix-governor build on it): exact quota arithmetic, remaining-capacity snapshots,
//! wait-time answers, and a clock abstraction (`FakeRelativeClock` drives the unit tests,
//! `QuantaClock` reads the TSC in production — no system call per request).
//!
//! **Its keyed store is replaced.** governor's keyed limiter keeps states in a `DashMap`, whose
//! shards are reader–writer locks: every check takes a shard lock, and a new key takes it for
//! writing. The request path here takes no lock, so states live in a `papaya` map (lock-free
//! reads and inserts, incremental resizing, memory reclaimed by epochs) and governor sees each
//! key's states through [`Slot`], a [`StateStore`] that indexes the key's cells directly.
//!
//! **Sliding and fixed windows** (which governor does not have) are one packed atomic word per
//! key and window ([`super::window`]) in the same kind of map.
//!
//! A policy's windows are checked shortest first; the first to refuse decides, so a request
//! refused by a long window has used one unit of the shorter ones before it (those refill within
//! their own short period). Keys whose every window is back to full are swept by a background
//! task; a request racing the sweep of its own idle key may go uncounted once.

use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, QuantaClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use meshgate_actors::SupervisedTask;
use meshgate_config::rate_limit::{Algorithm, Window};

use super::window;
use super::{Decision, WindowReport};

/// One policy's counters in memory.
pub struct LocalLimiter<C: Clock + Clone = QuantaClock> {
    windows: Vec<Window>,
    counters: Counters<C>,
}

impl<C: Clock + Clone> std::fmt::Debug for LocalLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("windows", &self.windows)
            .field("keys", &self.len())
            .finish()
    }
}

enum Counters<C: Clock + Clone> {
    Gcra {
        keys: papaya::HashMap<Box<str>, Arc<GcraCells>>,
        meters: Vec<Meter<C>>,
    },
    Windows {
        keys: papaya::HashMap<Box<str>, WindowCells>,
        sliding: bool,
        clock: C,
        origin: C::Instant,
    },
}

/// One GCRA meter per window; all share the keys' cells through [`Slot`].
struct Meter<C: Clock + Clone> {
    limiter: RateLimiter<CellsKey, Slot, C, StateInformationMiddleware>,
    /// Read just before the limiter's own start: `now - origin` bounds its relative time.
    origin: C::Instant,
    /// Time one request adds to the theoretical arrival time.
    emission: Duration,
    burst: u32,
}

/// A key's GCRA states, one per window.
struct GcraCells(Box<[InMemoryState]>);

/// A key's window counters, one per window.
struct WindowCells(Box<[AtomicU64]>);

/// governor's key: the already-found cells, compared by identity.
#[derive(Clone)]
struct CellsKey(Arc<GcraCells>);

impl PartialEq for CellsKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CellsKey {}

impl Hash for CellsKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

/// The state store of window `n`: the `n`th cell of whichever key governor is checking.
struct Slot(usize);

impl StateStore for Slot {
    type Key = CellsKey;

    fn measure_and_replace<T, F, E>(&self, key: &Self::Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        match key.0.0.get(self.0) {
            Some(cell) => cell.measure_and_replace(&NotKeyed::NonKey, f),
            // Unreachable (cells are made with one per meter); a fresh state decides.
            None => f(None).map(|(t, _)| t),
        }
    }
}

impl LocalLimiter<QuantaClock> {
    pub fn new(algorithm: Algorithm, windows: &[Window]) -> Self {
        Self::with_clock(algorithm, windows, QuantaClock::default())
    }
}

impl<C: Clock + Clone> LocalLimiter<C> {
    pub fn with_clock(algorithm: Algorithm, windows: &[Window], clock: C) -> Self {
        let counters = match algorithm {
            Algorithm::Gcra => Counters::Gcra {
                keys: papaya::HashMap::new(),
                meters: windows
                    .iter()
                    .enumerate()
                    .map(|(i, w)| meter(i, w, &clock))
                    .collect(),
            },
            Algorithm::SlidingWindow | Algorithm::FixedWindow => Counters::Windows {
                keys: papaya::HashMap::new(),
                sliding: algorithm == Algorithm::SlidingWindow,
                origin: clock.now(),
                clock,
            },
        };
        Self {
            windows: windows.to_vec(),
            counters,
        }
    }

    /// Count one request of `key` against every window.
    pub fn check(&self, key: &str) -> Decision {
        match &self.counters {
            Counters::Gcra { keys, meters } => {
                let cells = {
                    let keys = keys.pin();
                    match keys.get(key) {
                        Some(cells) => cells.clone(),
                        None => keys
                            .get_or_insert_with(key.into(), || GcraCells::new(meters.len()))
                            .clone(),
                    }
                };
                self.check_gcra(meters, &CellsKey(cells))
            }
            Counters::Windows {
                keys,
                sliding,
                clock,
                origin,
            } => {
                let now = clock.now().duration_since(*origin).as_u64();
                let keys = keys.pin();
                let cells = match keys.get(key) {
                    Some(cells) => cells,
                    None => keys.get_or_insert_with(key.into(), || {
                        WindowCells(self.windows.iter().map(|_| AtomicU64::new(0)).collect())
                    }),
                };
                let count = if *sliding {
                    window::sliding
                } else {
                    window::fixed
                };
                self.check_windows(cells, now, count)
            }
        }
    }

    fn check_gcra(&self, meters: &[Meter<C>], key: &CellsKey) -> Decision {
        let mut closest: Option<WindowReport> = None;
        for (meter, w) in meters.iter().zip(&self.windows) {
            match meter.limiter.check_key(key) {
                Ok(snapshot) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    // The bucket is full again once the spent capacity has dripped back.
                    let reset = meter.emission * meter.burst.saturating_sub(remaining);
                    closest = Some(closer(closest, report(w, meter.burst, remaining, reset)));
                }
                Err(not_until) => {
                    let retry_after = not_until.wait_time_from(meter.limiter.clock().now());
                    let until_full = retry_after + meter.emission * (meter.burst - 1);
                    return Decision::denied(report(w, meter.burst, 0, until_full), retry_after);
                }
            }
        }
        Decision::allowed(closest)
    }

    fn check_windows(
        &self,
        cells: &WindowCells,
        now: u64,
        count: fn(u64, u64, u64, u32) -> (window::Count, Option<u64>),
    ) -> Decision {
        let mut closest: Option<WindowReport> = None;
        for (cell, w) in cells.0.iter().zip(&self.windows) {
            let period = nanos(w.period);
            let mut state = cell.load(Ordering::Acquire);
            let counted = loop {
                let (verdict, next) = count(state, now, period, w.requests);
                let Some(next) = next else { break verdict };
                match cell.compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break verdict,
                    Err(current) => state = current,
                }
            };
            let r = report(
                w,
                w.requests,
                counted.remaining,
                Duration::from_nanos(counted.reset),
            );
            if !counted.allowed {
                return Decision::denied(r, Duration::from_nanos(counted.retry_after));
            }
            closest = Some(closer(closest, r));
        }
        Decision::allowed(closest)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        match &self.counters {
            Counters::Gcra { keys, .. } => keys.len(),
            Counters::Windows { keys, .. } => keys.len(),
        }
    }

    /// Forget keys whose every window is back to full.
    pub fn sweep(&self) {
        match &self.counters {
            Counters::Gcra { keys, meters } => {
                keys.pin().retain(|_, cells| gcra_refilling(cells, meters));
            }
            Counters::Windows {
                keys,
                sliding,
                clock,
                origin,
            } => {
                let now = clock.now().duration_since(*origin).as_u64();
                let idle = if *sliding {
                    window::sliding_is_idle
                } else {
                    window::fixed_is_idle
                };
                keys.pin().retain(|_, cells| {
                    !cells
                        .0
                        .iter()
                        .zip(&self.windows)
                        .all(|(c, w)| idle(c.load(Ordering::Acquire), now, nanos(w.period)))
                });
            }
        }
    }

    /// How often [`sweep`](Self::sweep) is worth running: a key can be idle no sooner than
    /// its longest window refills.
    fn sweep_interval(&self) -> Duration {
        let longest = self
            .windows
            .iter()
            .map(|w| w.period)
            .max()
            .unwrap_or(Duration::from_secs(1));
        longest.clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> LocalLimiter<C>
where
    C::Instant: Send + Sync,
{
    /// Sweep idle keys in the background for as long as the limiter lives; a sweep that
    /// panics is restarted with backoff, and the supervision ends with the limiter.
    pub fn sweep_in_background(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.sweep_interval();
        SupervisedTask::spawn("rate-limit sweep", move || {
            weak.upgrade()?;
            let weak = weak.clone();
            Some(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let Some(limiter) = weak.upgrade() else {
                        return;
                    };
                    limiter.sweep();
                }
            })
        })
        .detach();
    }
}

/// Whether any of a key's buckets is not yet full again (then the key is kept).
fn gcra_refilling<C: Clock + Clone>(cells: &GcraCells, meters: &[Meter<C>]) -> bool {
    cells.0.iter().zip(meters).any(|(cell, meter)| {
        // A read: the closure refuses, so governor's state is left as it was.
        let tat = cell
            .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
            .err()
            .flatten();
        let now = meter.limiter.clock().now().duration_since(meter.origin);
        tat.is_some_and(|tat| tat > now)
    })
}

impl GcraCells {
    fn new(windows: usize) -> Arc<Self> {
        Arc::new(Self(
            (0..windows).map(|_| InMemoryState::default()).collect(),
        ))
    }
}

fn meter<C: Clock + Clone>(index: usize, w: &Window, clock: &C) -> Meter<C> {
    let requests = w.requests.max(1);
    let emission = (w.period / requests).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(w.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(emission)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    let origin = clock.now();
    let limiter: RateLimiter<CellsKey, Slot, C, StateInformationMiddleware> =
        RateLimiter::new(quota, Slot(index), clock.clone());
    Meter {
        limiter,
        origin,
        emission,
        burst: burst.get(),
    }
}

fn report(w: &Window, limit: u32, remaining: u32, reset: Duration) -> WindowReport {
    WindowReport {
        limit,
        remaining,
        reset,
        label: w.label.clone(),
    }
}

/// The window nearer to refusing: fewer remaining, then the later reset.
pub(super) fn closer(current: Option<WindowReport>, candidate: WindowReport) -> WindowReport {
    match current {
        Some(c)
            if c.remaining < candidate.remaining
                || (c.remaining == candidate.remaining && c.reset >= candidate.reset) =>
        {
            c
        }
        _ => candidate,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
