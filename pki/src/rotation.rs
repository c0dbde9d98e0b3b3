//! Rotation policy as pure functions: when to renew a leaf. The `CertRotator` actor owns the
//! timers and the retry backoff; this module owns only the arithmetic.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Renew at `fraction` of the lifetime, minus a random share of up to `jitter` of the lifetime
/// (so a fleet issued together does not renew together).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenewalPolicy {
    /// Fraction of the lifetime after which to renew (default 0.7).
    pub fraction: f64,
    /// Largest fraction of the lifetime subtracted at random (default 0.1).
    pub jitter: f64,
}

/// Default renewal point: 70% of the lifetime.
pub const DEFAULT_RENEWAL_FRACTION: f64 = 0.7;
/// Default renewal jitter: up to 10% of the lifetime earlier.
pub const DEFAULT_RENEWAL_JITTER: f64 = 0.1;

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            fraction: DEFAULT_RENEWAL_FRACTION,
            jitter: DEFAULT_RENEWAL_JITTER,
        }
    }
}

/// When to renew a certificate issued at `issued_at` and valid until `not_after`:
/// `issued_at + (not_after - issued_at) * (fraction - jitter * u)` with `u` uniform in `[0, 1)`.
///
/// Measured from the moment of issue, not from `notBefore`: `notBefore` is back-dated for
/// clock skew ([`crate::DEFAULT_BACKDATE`]), and counting that minute as lifetime would renew
/// a one-minute certificate after 12–24 s instead of 36–42 s, and put the renewal point of a
/// low `fraction` in the past. See [`issue_moment`].
///
/// Out-of-range or non-finite policy values are clamped into `[0, 1]`; an empty or inverted
/// validity renews at `issued_at`.
pub fn renewal_at<R: Rng + ?Sized>(
    issued_at: SystemTime,
    not_after: SystemTime,
    policy: &RenewalPolicy,
    rng: &mut R,
) -> SystemTime {
    let lifetime = not_after
        .duration_since(issued_at)
        .unwrap_or(Duration::ZERO);
    let fraction = unit(policy.fraction);
    let jitter = unit(policy.jitter).min(fraction);
    let share = unit(fraction - jitter * rng.random::<f64>());
    issued_at + lifetime.mul_f64(share)
}

/// The moment a certificate was issued, as far as its holder can tell: when it received it,
/// kept within the certificate's validity. A certificate does not record its issuing instant,
/// and its `notBefore` is back-dated by the issuer's skew allowance (a minute here and in
/// Consul's CA), so the receipt is the better measure.
pub fn issue_moment(
    not_before: SystemTime,
    not_after: SystemTime,
    received_at: SystemTime,
) -> SystemTime {
    received_at.min(not_after).max(not_before)
}

/// Clamp into `[0, 1]`, mapping NaN to 0 (`Duration::mul_f64` panics on NaN or negatives).
fn unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn renewal_is_between_60_and_70_percent_with_jitter_point_one() {
        let mut rng = StdRng::seed_from_u64(7);
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let not_after = not_before + DAY;
        let policy = RenewalPolicy::default();
        let (mut lowest, mut highest) = (1.0_f64, 0.0_f64);
        for _ in 0..10_000 {
            let at = renewal_at(not_before, not_after, &policy, &mut rng);
            let share = at.duration_since(not_before).unwrap().as_secs_f64() / DAY.as_secs_f64();
            assert!((0.6..=0.7).contains(&share), "{share}");
            lowest = lowest.min(share);
            highest = highest.max(share);
        }
        assert!(
            lowest < 0.61 && highest > 0.69,
            "jitter spreads: {lowest}..{highest}"
        );
    }

    #[test]
    fn a_one_minute_certificate_renews_36_to_42_seconds_after_issue() {
        let mut rng = StdRng::seed_from_u64(11);
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // What the CA writes: notBefore back-dated by a minute, notAfter a minute ahead.
        let (not_before, not_after) = (
            issued - crate::DEFAULT_BACKDATE,
            issued + Duration::from_secs(60),
        );
        let received = issued + Duration::from_millis(30);
        let from = issue_moment(not_before, not_after, received);
        assert_eq!(from, received);
        for _ in 0..1000 {
            let at = renewal_at(from, not_after, &RenewalPolicy::default(), &mut rng);
            let after = at.duration_since(issued).unwrap().as_secs_f64();
            assert!((36.0..=42.1).contains(&after), "{after}");
        }
        // A low fraction still lands after the issue, never in the past.
        let low = RenewalPolicy {
            fraction: 0.2,
            jitter: DEFAULT_RENEWAL_JITTER,
        };
        for _ in 0..1000 {
            assert!(renewal_at(from, not_after, &low, &mut rng) >= from);
        }
    }

    #[test]
    fn the_issue_moment_stays_within_the_validity() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let (nb, na) = (t, t + DAY);
        assert_eq!(issue_moment(nb, na, t - DAY), nb);
        assert_eq!(issue_moment(nb, na, t + 2 * DAY), na);
        assert_eq!(
            issue_moment(na, nb, t),
            na,
            "an inverted validity does not panic"
        );
    }

    #[test]
    fn renewal_handles_degenerate_inputs() {
        let mut rng = StdRng::seed_from_u64(1);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let policy = RenewalPolicy::default();
        assert_eq!(
            renewal_at(t, t - Duration::from_secs(5), &policy, &mut rng),
            t
        );
        let weird = RenewalPolicy {
            fraction: f64::NAN,
            jitter: -3.0,
        };
        assert_eq!(renewal_at(t, t + DAY, &weird, &mut rng), t);
        let late = RenewalPolicy {
            fraction: 7.0,
            jitter: 0.0,
        };
        assert_eq!(renewal_at(t, t + DAY, &late, &mut rng), t + DAY);
    }
}
