use std::sync::Arc;
use std::time::Duration;

use meshgate_config::resilience::BreakerSpec;

use super::*;

fn spec() -> BreakerSpec {
    BreakerSpec {
        consecutive_failures: 3,
        failure_rate: 0,
        window: Duration::from_secs(10),
        minimum_requests: 20,
        open_for: Duration::from_secs(30),
        half_open_requests: 1,
    }
}

fn pass(b: &Arc<CircuitBreaker>, spec: &BreakerSpec) -> BreakerPermit {
    match b.admit(Some(spec)) {
        Admission::Pass(p) => p,
        Admission::Reject { retry_after } => panic!("rejected, retry after {retry_after:?}"),
    }
}

fn rejected(b: &Arc<CircuitBreaker>, spec: &BreakerSpec) -> Duration {
    match b.admit(Some(spec)) {
        Admission::Reject { retry_after } => retry_after,
        Admission::Pass(p) => panic!("passed (probe: {})", p.is_probe()),
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_then_a_probe_closes() {
    let s = spec();
    let b = Arc::new(CircuitBreaker::default());
    // A success in between resets the count.
    assert_eq!(pass(&b, &s).record(Some(&s), false), None);
    assert_eq!(pass(&b, &s).record(Some(&s), false), None);
    assert_eq!(pass(&b, &s).record(Some(&s), true), None);
    assert_eq!(pass(&b, &s).record(Some(&s), false), None);
    assert_eq!(pass(&b, &s).record(Some(&s), false), None);
    // Two permits taken before the trip: only the outcome that trips reports it.
    let late = pass(&b, &s);
    assert_eq!(
        pass(&b, &s).record(Some(&s), false),
        Some(Trip::ConsecutiveFailures(3))
    );
    assert_eq!(late.record(Some(&s), false), None);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.trips(), 1);
    assert_eq!(rejected(&b, &s), Duration::from_secs(30));

    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(rejected(&b, &s), Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = pass(&b, &s);
    assert!(probe.is_probe());
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // One probe at a time.
    rejected(&b, &s);
    assert_eq!(probe.record(Some(&s), true), None);
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(!pass(&b, &s).is_probe());
    assert_eq!(b.rejected(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_another_period() {
    let s = spec();
    let b = Arc::new(CircuitBreaker::default());
    for _ in 0..3 {
        pass(&b, &s).record(Some(&s), false);
    }
    tokio::time::advance(s.open_for).await;
    let probe = pass(&b, &s);
    assert_eq!(probe.record(Some(&s), false), Some(Trip::ProbeFailed));
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.trips(), 2);
    assert_eq!(rejected(&b, &s), s.open_for);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_is_handed_back() {
    let s = spec();
    let b = Arc::new(CircuitBreaker::default());
    for _ in 0..3 {
        pass(&b, &s).record(Some(&s), false);
    }
    tokio::time::advance(s.open_for).await;
    drop(pass(&b, &s));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(pass(&b, &s).is_probe(), "the probe slot came back");
}

#[tokio::test(start_paused = true)]
async fn several_probes_must_all_succeed() {
    let s = BreakerSpec {
        half_open_requests: 2,
        ..spec()
    };
    let b = Arc::new(CircuitBreaker::default());
    for _ in 0..3 {
        pass(&b, &s).record(Some(&s), false);
    }
    tokio::time::advance(s.open_for).await;
    let (p1, p2) = (pass(&b, &s), pass(&b, &s));
    assert!(p1.is_probe() && p2.is_probe());
    rejected(&b, &s);
    p1.record(Some(&s), true);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    p2.record(Some(&s), true);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_opens_only_above_the_minimum_volume() {
    let s = BreakerSpec {
        consecutive_failures: 0,
        failure_rate: 50,
        minimum_requests: 10,
        ..spec()
    };
    let b = Arc::new(CircuitBreaker::default());
    // Alternate: 50 % failures, never two in a row; opens once 10 tries were seen.
    let mut tripped = None;
    for i in 0..10 {
        let t = pass(&b, &s).record(Some(&s), i % 2 == 1);
        assert_eq!(b.state(), BreakerState::Closed, "try {i}");
        assert_eq!(t, None);
        let t = pass(&b, &s).record(Some(&s), false);
        if t.is_some() {
            tripped = Some((i, t));
            break;
        }
    }
    let (i, trip) = tripped.expect("opened");
    assert!(matches!(trip, Some(Trip::FailureRate { .. })), "{trip:?}");
    assert!(i >= 4, "opened after {} tries", 2 * (i + 1));
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn old_failures_leave_the_window() {
    let s = BreakerSpec {
        consecutive_failures: 0,
        failure_rate: 50,
        minimum_requests: 4,
        ..spec()
    };
    let b = Arc::new(CircuitBreaker::default());
    for _ in 0..3 {
        pass(&b, &s).record(Some(&s), false);
    }
    assert_eq!(b.window_counts(&s), (3, 3));
    tokio::time::advance(s.window + Duration::from_secs(1)).await;
    assert_eq!(b.window_counts(&s), (0, 0));
    // One more failure is not over the minimum volume any more.
    assert_eq!(pass(&b, &s).record(Some(&s), false), None);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn a_disabled_breaker_never_rejects() {
    let b = Arc::new(CircuitBreaker::default());
    for _ in 0..100 {
        match b.admit(None) {
            Admission::Pass(p) => assert_eq!(p.record(None, false), None),
            Admission::Reject { .. } => panic!("disabled breaker rejected"),
        }
    }
    assert_eq!(b.state(), BreakerState::Closed);
}
