//! Unit tests of `source`: pure logic only; behaviour against real servers is in tests/tests/discovery.rs.

use std::collections::VecDeque;
use std::time::Duration;

use super::*;
use crate::endpoint::Endpoint;
use crate::error::Backend;

/// A source that replays a script, then pends.
struct Scripted(VecDeque<Result<EndpointSet, DiscoveryError>>);

impl EndpointSource for Scripted {
    async fn next_update(&mut self) -> Result<EndpointSet, DiscoveryError> {
        match self.0.pop_front() {
            Some(result) => result,
            None => std::future::pending().await,
        }
    }
}

fn set(port: u16) -> EndpointSet {
    EndpointSet::new([Endpoint::new([127, 0, 0, 1].into(), port)])
}

fn down() -> DiscoveryError {
    DiscoveryError::Unreachable {
        backend: Backend::Consul,
        target: "127.0.0.1:1".into(),
        reason: "connection refused".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn drive_reports_updates_and_stale_with_backoff() {
    let script = Scripted(VecDeque::from([
        Ok(set(1)),
        Err(down()),
        Err(down()),
        Ok(set(2)),
    ]));
    let (tx, mut rx) = mpsc::channel(4);
    let min = Duration::from_secs(1);
    let task = tokio::spawn(drive_source(script, Backoff::new(min, min * 8), tx));

    assert_eq!(rx.recv().await, Some(SourceEvent::Updated(set(1))));
    assert_eq!(rx.recv().await, Some(SourceEvent::Stale(down())));
    let before = tokio::time::Instant::now();
    assert_eq!(rx.recv().await, Some(SourceEvent::Stale(down())));
    let first_wait = before.elapsed();
    assert!(first_wait >= min / 2 && first_wait <= min, "{first_wait:?}");
    assert_eq!(rx.recv().await, Some(SourceEvent::Updated(set(2))));

    drop(rx);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("drive_source returns once the receiver is gone")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn static_source_yields_once() {
    let mut source = StaticSource::new(set(7));
    assert_eq!(source.next_update().await.unwrap(), set(7));
    let again = tokio::time::timeout(Duration::from_secs(3600), source.next_update()).await;
    assert!(again.is_err(), "a static source never changes");
}
