//! Unit tests of `backoff`: pure logic only; behaviour against real servers is in tests/tests/discovery.rs.

use super::*;

#[test]
fn delays_grow_then_stay_under_the_cap() {
    let min = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    let mut backoff = Backoff::new(min, max);
    let mut previous_step = Duration::ZERO;
    for attempt in 0..40u32 {
        let delay = backoff.next_delay();
        let step = backoff.step(attempt);
        assert!(step >= previous_step, "steps never shrink");
        assert!(
            delay >= step / 2 && delay <= step,
            "{delay:?} outside [{step:?}/2, {step:?}]"
        );
        assert!(delay <= max);
        previous_step = step;
    }
    assert_eq!(backoff.step(39), max);
    assert_eq!(backoff.attempts(), 40);
}

#[test]
fn reset_starts_over() {
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(10));
    for _ in 0..10 {
        backoff.next_delay();
    }
    backoff.reset();
    assert!(backoff.next_delay() <= Duration::from_millis(10));
}

#[test]
fn jitter_spreads_delays() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        seen.insert(backoff.next_delay());
    }
    assert!(seen.len() > 1, "20 draws all equal: no jitter");
}
