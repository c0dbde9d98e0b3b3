//! Registration of the local service in etcd: the `naming/endpoints` key under a lease, kept
//! alive at TTL/3 by a background task that grants a new lease and writes the key again when
//! the keep-alive stream ends or the lease is gone (docs/discovery.md, "Registration").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshgate_backoff::Backoff;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{EtcdClient, EtcdConfig, NamingValue, service_prefix};
use crate::endpoint::Endpoint;
use crate::error::{Backend, DiscoveryError};

/// The local service's key in etcd, not yet written.
#[derive(Debug, Clone)]
pub struct EtcdRegistration {
    etcd: EtcdConfig,
    key: String,
    value: String,
    ttl_secs: i64,
}

impl EtcdRegistration {
    /// Long enough that a few lost keep-alives (every TTL/3) do not drop the key, short enough
    /// that a dead instance leaves the rotation within seconds.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

    /// The key `<prefix>/<service>/<ip:port>` for `endpoint`, with a lease of `ttl` (whole
    /// seconds, rounded up).
    pub fn new(
        etcd: EtcdConfig,
        prefix: &str,
        service: &str,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Result<Self, DiscoveryError> {
        if service.is_empty() || service.contains('/') {
            return Err(DiscoveryError::config(
                Backend::Etcd,
                format!("service name {service:?} must be non-empty and without '/'"),
            ));
        }
        if endpoint.address.is_unspecified() || endpoint.port == 0 {
            return Err(DiscoveryError::config(
                Backend::Etcd,
                format!(
                    "{} is not an address peers can reach",
                    endpoint.socket_addr()
                ),
            ));
        }
        let ttl_secs =
            i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).unwrap_or(i64::MAX);
        if ttl_secs < 1 {
            return Err(DiscoveryError::config(
                Backend::Etcd,
                "the lease TTL must be at least 1s",
            ));
        }
        let value =
            serde_json::to_string(&NamingValue::from_endpoint(endpoint)).map_err(|err| {
                DiscoveryError::config(Backend::Etcd, format!("endpoint value: {err}"))
            })?;
        Ok(Self {
            key: format!(
                "{}{}",
                service_prefix(prefix, service),
                endpoint.socket_addr()
            ),
            etcd,
            value,
            ttl_secs,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Keep-alives go out every TTL/3, so two can be lost before the lease expires.
    pub fn keep_alive_interval(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.ttl_secs).unwrap_or(1)) / 3
    }

    /// Grants a lease, writes the key under it and starts keeping it alive. The first write's
    /// failure is returned; later failures are retried in the background.
    pub async fn register(self) -> Result<EtcdRegistrationHandle, DiscoveryError> {
        let client = EtcdClient::connect(&self.etcd).await?;
        let lease_id = grant_and_put(&client, &self.key, &self.value, self.ttl_secs).await?;
        let lease = Arc::new(watch::Sender::new(lease_id));
        let regrants = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = oneshot::channel();
        let interval = self.keep_alive_interval();
        let keeper = LeaseKeeper {
            backoff: Backoff::new(
                Duration::from_millis(200),
                interval.max(Duration::from_secs(1)),
            ),
            interval,
            etcd: self.etcd.clone(),
            key: self.key.clone(),
            value: self.value,
            ttl_secs: self.ttl_secs,
            client,
            lease: Arc::clone(&lease),
            regrants: Arc::clone(&regrants),
        };
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = stop_rx => {}
                () = keeper.run() => {}
            }
        });
        Ok(EtcdRegistrationHandle {
            etcd: self.etcd,
            key: self.key,
            lease,
            regrants,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A live registration. `deregister()` removes the key at once (lease revoked); dropping the
/// handle only stops the keep-alives, so the key disappears when the lease expires.
#[derive(Debug)]
pub struct EtcdRegistrationHandle {
    etcd: EtcdConfig,
    key: String,
    lease: Arc<watch::Sender<i64>>,
    regrants: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EtcdRegistrationHandle {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease the key currently lives under.
    pub fn lease_id(&self) -> i64 {
        *self.lease.borrow()
    }

    /// Sees every new lease the key is written under (after a lost lease or keep-alive stream).
    pub fn subscribe_lease(&self) -> watch::Receiver<i64> {
        self.lease.subscribe()
    }

    /// How many times the key was written again under a new lease.
    pub fn regrants(&self) -> u64 {
        self.regrants.load(Ordering::Acquire)
    }

    /// Stops the keep-alives and revokes the lease, which deletes the key. A lease that
    /// already expired counts as revoked.
    pub async fn deregister(mut self) -> Result<(), DiscoveryError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The task stops at its next await; it never holds a half-written state.
            let _ = task.await;
        }
        let client = EtcdClient::connect(&self.etcd).await?;
        client.lease_revoke(self.lease_id()).await
    }
}

impl Drop for EtcdRegistrationHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The background keep-alive loop of one registration.
struct LeaseKeeper {
    etcd: EtcdConfig,
    key: String,
    value: String,
    ttl_secs: i64,
    interval: Duration,
    client: EtcdClient,
    lease: Arc<watch::Sender<i64>>,
    regrants: Arc<AtomicU64>,
    backoff: Backoff,
}

impl LeaseKeeper {
    async fn run(mut self) {
        loop {
            let lease_id = *self.lease.borrow();
            let reason = self.keep_alive(lease_id).await;
            tracing::warn!(key = %self.key, %reason, "etcd: lease keep-alive ended; granting a new lease");
            self.register_again().await;
        }
    }

    /// Keeps `lease_id` alive until that fails; returns why.
    async fn keep_alive(&mut self, lease_id: i64) -> String {
        let mut keep_alive = match self.client.lease_keep_alive(lease_id).await {
            Ok(keep_alive) => keep_alive,
            Err(error) => return error.to_string(),
        };
        loop {
            tokio::time::sleep(self.interval).await;
            if let Err(error) = keep_alive.renew().await {
                return error.to_string();
            }
        }
    }

    /// Grants a new lease and writes the key under it, retrying with backoff until it works.
    async fn register_again(&mut self) {
        loop {
            let attempt = async {
                let client = EtcdClient::connect(&self.etcd).await?;
                let lease_id =
                    grant_and_put(&client, &self.key, &self.value, self.ttl_secs).await?;
                Ok::<_, DiscoveryError>((client, lease_id))
            };
            match attempt.await {
                Ok((client, lease_id)) => {
                    self.client = client;
                    self.regrants.fetch_add(1, Ordering::AcqRel);
                    self.lease.send_replace(lease_id);
                    self.backoff.reset();
                    tracing::info!(key = %self.key, lease_id, "etcd: registered again under a new lease");
                    return;
                }
                Err(error) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(key = %self.key, %error, ?delay, "etcd: registering again failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

async fn grant_and_put(
    client: &EtcdClient,
    key: &str,
    value: &str,
    ttl_secs: i64,
) -> Result<i64, DiscoveryError> {
    let lease = client.lease_grant(ttl_secs).await?;
    client.put(key, value, lease.id).await?;
    Ok(lease.id)
}
