//! Unit tests of `supervised_task`: a loop that panics or ends is restarted with backoff; a
//! dropped handle stops it; a loop whose owner is gone is not restarted.

use std::sync::atomic::AtomicUsize;

use tokio::sync::mpsc;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_panicking_loop_is_restarted_and_runs_again() {
    let (ran, mut runs) = mpsc::unbounded_channel();
    let starts = Arc::new(AtomicUsize::new(0));
    let counted = starts.clone();
    let task = SupervisedTask::spawn("test loop", move || {
        let run = counted.fetch_add(1, Ordering::SeqCst);
        let ran = ran.clone();
        Some(async move {
            let _ = ran.send(run);
            if run == 0 {
                panic!("injected failure");
            }
            std::future::pending::<()>().await
        })
    });
    assert_eq!(runs.recv().await, Some(0));
    assert_eq!(runs.recv().await, Some(1), "restarted after the panic");
    assert_eq!(task.restarts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_loop_that_ends_is_restarted_with_growing_delays() {
    let (ran, mut runs) = mpsc::unbounded_channel();
    let _task = SupervisedTask::spawn("ending loop", move || {
        let ran = ran.clone();
        Some(async move {
            let _ = ran.send(tokio::time::Instant::now());
        })
    });
    let mut times = Vec::new();
    for _ in 0..6 {
        times.push(runs.recv().await.expect("the loop runs again"));
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Equal jitter: each gap is between half and all of its doubling step.
    for (n, gap) in gaps.iter().enumerate() {
        let step = RESTART_BASE * (1 << n);
        assert!(*gap >= step / 2 && *gap <= step, "gap {n}: {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_the_loop() {
    let (ran, mut runs) = mpsc::unbounded_channel::<()>();
    let task = SupervisedTask::spawn("dropped loop", move || {
        let ran = ran.clone();
        Some(async move {
            let _keep = ran;
            std::future::pending::<()>().await
        })
    });
    tokio::task::yield_now().await;
    drop(task);
    // Every sender lived in the loop (and the factory in the supervisor): both are gone.
    assert_eq!(runs.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn a_detached_loop_ends_when_its_owner_is_gone() {
    let owner = Arc::new(());
    let weak = Arc::downgrade(&owner);
    let (ran, mut runs) = mpsc::unbounded_channel::<()>();
    SupervisedTask::spawn("owned loop", move || {
        weak.upgrade()?;
        let ran = ran.clone();
        let weak = weak.clone();
        Some(async move {
            let _ = ran.send(());
            while weak.strong_count() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    })
    .detach();
    assert_eq!(runs.recv().await, Some(()));
    drop(owner);
    assert_eq!(
        runs.recv().await,
        None,
        "not started again once the owner is gone"
    );
}
