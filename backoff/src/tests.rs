//! Unit tests of the backoff: delay bounds per jitter, growth, cap and reset.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

#[test]
fn delays_grow_then_stay_under_the_cap() {
    let base = Duration::from_millis(100);
    let cap = Duration::from_secs(2);
    let mut backoff = Backoff::new(base, cap);
    let mut previous_step = Duration::ZERO;
    for attempt in 0..40u32 {
        let delay = backoff.next_delay();
        let step = backoff.step(attempt);
        assert!(step >= previous_step, "steps never shrink");
        assert!(
            delay >= step / 2 && delay <= step,
            "{delay:?} outside [{step:?}/2, {step:?}]"
        );
        previous_step = step;
    }
    assert_eq!(backoff.step(39), cap);
    assert_eq!(backoff.attempts(), 40);
}

#[test]
fn without_jitter_the_steps_double_up_to_the_cap_and_reset() {
    let mut backoff =
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).with_jitter(Jitter::None);
    let secs: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    backoff.reset();
    assert_eq!(backoff.next_delay(), Duration::from_secs(1));
}

#[test]
fn each_jitter_stays_within_its_share() {
    let step = Duration::from_secs(10);
    let mut rng = StdRng::seed_from_u64(7);
    for (jitter, lowest) in [
        (Jitter::Equal, step / 2),
        (Jitter::Full, Duration::ZERO),
        (Jitter::Share(0.2), step.mul_f64(0.8)),
        (Jitter::Share(f64::NAN), step),
        (Jitter::Share(7.0), Duration::ZERO),
    ] {
        let mut backoff = Backoff::new(step, step).with_jitter(jitter);
        for _ in 0..1000 {
            let delay = backoff.next_delay_with(&mut rng);
            assert!(
                delay >= lowest && delay <= step,
                "{jitter:?}: {delay:?} outside [{lowest:?}, {step:?}]"
            );
        }
    }
}

#[test]
fn jitter_spreads_delays() {
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
    let seen: std::collections::BTreeSet<Duration> = (0..20).map(|_| backoff.delay(0)).collect();
    assert!(seen.len() > 1, "20 draws all equal: no jitter");
}

#[test]
fn a_zero_base_never_waits() {
    let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO).with_jitter(Jitter::Full);
    assert_eq!(backoff.next_delay(), Duration::ZERO);
    assert_eq!(backoff.delay(30), Duration::ZERO);
}
