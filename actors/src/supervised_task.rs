//! Loops that matter, run under supervision. A [`LinkedLoop`] belongs to an actor: when it
//! panics or ends on its own, its actor fails, so the failure reaches the `Supervisor`, which
//! restarts the actor (and with it the loop) with backoff. A [`SupervisedTask`] is a loop of
//! the data plane's per-generation state (a JWKS refresh, a rate-limit sweep) that has no actor:
//! it is watched by a small task of its own that restarts it with the same backoff and stops
//! it when its owner drops the handle.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshgate_backoff::Backoff;
use ractor::{ActorRef, Message};
use tokio_util::task::AbortOnDropHandle;

use crate::error::ControlError;

#[cfg(test)]
mod tests;

/// The first restart waits about this long; each further one doubles, up to [`RESTART_CAP`].
pub const RESTART_BASE: Duration = Duration::from_millis(50);
pub const RESTART_CAP: Duration = Duration::from_secs(10);
/// A child or loop that stayed up this long starts its backoff from the beginning again.
pub const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);

/// The backoff between restarts of anything supervised (actors and loops alike).
pub fn restart_backoff() -> Backoff {
    Backoff::new(RESTART_BASE, RESTART_CAP)
}

/// A loop owned by an actor; dropping it (with the actor's state) stops the loop.
pub struct LinkedLoop {
    _watch: AbortOnDropHandle<()>,
}

impl LinkedLoop {
    /// Run `run` as its own task. It returns `Ok(())` when it stopped because it was asked to
    /// (a drain); an `Err` or a panic means it failed, and `failed(reason)` is sent to
    /// `owner`, whose handler then fails the actor.
    pub fn spawn<M, Fut>(
        owner: &ActorRef<M>,
        what: &'static str,
        run: Fut,
        failed: fn(String) -> M,
    ) -> Self
    where
        M: Message,
        Fut: Future<Output = Result<(), ControlError>> + Send + 'static,
    {
        let owner = owner.clone();
        let running = AbortOnDropHandle::new(tokio::spawn(run));
        let watch = tokio::spawn(async move {
            let reason = match running.await {
                Ok(Ok(())) => return,
                Ok(Err(error)) => format!("{what} ended: {error}"),
                Err(e) if e.is_panic() => {
                    format!("{what} panicked: {}", panic_message(&e.into_panic()))
                }
                // Aborted: the runtime is shutting down.
                Err(_) => return,
            };
            // The actor may be gone already (then nobody needs to hear it).
            let _ = owner.cast(failed(reason));
        });
        Self {
            _watch: AbortOnDropHandle::new(watch),
        }
    }
}

/// A loop restarted with backoff whenever it panics or ends, until its handle is dropped (or,
/// once detached, until `start` says the owner is gone).
pub struct SupervisedTask {
    supervisor: AbortOnDropHandle<()>,
    restarts: Arc<AtomicU64>,
}

impl std::fmt::Debug for SupervisedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedTask")
            .field("restarts", &self.restarts())
            .finish_non_exhaustive()
    }
}

impl SupervisedTask {
    /// Start the loop that `start` builds, and build it again after each panic or end.
    /// `start` returns `None` when there is nothing left to run for (its owner is gone):
    /// then the supervision ends.
    pub fn spawn<F, Fut>(name: impl Into<Arc<str>>, start: F) -> Self
    where
        F: FnMut() -> Option<Fut> + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let restarts = Arc::new(AtomicU64::new(0));
        let supervisor = tokio::spawn(supervise(name.into(), start, restarts.clone()));
        Self {
            supervisor: AbortOnDropHandle::new(supervisor),
            restarts,
        }
    }

    /// How many times the loop was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Keep supervising after the handle is dropped, for a loop whose `start` returns `None`
    /// once its owner is gone.
    pub fn detach(self) {
        drop(self.supervisor.detach());
    }
}

async fn supervise<F, Fut>(name: Arc<str>, mut start: F, restarts: Arc<AtomicU64>)
where
    F: FnMut() -> Option<Fut> + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = restart_backoff();
    loop {
        let Some(run) = start() else {
            return;
        };
        let started = tokio::time::Instant::now();
        // Dropping the supervisor (the handle) drops this and so aborts the loop.
        let running = AbortOnDropHandle::new(tokio::spawn(run));
        let reason = match running.await {
            Ok(()) => "it ended".to_string(),
            Err(e) if e.is_panic() => format!("it panicked: {}", panic_message(&e.into_panic())),
            Err(_) => return,
        };
        if started.elapsed() > RESTART_RESET_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        restarts.fetch_add(1, Ordering::Relaxed);
        tracing::error!(task = %name, %reason, restart_in = ?delay, "supervised task failed; restarting");
        tokio::time::sleep(delay).await;
    }
}

/// The text a panic was raised with (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic payload".to_string()
    }
}
