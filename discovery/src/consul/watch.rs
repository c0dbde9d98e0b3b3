//! `ConsulWatch`: one service's healthy instances through a blocking-query loop that follows
//! Consul's client obligations (api-docs/features/blocking.mdx): reset the index when it goes
//! backwards, never block on index 0, and rate-limit the loop with a token bucket.

use std::time::Duration;

use tokio::time::Instant;

use super::client::{ConsulClient, HealthQuery, MAX_WAIT};
use super::wire::ServiceEntry;
use crate::endpoint::{Endpoint, EndpointSet};
use crate::error::{Backend, DiscoveryError};
use crate::source::EndpointSource;

/// The blocking-loop rate limit: a token bucket holding `burst` tokens, one token refilled per
/// `interval`. In the happy case queries go out at once; under churn the loop degrades to one
/// query per `interval` (blocking.mdx: "a token bucket with burst of 2", "say every 15
/// seconds"). A zero `interval` disables the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub interval: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 2,
            interval: Duration::from_secs(15),
        }
    }
}

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulWatchConfig {
    pub service: String,
    /// Only instances carrying all these tags.
    pub tags: Vec<String>,
    /// Another datacenter than the agent's (`?dc=`).
    pub datacenter: Option<String>,
    /// `?passing`: drop instances with any non-passing check, node checks included. When
    /// false, only instances with a critical check are dropped and instances in warning get
    /// their `Weights.Warning`.
    pub passing_only: bool,
    /// How long the agent may hold a blocking query (clamped to Consul's 10 minutes). It also
    /// bounds how long a silently dead agent goes unnoticed.
    pub wait: Duration,
    pub rate_limit: RateLimit,
}

impl ConsulWatchConfig {
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            tags: Vec::new(),
            datacenter: None,
            passing_only: true,
            wait: Self::DEFAULT_WAIT,
            rate_limit: RateLimit::default(),
        }
    }
}

/// Watches one Consul service; see [`EndpointSource`].
#[derive(Debug)]
pub struct ConsulWatch {
    client: ConsulClient,
    query: HealthQuery,
    wait: Duration,
    index: u64,
    bucket: TokenBucket,
    delivered: Option<EndpointSet>,
}

impl ConsulWatch {
    pub fn new(client: ConsulClient, config: ConsulWatchConfig) -> Result<Self, DiscoveryError> {
        if config.service.is_empty() {
            return Err(DiscoveryError::config(
                Backend::Consul,
                "the service name is empty",
            ));
        }
        if config.wait.is_zero() {
            return Err(DiscoveryError::config(
                Backend::Consul,
                "the blocking wait is zero",
            ));
        }
        Ok(Self {
            client,
            query: HealthQuery {
                service: config.service,
                datacenter: config.datacenter,
                tags: config.tags,
                passing_only: config.passing_only,
            },
            wait: config.wait.min(MAX_WAIT),
            index: 0,
            bucket: TokenBucket::new(config.rate_limit),
            delivered: None,
        })
    }

    /// The index the next query blocks on (0: the next query does not block).
    pub fn index(&self) -> u64 {
        self.index
    }
}

impl EndpointSource for ConsulWatch {
    async fn next_update(&mut self) -> Result<EndpointSet, DiscoveryError> {
        loop {
            self.bucket.acquire().await;
            let answer = match self
                .client
                .health_service(&self.query, self.index, self.wait)
                .await
            {
                Ok(answer) => answer,
                Err(error) => {
                    // The agent may come back restarted with a lower index: start over with a
                    // non-blocking query instead of blocking on an index it never reaches.
                    self.index = 0;
                    self.delivered = None;
                    return Err(error);
                }
            };
            let previous = self.index;
            self.index = next_index(previous, answer.index);
            if self.index == 0 {
                tracing::info!(service = %self.query.service, previous, returned = answer.index,
                    "consul: index went backwards, restarting the blocking loop");
            }
            let set = endpoint_set(&answer.entries, self.query.passing_only);
            if self.delivered.as_ref() != Some(&set) {
                self.delivered = Some(set.clone());
                return Ok(set);
            }
        }
    }
}

/// The index for the next query (blocking.mdx "Implementation Details"): an index lower than
/// the one we hold means the agent's state was replaced, so reset to 0 (the next query does not
/// block and fetches the current state); otherwise use it, but never below 1, so a buggy 0
/// cannot turn the loop into a busy poll.
pub(crate) fn next_index(previous: u64, returned: u64) -> u64 {
    if returned < previous {
        0
    } else {
        returned.max(1)
    }
}

/// The endpoints of a health answer.
pub(crate) fn endpoint_set(entries: &[ServiceEntry], passing_only: bool) -> EndpointSet {
    entries
        .iter()
        .filter_map(|entry| endpoint_of(entry, passing_only))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Aggregate {
    Passing,
    Warning,
    Critical,
}

fn endpoint_of(entry: &ServiceEntry, passing_only: bool) -> Option<Endpoint> {
    let service = &entry.service;
    // Node checks (serfHealth) count too, as in Consul's own `passing` filter. Maintenance
    // mode is a critical check; any status Consul may add later counts as critical.
    let health = entry
        .checks
        .iter()
        .map(|check| match check.status.as_str() {
            "passing" => Aggregate::Passing,
            "warning" => Aggregate::Warning,
            _ => Aggregate::Critical,
        })
        .max()
        .unwrap_or(Aggregate::Passing);
    if health == Aggregate::Critical || (passing_only && health != Aggregate::Passing) {
        return None;
    }
    let address_text = if service.address.is_empty() {
        &entry.node.address
    } else {
        &service.address
    };
    let Ok(address) = address_text.parse() else {
        tracing::warn!(service = %service.service, id = %service.id, address = %address_text,
            "consul: instance address is not an IP address; skipped");
        return None;
    };
    let port = match u16::try_from(service.port) {
        Ok(port) if port != 0 => port,
        _ => {
            tracing::warn!(service = %service.service, id = %service.id, port = service.port,
                "consul: instance has no usable port; skipped");
            return None;
        }
    };
    let weights = service.weights.map_or((1, 1), |w| (w.passing, w.warning));
    let weight = if health == Aggregate::Warning {
        weights.1
    } else {
        weights.0
    };
    let mut endpoint = Endpoint::new(address, port)
        .with_weight(u32::try_from(weight.max(0)).unwrap_or(u32::MAX))
        .with_tags(service.tags.iter().cloned())
        .with_id(service.id.clone());
    endpoint.metadata = service.meta.clone();
    Some(endpoint)
}

/// The token bucket of [`RateLimit`], on tokio's clock.
#[derive(Debug)]
struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            updated: Instant::now(),
        }
    }

    /// Waits for a token and takes it. Dropping the future takes nothing.
    async fn acquire(&mut self) {
        if self.limit.interval.is_zero() {
            return;
        }
        self.refill();
        if self.tokens < 1.0 {
            let missing = 1.0 - self.tokens;
            tokio::time::sleep(self.limit.interval.mul_f64(missing)).await;
            self.refill();
        }
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned =
            now.duration_since(self.updated).as_secs_f64() / self.limit.interval.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(self.limit.burst.max(1)));
        self.updated = now;
    }
}

#[cfg(test)]
pub(crate) async fn bucket_waits_for_tests(limit: RateLimit, takes: usize) -> Duration {
    let mut bucket = TokenBucket::new(limit);
    let start = Instant::now();
    for _ in 0..takes {
        bucket.acquire().await;
    }
    start.elapsed()
}
