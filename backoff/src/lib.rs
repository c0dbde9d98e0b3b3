//! meshgate's one exponential backoff: delays that double from a base up to a cap, with a
//! chosen share of jitter. It only computes delays; the caller sleeps (so tests can drive it
//! with tokio's paused clock). Every crate of the workspace uses this type: actor restarts,
//! registry retries, certificate renewal retries and upstream request retries.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use rand::Rng;

#[cfg(test)]
mod tests;

/// How much of each exponential step is left to chance, as the share taken off the step.
/// The names follow the AWS Architecture Blog's "Exponential Backoff And Jitter".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Exactly the step (deterministic tests).
    None,
    /// Uniform in `[step / 2, step]`: callers that restart together spread out, yet never
    /// retry at once (restarts, registry retries).
    Equal,
    /// Uniform in `[0, step]` (Envoy's retry back-off): the widest spread, for request retries
    /// that many clients start at the same moment.
    Full,
    /// Uniform in `[step × (1 − share), step]`, `share` clamped into `[0, 1]`.
    Share(f64),
}

impl Jitter {
    /// The share of the step that may be taken off, in `[0, 1]` (NaN counts as 0:
    /// `Duration::mul_f64` panics on NaN or negatives).
    fn share(self) -> f64 {
        let share = match self {
            Jitter::None => 0.0,
            Jitter::Equal => 0.5,
            Jitter::Full => 1.0,
            Jitter::Share(share) => share,
        };
        if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        }
    }
}

/// Delays of `base × 2^attempt`, capped at `cap`, each shortened by a random part of its
/// [`Jitter`] share. Counts failed attempts until [`reset`](Self::reset).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap` (raised to `base` if smaller), with
    /// [`Jitter::Equal`].
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            jitter: Jitter::Equal,
            attempt: 0,
        }
    }

    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before the next attempt; each call counts one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// [`next_delay`](Self::next_delay) drawing from `rng` (seeded in tests).
    pub fn next_delay_with<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let delay = self.delay_with(self.attempt, rng);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The delay after `attempt` earlier failures (0-based), without counting it: for callers
    /// that keep the count themselves, such as a request's retry loop.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }

    /// The exponential step for `attempt` before jitter: `base × 2^attempt`, at most `cap`.
    pub fn step(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Forget past failures: the next delay starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn delay_with<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let step = self.step(attempt);
        let share = self.jitter.share();
        if share == 0.0 {
            return step;
        }
        let spread = step.mul_f64(share);
        let spread_ns = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        let off = rng.random_range(0..=spread_ns);
        step.saturating_sub(Duration::from_nanos(off))
    }
}
