//! etcd as a registry, in etcd's own `naming/endpoints` format (docs/discovery.md, "etcd"):
//! discovery by prefix get + watch, registration as a key under a lease kept alive in the
//! background, both over meshgate's own etcd v3 client (`client`).

mod client;
mod registration;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

pub use client::{EtcdClient, LeaseKeepAlive, WatchStream, proto};
pub use registration::{EtcdRegistration, EtcdRegistrationHandle};
pub use watch::{EtcdWatch, EtcdWatchConfig};

/// How to reach the etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
    /// Deadline of each unary call (get, put, grant, revoke) and of opening a watch.
    pub request_timeout: Duration,
    /// HTTP/2 ping interval on an idle watch: how fast a silently dead cluster is noticed.
    pub keep_alive_interval: Duration,
}

impl EtcdConfig {
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            keep_alive_interval: Self::DEFAULT_KEEP_ALIVE_INTERVAL,
        }
    }

    pub(crate) fn target(&self) -> String {
        self.endpoints.join(",")
    }
}

/// The value of a `naming/endpoints` key: `{"Op":0,"Addr":"host:port","Metadata":{...}}`.
/// `Op` stays for gRPC naming compatibility; a put always means "add" (etcd's own watcher
/// ignores it too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NamingValue {
    #[serde(rename = "Op", default)]
    pub op: u8,
    #[serde(rename = "Addr")]
    pub addr: String,
    #[serde(rename = "Metadata", default)]
    pub metadata: serde_json::Value,
}

/// `Metadata` keys with a meaning for [`Endpoint`]; every other key becomes endpoint metadata.
const WEIGHT_KEY: &str = "weight";
const TAGS_KEY: &str = "tags";

impl NamingValue {
    pub(crate) fn from_endpoint(endpoint: &Endpoint) -> Self {
        let mut metadata = serde_json::Map::new();
        metadata.insert(WEIGHT_KEY.to_owned(), endpoint.weight.into());
        if !endpoint.tags.is_empty() {
            metadata.insert(TAGS_KEY.to_owned(), endpoint.tags.clone().into());
        }
        for (key, value) in &endpoint.metadata {
            metadata.insert(key.clone(), value.clone().into());
        }
        Self {
            op: 0,
            addr: endpoint.socket_addr().to_string(),
            metadata: serde_json::Value::Object(metadata),
        }
    }

    /// The endpoint a key describes; `None` (logged) when `Addr` is not `ip:port`.
    pub(crate) fn to_endpoint(&self, key: &str) -> Option<Endpoint> {
        let Ok(addr) = self.addr.parse::<SocketAddr>() else {
            tracing::warn!(key, addr = %self.addr, "etcd: Addr is not ip:port; skipped");
            return None;
        };
        let mut endpoint = Endpoint::from_socket_addr(addr).with_id(key);
        if let serde_json::Value::Object(map) = &self.metadata {
            let mut metadata = BTreeMap::new();
            for (name, value) in map {
                match (name.as_str(), value) {
                    (WEIGHT_KEY, serde_json::Value::Number(n)) => {
                        endpoint.weight = n
                            .as_u64()
                            .and_then(|w| u32::try_from(w).ok())
                            .unwrap_or(Endpoint::DEFAULT_WEIGHT);
                    }
                    (TAGS_KEY, serde_json::Value::Array(tags)) => {
                        endpoint.tags = tags
                            .iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect();
                    }
                    (_, serde_json::Value::String(text)) => {
                        metadata.insert(name.clone(), text.clone());
                    }
                    (_, serde_json::Value::Null) => {}
                    (_, other) => {
                        metadata.insert(name.clone(), other.to_string());
                    }
                }
            }
            endpoint.metadata = metadata;
        }
        Some(endpoint)
    }
}

/// `<prefix>/<service>/`: the keys of one service. etcd's manager requires keys to start with
/// `target + "/"`; the trailing slash also keeps `web` from matching `web2`.
pub(crate) fn service_prefix(prefix: &str, service: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        format!("{service}/")
    } else {
        format!("{prefix}/{service}/")
    }
}
