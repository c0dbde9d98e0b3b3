use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use meshgate_config::rate_limit::{Algorithm, Window};

use super::LocalLimiter;

fn window(requests: u32, burst: u32, period: Duration, label: &str) -> Window {
    Window {
        requests,
        burst,
        period,
        label: label.into(),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_token_bucket_passes_its_burst_then_refills_one_per_interval() {
    let clock = FakeRelativeClock::default();
    let limiter = LocalLimiter::with_clock(
        Algorithm::Gcra,
        &[window(10, 3, secs(1), "b")],
        clock.clone(),
    );
    let remaining: Vec<u32> = (0..3)
        .map(|_| {
            let d = limiter.check("k");
            assert!(d.allowed);
            d.report.unwrap().remaining
        })
        .collect();
    assert_eq!(remaining, [2, 1, 0]);
    let refused = limiter.check("k");
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Duration::from_millis(100));
    let report = refused.report.unwrap();
    assert_eq!((report.limit, report.remaining), (3, 0));
    // Full again after the retry plus two more intervals.
    assert_eq!(report.reset, Duration::from_millis(300));

    clock.advance(Duration::from_millis(100));
    assert!(limiter.check("k").allowed);
    assert!(!limiter.check("k").allowed);
    // Another client has its own bucket.
    assert!(limiter.check("other").allowed);
}

#[test]
fn every_window_must_admit_and_the_closest_is_reported() {
    let clock = FakeRelativeClock::default();
    let windows = [
        window(2, 2, secs(1), "p/1s"),
        window(3, 3, secs(60), "p/1m"),
    ];
    let limiter = LocalLimiter::with_clock(Algorithm::Gcra, &windows, clock.clone());
    let first = limiter.check("k");
    let report = first.report.unwrap();
    // 1 left of 2 per second, 2 left of 3 per minute: fewer remaining is closer to refusing.
    assert_eq!((&*report.label, report.remaining), ("p/1s", 1));
    assert!(limiter.check("k").allowed);
    let refused = limiter.check("k");
    assert!(!refused.allowed);
    assert_eq!(&*refused.report.unwrap().label, "p/1s");

    clock.advance(secs(1));
    let third = limiter.check("k");
    assert!(third.allowed);
    assert_eq!(&*third.report.unwrap().label, "p/1m");

    clock.advance(secs(1));
    let refused = limiter.check("k");
    assert!(!refused.allowed);
    assert_eq!(&*refused.report.unwrap().label, "p/1m");
    // Three spent at 0 s, 0 s and 1 s: the per-minute bucket (one per 20 s) frees one at 20 s.
    assert_eq!(refused.retry_after, secs(18));
}

#[test]
fn fixed_windows_reset_at_the_boundary() {
    let clock = FakeRelativeClock::default();
    let limiter = LocalLimiter::with_clock(
        Algorithm::FixedWindow,
        &[window(2, 2, secs(10), "f")],
        clock.clone(),
    );
    clock.advance(secs(4));
    assert!(limiter.check("k").allowed);
    let second = limiter.check("k");
    assert_eq!(second.report.unwrap().reset, secs(6));
    let refused = limiter.check("k");
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, secs(6));
    clock.advance(secs(6));
    assert!(limiter.check("k").allowed);
}

#[test]
fn sliding_windows_carry_the_previous_window_over() {
    let clock = FakeRelativeClock::default();
    let limiter = LocalLimiter::with_clock(
        Algorithm::SlidingWindow,
        &[window(4, 4, secs(10), "s")],
        clock.clone(),
    );
    for _ in 0..4 {
        assert!(limiter.check("k").allowed);
    }
    assert!(!limiter.check("k").allowed);
    // Halfway into the next window the previous four still weigh two.
    clock.advance(secs(15));
    assert!(limiter.check("k").allowed);
    assert!(limiter.check("k").allowed);
    assert!(!limiter.check("k").allowed);
}

#[test]
fn concurrent_checks_never_pass_more_than_the_burst() {
    for algorithm in [
        Algorithm::Gcra,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
    ] {
        let clock = FakeRelativeClock::default();
        let limiter = Arc::new(LocalLimiter::with_clock(
            algorithm,
            &[window(50, 50, secs(3600), "c")],
            clock,
        ));
        let passed = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                let passed = passed.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if limiter.check("shared").allowed {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(passed.load(Ordering::Relaxed), 50, "{algorithm:?}");
    }
}

#[test]
fn idle_keys_are_swept_and_busy_ones_kept() {
    for algorithm in [
        Algorithm::Gcra,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
    ] {
        let clock = FakeRelativeClock::default();
        let limiter =
            LocalLimiter::with_clock(algorithm, &[window(10, 10, secs(1), "i")], clock.clone());
        limiter.check("early");
        clock.advance(Duration::from_millis(2500));
        limiter.check("late");
        assert_eq!(limiter.len(), 2);
        limiter.sweep();
        assert_eq!(limiter.len(), 1, "{algorithm:?}: only the recent key stays");
        // A swept key starts over with a full budget.
        let d = limiter.check("early");
        assert_eq!(d.report.unwrap().remaining, 9, "{algorithm:?}");
    }
}
