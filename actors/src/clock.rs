//! The one clock of the control plane and the data plane's statistics: tokio's, so that tests
//! can pause and advance time.

use std::sync::OnceLock;

use tokio::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Monotonic nanoseconds since the first call in this process.
pub fn nanos() -> u64 {
    Instant::now().saturating_duration_since(base()).as_nanos() as u64
}

/// The current instant.
pub fn now() -> Instant {
    Instant::now()
}
