//! A per-client budget of expensive work (Argon2 verifications): a GCRA token bucket in one
//! atomic, so checking it never takes a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Generic cell rate algorithm (the leaky bucket as a meter): `burst` actions at once, then one
/// per `interval`.
#[derive(Debug, Default)]
pub struct Gcra {
    /// Theoretical arrival time of the next action, in clock nanoseconds.
    tat: AtomicU64,
}

impl Gcra {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one action at `now` (nanoseconds); `Err` is how long until one is allowed.
    pub fn try_acquire(&self, now: u64, interval: Duration, burst: u32) -> Result<(), Duration> {
        let interval = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let tolerance = interval.saturating_mul(u64::from(burst.max(1)) - 1);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            let allowed_at = start.saturating_sub(tolerance);
            if allowed_at > now {
                return Err(Duration::from_nanos(allowed_at - now));
            }
            match self.tat.compare_exchange_weak(
                tat,
                start.saturating_add(interval),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn burst_then_one_per_interval() {
        let g = Gcra::new();
        let interval = Duration::from_secs(1);
        let now = 100 * SECOND;
        for _ in 0..3 {
            assert!(g.try_acquire(now, interval, 3).is_ok());
        }
        let wait = g.try_acquire(now, interval, 3).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(g.try_acquire(now + SECOND / 2, interval, 3).is_err());
        assert!(g.try_acquire(now + SECOND, interval, 3).is_ok());
        assert!(g.try_acquire(now + SECOND, interval, 3).is_err());
        // A long pause refills the whole burst, never more.
        let later = now + 100 * SECOND;
        for _ in 0..3 {
            assert!(g.try_acquire(later, interval, 3).is_ok());
        }
        assert!(g.try_acquire(later, interval, 3).is_err());
    }
}
