//! `EtcdWatch`: one service's endpoints from the keys under `<prefix>/<service>/`, the way
//! etcd's `naming/endpoints` watcher reads them: a serializable prefix get, then a watch from
//! the get's revision + 1. A watch cut by compaction, a cancelled watch or an ended stream
//! leads to a full resync; a broken connection is reported, and the next call reconnects.

use std::collections::BTreeMap;

use super::client::proto::etcdserverpb::WatchResponse;
use super::client::proto::mvccpb::event::EventType;
use super::{EtcdClient, EtcdConfig, NamingValue, WatchStream, service_prefix};
use crate::endpoint::{Endpoint, EndpointSet};
use crate::error::{Backend, DiscoveryError};
use crate::source::EndpointSource;

/// Which keys to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdWatchConfig {
    /// The registry root, e.g. `meshgate/services`; keys are `<prefix>/<service>/<host:port>`.
    pub prefix: String,
    pub service: String,
}

impl EtcdWatchConfig {
    pub const DEFAULT_PREFIX: &'static str = "meshgate/services";

    pub fn new(service: impl Into<String>) -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            service: service.into(),
        }
    }
}

/// Watches one service's keys; see [`EndpointSource`].
pub struct EtcdWatch {
    etcd: EtcdConfig,
    key_prefix: String,
    client: Option<EtcdClient>,
    stream: Option<WatchStream>,
    entries: BTreeMap<String, Endpoint>,
    revision: i64,
    delivered: Option<EndpointSet>,
    resyncs: u64,
}

impl std::fmt::Debug for EtcdWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdWatch")
            .field("key_prefix", &self.key_prefix)
            .field("revision", &self.revision)
            .field("entries", &self.entries.len())
            .field("watching", &self.stream.is_some())
            .finish()
    }
}

impl EtcdWatch {
    pub fn new(etcd: EtcdConfig, config: EtcdWatchConfig) -> Result<Self, DiscoveryError> {
        if config.service.is_empty() || config.service.contains('/') {
            return Err(DiscoveryError::config(
                Backend::Etcd,
                format!(
                    "service name {:?} must be non-empty and without '/'",
                    config.service
                ),
            ));
        }
        Ok(Self {
            key_prefix: service_prefix(&config.prefix, &config.service),
            etcd,
            client: None,
            stream: None,
            entries: BTreeMap::new(),
            revision: 0,
            delivered: None,
            resyncs: 0,
        })
    }

    /// The keys this watch reads: `<prefix>/<service>/`.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Full reads done so far: the first sync, then one per compaction, cancellation, ended
    /// stream or reconnect.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The store revision the current set reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Reads every key under the prefix, then watches from the revision after that read.
    async fn resync(&mut self) -> Result<(), DiscoveryError> {
        self.stream = None;
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let client = EtcdClient::connect(&self.etcd).await?;
                self.client = Some(client.clone());
                client
            }
        };
        let answer = client.get_prefix(&self.key_prefix).await?;
        let revision = answer.header.as_ref().map_or(0, |header| header.revision);
        let mut entries = BTreeMap::new();
        for kv in &answer.kvs {
            if let Some((key, endpoint)) = parse_entry(&kv.key, &kv.value) {
                entries.insert(key, endpoint);
            }
        }
        let stream = client.watch_prefix(&self.key_prefix, revision + 1).await?;
        self.entries = entries;
        self.revision = revision;
        self.stream = Some(stream);
        self.resyncs += 1;
        Ok(())
    }

    fn apply(&mut self, response: &WatchResponse) {
        if response.canceled {
            if response.compact_revision > 0 {
                tracing::info!(prefix = %self.key_prefix, compact_revision = response.compact_revision,
                    "etcd: watch fell behind a compaction; full resync");
            } else {
                tracing::warn!(prefix = %self.key_prefix, reason = %response.cancel_reason,
                    "etcd: watch cancelled; full resync");
            }
            self.stream = None;
            return;
        }
        for event in &response.events {
            let Some(kv) = &event.kv else { continue };
            let Ok(key) = std::str::from_utf8(&kv.key) else {
                continue;
            };
            match event.r#type() {
                // A put with a value we cannot read replaces a good one: the old one is gone.
                EventType::Put => match parse_entry(&kv.key, &kv.value) {
                    Some((key, endpoint)) => {
                        self.entries.insert(key, endpoint);
                    }
                    None => {
                        self.entries.remove(key);
                    }
                },
                EventType::Delete => {
                    self.entries.remove(key);
                }
            }
        }
        if let Some(header) = &response.header {
            self.revision = self.revision.max(header.revision);
        }
    }

    fn fail(&mut self, error: DiscoveryError) -> DiscoveryError {
        self.client = None;
        self.stream = None;
        self.delivered = None;
        error
    }
}

impl EndpointSource for EtcdWatch {
    async fn next_update(&mut self) -> Result<EndpointSet, DiscoveryError> {
        loop {
            if self.stream.is_none()
                && let Err(error) = self.resync().await
            {
                return Err(self.fail(error));
            }
            let current: EndpointSet = self.entries.values().cloned().collect();
            if self.delivered.as_ref() != Some(&current) {
                self.delivered = Some(current.clone());
                return Ok(current);
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match stream.message().await {
                Ok(Some(response)) => self.apply(&response),
                Ok(None) => {
                    tracing::info!(prefix = %self.key_prefix, "etcd: watch stream ended; full resync");
                    self.stream = None;
                }
                Err(error) => return Err(self.fail(error)),
            }
        }
    }
}

/// A key and its endpoint, if the key is UTF-8 and the value a readable `naming/endpoints`
/// value (logged and skipped otherwise, as etcd's own watcher does).
fn parse_entry(key: &[u8], value: &[u8]) -> Option<(String, Endpoint)> {
    let key = std::str::from_utf8(key).ok()?;
    match serde_json::from_slice::<NamingValue>(value) {
        Ok(naming) => naming
            .to_endpoint(key)
            .map(|endpoint| (key.to_owned(), endpoint)),
        Err(error) => {
            tracing::warn!(key, %error, "etcd: value is not a naming/endpoints value; skipped");
            None
        }
    }
}
