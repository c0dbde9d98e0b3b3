//! Unit tests of `jwks`: the refresh loop runs supervised, so a panic in it is restarted.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::filters::auth::idp::{IdpError, IdpFuture};

/// Panics on its first request (inside the refresh loop), then refuses like a provider that is
/// down.
struct PanicsOnce(AtomicBool);

impl IdpTransport for PanicsOnce {
    fn send(&self, _req: Request<Full<Bytes>>) -> IdpFuture {
        if !self.0.swap(true, Ordering::SeqCst) {
            panic!("injected transport failure");
        }
        Box::pin(async { Err(IdpError::Request("connection refused".into())) })
    }
}

#[tokio::test]
async fn a_refresh_loop_that_panics_is_restarted() {
    let spec = JwksSpec {
        url: "http://127.0.0.1:9/jwks".parse().unwrap(),
        refresh_interval: Duration::from_secs(300),
        min_refetch_interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        algorithms: Vec::new(),
        tls: None,
        field: "auth.jwt[0].jwks".into(),
    };
    let source = JwksSource::start(spec, Arc::new(PanicsOnce(AtomicBool::new(false))));
    let mut attempts = source.shared.attempts.subscribe();
    tokio::time::timeout(Duration::from_secs(10), attempts.wait_for(|n| *n >= 1))
        .await
        .expect("the restarted loop finishes a fetch")
        .unwrap();
    assert_eq!(
        source.fetches(),
        2,
        "the panicked fetch, then the restarted one"
    );
    assert!(!source.current().loaded);
}
