//! etcd as a registry, in etcd's own `naming/endpoints` format (CONSUL-API.md §8): discovery
//! by prefix get + watch, registration as a key under a lease kept alive in the background.

mod registration;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::error::{Backend, DiscoveryError};

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

    pub(crate) async fn connect(&self) -> Result<Client, DiscoveryError> {
        if self.endpoints.is_empty() {
            return Err(DiscoveryError::config(
                Backend::Etcd,
                "no etcd endpoints configured",
            ));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(self.keep_alive_interval, self.request_timeout)
            .with_keep_alive_while_idle(true);
        self.call("connect", Client::connect(&self.endpoints, Some(options)))
            .await
    }

    /// Runs one etcd call under `request_timeout`, mapping failures to `DiscoveryError`.
    pub(crate) async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, DiscoveryError> {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error(what, &error)),
            Err(_) => Err(DiscoveryError::Timeout {
                backend: Backend::Etcd,
                target: format!("{} ({what})", self.target()),
                after: self.request_timeout,
            }),
        }
    }

    pub(crate) fn error(&self, what: &str, error: &etcd_client::Error) -> DiscoveryError {
        let target = format!("{} ({what})", self.target());
        match error {
            etcd_client::Error::InvalidArgs(reason) => {
                DiscoveryError::config(Backend::Etcd, reason.clone())
            }
            etcd_client::Error::InvalidUri(reason) => {
                DiscoveryError::config(Backend::Etcd, format!("endpoint URL: {reason}"))
            }
            etcd_client::Error::GRpcStatus(status) => {
                grpc_error(target, status.code() as i32, status.message())
            }
            other => DiscoveryError::Unreachable {
                backend: Backend::Etcd,
                target,
                reason: crate::error::error_chain(other),
            },
        }
    }

    pub(crate) fn target(&self) -> String {
        self.endpoints.join(",")
    }
}

/// gRPC status codes (grpc/doc/statuscodes.md), stable by specification.
mod grpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn grpc_error(target: String, code: i32, message: &str) -> DiscoveryError {
    let body = message.to_owned();
    let status = u16::try_from(code).unwrap_or(u16::MAX);
    match code {
        grpc_code::INVALID_ARGUMENT
        | grpc_code::PERMISSION_DENIED
        | grpc_code::UNAUTHENTICATED
        | grpc_code::FAILED_PRECONDITION => DiscoveryError::Rejected {
            backend: Backend::Etcd,
            target,
            status,
            body,
        },
        grpc_code::DEADLINE_EXCEEDED => DiscoveryError::Timeout {
            backend: Backend::Etcd,
            target,
            after: Duration::ZERO,
        },
        grpc_code::UNAVAILABLE => DiscoveryError::Unreachable {
            backend: Backend::Etcd,
            target,
            reason: body,
        },
        _ => DiscoveryError::Server {
            backend: Backend::Etcd,
            target,
            status,
            body,
        },
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
