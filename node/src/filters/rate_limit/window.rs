//! Fixed- and sliding-window counting for one window of one key, as pure functions over a
//! packed `u64` so that the local limiter updates it with one compare-and-swap. The Redis
//! script (`check.lua`) implements the same arithmetic; the tests hold both to these numbers.
//!
//! Times are nanoseconds on the limiter's clock; a window `n` covers `[n·P, (n+1)·P)`.

/// What one window says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub allowed: bool,
    /// Requests still allowed after this one (0 when refused).
    pub remaining: u32,
    /// Nanoseconds until the current window ends.
    pub reset: u64,
    /// Refused: nanoseconds until a request would be allowed.
    pub retry_after: u64,
}

/// A fixed window: `(window number mod 2³²) << 32 | count`. Returns the verdict and, when the
/// request is counted, the new state.
pub fn fixed(state: u64, now: u64, period: u64, limit: u32) -> (Count, Option<u64>) {
    let period = period.max(1);
    let index = now / period;
    let tag = index & 0xFFFF_FFFF;
    let reset = period - now % period;
    let count = if state >> 32 == tag {
        state & 0xFFFF_FFFF
    } else {
        0
    };
    if count >= u64::from(limit) {
        let refused = Count {
            allowed: false,
            remaining: 0,
            reset,
            retry_after: reset,
        };
        return (refused, None);
    }
    let counted = Count {
        allowed: true,
        remaining: clamp_u32(u64::from(limit) - count - 1),
        reset,
        retry_after: 0,
    };
    (counted, Some(tag << 32 | (count + 1)))
}

/// Whether a fixed-window state belongs to a window before the current one.
pub fn fixed_is_idle(state: u64, now: u64, period: u64) -> bool {
    state >> 32 != (now / period.max(1)) & 0xFFFF_FFFF
}

const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const TAG_MASK: u64 = 0xFFFF;

/// A sliding-window counter (the estimate Cloudflare and Kong use): the current window's count
/// plus the previous window's, weighted by the part of it still inside the last `period`.
/// State: `(window number mod 2¹⁶) << 48 | current << 24 | previous`, counts up to 2²⁴ − 1.
pub fn sliding(state: u64, now: u64, period: u64, limit: u32) -> (Count, Option<u64>) {
    let period = period.max(1);
    let index = now / period;
    let elapsed = now % period;
    let reset = period - elapsed;
    let (current, previous) = sliding_counts(state, index);
    let p = u128::from(period);
    let budget = u128::from(limit) * p;
    // previous·(P − elapsed)/P + current + 1 ≤ limit, in integers (× P).
    let weighted_previous = u128::from(previous) * u128::from(period - elapsed);
    let used = weighted_previous + (u128::from(current) + 1) * p;
    if used > budget {
        let refused = Count {
            allowed: false,
            remaining: 0,
            reset,
            retry_after: sliding_retry(current, previous, elapsed, period, limit),
        };
        return (refused, None);
    }
    let counted = Count {
        allowed: true,
        remaining: clamp_u32(u64::try_from((budget - used) / p).unwrap_or(u64::MAX)),
        reset,
        retry_after: 0,
    };
    let next = ((index & TAG_MASK) << 48) | ((current + 1).min(SLOT_MASK) << SLOT_BITS) | previous;
    (counted, Some(next))
}

/// Whether a sliding-window state has nothing left to weigh (older than the previous window).
pub fn sliding_is_idle(state: u64, now: u64, period: u64) -> bool {
    sliding_counts(state, now / period.max(1)) == (0, 0)
}

/// The (current, previous) counts of `state` as seen from window `index`.
fn sliding_counts(state: u64, index: u64) -> (u64, u64) {
    let tag = state >> 48;
    let stored_current = (state >> SLOT_BITS) & SLOT_MASK;
    let stored_previous = state & SLOT_MASK;
    if tag == index & TAG_MASK {
        (stored_current, stored_previous)
    } else if tag == index.wrapping_sub(1) & TAG_MASK {
        (0, stored_current)
    } else {
        (0, 0)
    }
}

/// How long until `sliding` would allow one more request.
fn sliding_retry(current: u64, previous: u64, elapsed: u64, period: u64, limit: u32) -> u64 {
    let p = u128::from(period);
    let limit = u128::from(limit);
    let current = u128::from(current);
    let to_next_window = p - u128::from(elapsed);
    let wait = if current + 1 > limit {
        // Not before the next window; then `current` becomes the previous window and must
        // have slid out far enough: current·(P − x)/P + 1 ≤ limit.
        to_next_window + (p * (current + 1 - limit)).div_ceil(current.max(1))
    } else {
        // previous·(P − elapsed − x)/P + current + 1 ≤ limit.
        let allowed_weight = (limit - current - 1) * p / u128::from(previous.max(1));
        to_next_window.saturating_sub(allowed_weight).max(1)
    };
    u64::try_from(wait).unwrap_or(u64::MAX)
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Run `n` requests through a window function at `now`, returning how many passed.
    fn admit(
        f: fn(u64, u64, u64, u32) -> (Count, Option<u64>),
        state: &mut u64,
        now: u64,
        period: u64,
        limit: u32,
        n: u32,
    ) -> u32 {
        let mut passed = 0;
        for _ in 0..n {
            let (count, next) = f(*state, now, period, limit);
            if let Some(next) = next {
                *state = next;
                passed += 1;
            } else {
                assert!(!count.allowed);
            }
        }
        passed
    }

    #[test]
    fn fixed_window_counts_and_resets_at_the_boundary() {
        let mut state = 0;
        let now = 100 * S + S / 4;
        let (first, next) = fixed(state, now, S, 3);
        assert!(first.allowed);
        assert_eq!(first.remaining, 2);
        assert_eq!(first.reset, 3 * S / 4);
        state = next.unwrap();
        assert_eq!(admit(fixed, &mut state, now, S, 3, 5), 2);
        let (refused, none) = fixed(state, now + S / 2, S, 3);
        assert_eq!((refused.allowed, none), (false, None));
        assert_eq!(refused.retry_after, S / 4);
        assert!(!fixed_is_idle(state, now, S));
        // The next window starts empty.
        assert!(fixed_is_idle(state, 101 * S, S));
        assert_eq!(admit(fixed, &mut state, 101 * S, S, 3, 5), 3);
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        let mut state = 0;
        // 10 in window 100, all used.
        assert_eq!(admit(sliding, &mut state, 100 * S, S, 10, 12), 10);
        // A quarter into window 101 the previous window still weighs 7.5: 2 more fit.
        assert_eq!(admit(sliding, &mut state, 101 * S + S / 4, S, 10, 5), 2);
        let (refused, _) = sliding(state, 101 * S + S / 4, S, 10);
        // 10·(1 − x) + 2 + 1 ≤ 10 → x ≥ 0.3: 0.05 s from now.
        assert_eq!(refused.retry_after, S / 20);
        let (later, _) = sliding(state, 101 * S + 3 * S / 10, S, 10);
        assert!(later.allowed, "{later:?}");
        // Two windows later nothing is left.
        assert!(sliding_is_idle(state, 103 * S, S));
        assert!(!sliding_is_idle(state, 102 * S, S));
    }

    #[test]
    fn a_full_current_window_waits_for_the_next_one() {
        let mut state = 0;
        let now = 50 * S + S / 2;
        assert_eq!(admit(sliding, &mut state, now, S, 4, 4), 4);
        let (refused, _) = sliding(state, now, S, 4);
        // Half a second to the next window, then 4·(1 − x) + 1 ≤ 4 → x ≥ 0.25.
        assert_eq!(refused.retry_after, S / 2 + S / 4);
        let (after, _) = sliding(state, now + S / 2 + S / 4, S, 4);
        assert!(after.allowed);
        assert_eq!(after.remaining, 0);
    }

    #[test]
    fn sliding_never_admits_more_than_the_limit_in_any_period() {
        // Requests at every 1/20 of a period over 5 periods: in any window of length P, at
        // most `limit` pass.
        let mut state = 0;
        let limit = 7;
        let step = S / 20;
        let mut passed_at = Vec::new();
        for i in 0..100 {
            let now = 10 * S + i * step;
            let (_, next) = sliding(state, now, S, limit);
            if let Some(next) = next {
                state = next;
                passed_at.push(now);
            }
        }
        for &start in &passed_at {
            let in_window = passed_at
                .iter()
                .filter(|&&t| t >= start && t < start + S)
                .count();
            assert!(in_window <= limit as usize, "{in_window} in one period");
        }
        assert!(passed_at.len() >= 5 * limit as usize - limit as usize);
    }
}
