//! Exponential backoff with jitter and a cap, for retrying a registry that failed. It only
//! computes delays; the caller sleeps (so tests can drive it with tokio's paused clock).

use std::time::Duration;

use rand::Rng;

#[cfg(test)]
mod tests;

/// Delays that double from `min` up to `max`, with "equal jitter": each delay is half the
/// exponential step plus a random part of the other half, so retries from many sidecars spread
/// out but never collapse to zero.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub const DEFAULT_MIN: Duration = Duration::from_millis(500);
    pub const DEFAULT_MAX: Duration = Duration::from_secs(30);

    /// A backoff from `min` doubling up to `max` (`max` is raised to `min` if smaller).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The delay before the next retry; each call counts one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            rand::rng().random_range(0..=spread)
        };
        (step - half) + Duration::from_nanos(jitter)
    }

    /// Forget past failures: the next delay starts from `min` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn step(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MIN, Self::DEFAULT_MAX)
    }
}
