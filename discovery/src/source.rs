//! The one interface every discovery backend implements, the enum that lets a caller hold any
//! of them without boxing, and the watch loop (retry with backoff, stale marking) that a
//! `DiscoveryWatcher` runs. No registry-specific code here.

use std::future::Future;
use std::time::Duration;

use meshgate_backoff::Backoff;
use tokio::sync::mpsc;

use crate::consul::ConsulWatch;
use crate::dns::DnsWatch;
use crate::endpoint::EndpointSet;
use crate::error::DiscoveryError;
use crate::etcd::EtcdWatch;
use crate::static_list::StaticSource;

#[cfg(test)]
mod tests;

/// A source of endpoint sets.
///
/// `next_update` waits until the set differs from the one it returned last and returns the
/// full new set; the first call returns the current set. On failure it returns the error at
/// once (it does not retry by itself); the next `Ok` after an error always carries the full
/// current set, even if it did not change, so the caller can clear its "stale" mark.
///
/// Dropping the returned future (for example in a `select!` with a shutdown signal) loses no
/// change: the next call reports it.
pub trait EndpointSource: Send {
    fn next_update(&mut self) -> impl Future<Output = Result<EndpointSet, DiscoveryError>> + Send;
}

/// Any of the built-in sources, so an actor can own "the source" without generics or boxing.
#[derive(Debug)]
pub enum AnySource {
    Static(StaticSource),
    Dns(DnsWatch),
    Consul(ConsulWatch),
    /// Boxed: the etcd client is large.
    Etcd(Box<EtcdWatch>),
}

impl EndpointSource for AnySource {
    async fn next_update(&mut self) -> Result<EndpointSet, DiscoveryError> {
        match self {
            AnySource::Static(source) => source.next_update().await,
            AnySource::Dns(source) => source.next_update().await,
            AnySource::Consul(source) => source.next_update().await,
            AnySource::Etcd(source) => source.next_update().await,
        }
    }
}

impl From<StaticSource> for AnySource {
    fn from(source: StaticSource) -> Self {
        AnySource::Static(source)
    }
}

impl From<DnsWatch> for AnySource {
    fn from(source: DnsWatch) -> Self {
        AnySource::Dns(source)
    }
}

impl From<ConsulWatch> for AnySource {
    fn from(source: ConsulWatch) -> Self {
        AnySource::Consul(source)
    }
}

impl From<EtcdWatch> for AnySource {
    fn from(source: EtcdWatch) -> Self {
        AnySource::Etcd(Box::new(source))
    }
}

/// The backoff a failing source is retried with: from half a second, doubling up to 30 s,
/// with equal jitter so that many sidecars watching one registry spread their retries.
pub fn source_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

/// What [`drive_source`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// A fresh, complete endpoint set: replace the pool's endpoints and clear "stale".
    Updated(EndpointSet),
    /// The source failed: keep the last-known endpoints, mark them stale. The loop retries
    /// after a backoff delay; `Updated` follows once the source recovers.
    Stale(DiscoveryError),
}

/// Runs `source` until `events` is closed: every set goes out as [`SourceEvent::Updated`];
/// every failure goes out as [`SourceEvent::Stale`] and is followed by a backoff delay before
/// the next attempt. Permanent errors are retried too (at the same backoff, which reaches its
/// cap quickly): a fixed configuration arrives as a new source, not through this loop.
pub async fn drive_source<S: EndpointSource>(
    mut source: S,
    mut backoff: Backoff,
    events: mpsc::Sender<SourceEvent>,
) {
    loop {
        let result = tokio::select! {
            result = source.next_update() => result,
            () = events.closed() => return,
        };
        let event = match result {
            Ok(set) => {
                backoff.reset();
                SourceEvent::Updated(set)
            }
            Err(error) => {
                tracing::warn!(%error, transient = error.is_transient(), "discovery source failed");
                SourceEvent::Stale(error)
            }
        };
        let failed = matches!(event, SourceEvent::Stale(_));
        if events.send(event).await.is_err() {
            return;
        }
        if failed {
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = events.closed() => return,
            }
        }
    }
}
