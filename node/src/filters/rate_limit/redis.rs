//! Limits shared by every node through one Redis: each check is one `EVALSHA` of
//! [`check.lua`](check.lua) — all of a policy's windows read, decided and (only if every one
//! admits the request) written in one atomic step, on the Redis server's clock.
//!
//! The connection is redis-rs's `ConnectionManager`: one multiplexed connection (checks reach
//! its writer task through a channel and are pipelined; the current connection sits behind an
//! `ArcSwap`), reconnecting by itself after errors; created lazily, so a node starts while
//! Redis is down.
//! A check waits at most `timeout`. A failed or late check marks the store unreachable for
//! `retry_interval`, during which checks do not touch Redis at all — the policy's failure mode
//! decides at once (a local fallback limit, or 503) — and then the next request tries again:
//! recovery needs no operator. Transitions are logged once each way and counted in
//! `meshgate_rate_limit_redis_*` metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use meshgate_actors::outbound_tls::read_secret;
use meshgate_config::rate_limit::{Algorithm, RedisSpec, Window};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use super::{Decision, WindowReport};
use crate::telemetry::metrics::rate_limit_store::RateLimitStoreMetrics;

const SCRIPT: &str = include_str!("check.lua");
/// Concurrent checks a node may have queued for Redis without waiting for channel space.
const PIPELINE_BUFFER: usize = 1024;

/// The script's name for an algorithm (also part of the Redis key).
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Gcra => "gcra",
        Algorithm::SlidingWindow => "sliding_window",
        Algorithm::FixedWindow => "fixed_window",
    }
}

/// Redis could not decide; the failure mode applies. Carries when Redis will be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable(pub Duration);

/// One Redis server and whether it currently answers.
pub struct RedisStore {
    spec: RedisSpec,
    /// `None` when the URL could not be used: every check is then a failure.
    connection: Option<ConnectionManager>,
    script: redis::Script,
    epoch: Instant,
    /// Nanoseconds after `epoch` before which checks skip Redis.
    skip_until: AtomicU64,
    reachable: AtomicBool,
    metrics: Arc<RateLimitStoreMetrics>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &redact(&self.spec.url))
            .field("reachable", &self.reachable.load(Ordering::Relaxed))
            .finish()
    }
}

impl RedisStore {
    /// A store for `spec`; connects on first use.
    pub fn new(spec: RedisSpec, metrics: Arc<RateLimitStoreMetrics>) -> Self {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(spec.connect_timeout))
            .set_response_timeout(Some(spec.timeout))
            // One attempt per reconnect: the store's own retry interval paces the next one.
            .set_number_of_retries(0)
            .set_min_delay(Duration::from_millis(10))
            // Checks queued for the connection's writer before a sender waits (default 50).
            .set_pipeline_buffer_size(PIPELINE_BUFFER);
        let connection = client(&spec).and_then(|client| {
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
        });
        let connection = match connection {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(url = %redact(&spec.url), error = %e, "cannot use the rate-limit Redis settings; policies with store: redis apply their failure mode");
                None
            }
        };
        metrics.set_reachable(true);
        Self {
            spec,
            connection,
            script: redis::Script::new(SCRIPT),
            epoch: Instant::now(),
            skip_until: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
            metrics,
        }
    }

    pub fn spec(&self) -> &RedisSpec {
        &self.spec
    }

    pub fn metrics(&self) -> &RateLimitStoreMetrics {
        &self.metrics
    }

    /// Count one request of `key` against `windows`, in Redis.
    pub async fn check(
        &self,
        key: &str,
        algorithm: Algorithm,
        windows: &[Window],
    ) -> Result<Decision, Unavailable> {
        let now = self.elapsed();
        let skip_until = self.skip_until.load(Ordering::Acquire);
        if now < skip_until {
            return Err(Unavailable(Duration::from_nanos(skip_until - now)));
        }
        let Some(connection) = &self.connection else {
            return Err(self.failed("the Redis URL could not be used"));
        };
        let mut connection = connection.clone();
        let mut invocation = self.script.key(key);
        invocation.arg(algorithm_name(algorithm)).arg(windows.len());
        for w in windows {
            invocation.arg(w.requests).arg(w.burst).arg(
                u64::try_from(w.period.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        }
        let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
        match tokio::time::timeout(self.spec.timeout, call).await {
            Ok(Ok(reply)) => match decode(&reply, windows, algorithm) {
                Some(decision) => {
                    self.succeeded();
                    Ok(decision)
                }
                None => Err(self.failed("unexpected reply from the rate-limit script")),
            },
            Ok(Err(e)) => Err(self.failed(&explain(&e))),
            Err(_) => Err(self.failed("timed out")),
        }
    }

    fn elapsed(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn failed(&self, error: &str) -> Unavailable {
        let retry = self.spec.retry_interval;
        let until = self
            .elapsed()
            .saturating_add(u64::try_from(retry.as_nanos()).unwrap_or(u64::MAX));
        self.skip_until.fetch_max(until, Ordering::AcqRel);
        self.metrics.error();
        if self.reachable.swap(false, Ordering::AcqRel) {
            self.metrics.set_reachable(false);
            tracing::warn!(
                url = %redact(&self.spec.url),
                error,
                retry_in = ?retry,
                "rate-limit Redis unreachable; policies apply their failure mode until it answers"
            );
        } else {
            tracing::debug!(error, "rate-limit Redis still unreachable");
        }
        Unavailable(retry)
    }

    fn succeeded(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            self.metrics.set_reachable(true);
            tracing::info!(url = %redact(&self.spec.url), "rate-limit Redis reachable again");
        }
    }
}

/// The redis-rs client for `spec`: the URL with the configured ACL user and password, over TLS
/// for `rediss://` (the configured CA, else the platform's trust store, and a client
/// certificate when configured). Files are read now, when the store is built.
fn client(spec: &RedisSpec) -> Result<redis::Client, String> {
    use redis::IntoConnectionInfo;
    let info = spec
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("rate_limiting.redis.url: {e}"))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &spec.username {
        settings = settings.set_username(user);
    }
    if let Some(secret) = &spec.password {
        settings = settings.set_password(read_secret(secret, "rate_limiting.redis.password_file")?);
    }
    let info = info.set_redis_settings(settings);
    if !spec.url.starts_with("rediss://") {
        return redis::Client::open(info).map_err(|e| e.to_string());
    }
    let tls = spec.tls.clone().unwrap_or_default();
    let read = |path: &str, field: &str| {
        std::fs::read(path)
            .map_err(|e| format!("rate_limiting.redis.tls.{field}: cannot read {path}: {e}"))
    };
    let root_cert = tls.ca.as_deref().map(|p| read(p, "ca")).transpose()?;
    let client_tls = match &tls.client_certificate {
        Some(c) => Some(redis::ClientTlsConfig {
            client_cert: read(&c.cert, "client_certificate.cert")?,
            client_key: read(&c.key, "client_certificate.key")?,
        }),
        None => None,
    };
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| format!("rate_limiting.redis.tls: {e}"))
}

/// A failed call in words: a TLS handshake failure names the setting to fix.
fn explain(error: &redis::RedisError) -> String {
    if let Some(failure) = meshgate_pki::handshake_failure(error) {
        return format!("rate_limiting.redis.tls: {failure}");
    }
    let text = error.to_string();
    // redis-rs keeps I/O errors out of its source chain: recognise rustls's own words.
    if text.contains("invalid peer certificate") || text.contains("received fatal alert") {
        format!("rate_limiting.redis.tls: TLS handshake failed: {text}")
    } else {
        text
    }
}

/// The script's reply as a decision: the refusing window, or the one closest to refusing.
fn decode(reply: &[i64], windows: &[Window], algorithm: Algorithm) -> Option<Decision> {
    let (&refused_by, rest) = reply.split_first()?;
    let (&retry_after_us, per_window) = rest.split_first()?;
    if per_window.len() != windows.len() * 2 {
        return None;
    }
    let reports = windows
        .iter()
        .zip(per_window.chunks_exact(2))
        .map(|(w, pair)| {
            let (limit, _) = w.advertised(algorithm);
            WindowReport {
                limit,
                remaining: u32::try_from(pair[0].max(0)).unwrap_or(u32::MAX),
                reset: micros(pair[1]),
                label: w.label.clone(),
            }
        });
    if refused_by > 0 {
        let index = usize::try_from(refused_by - 1).ok()?;
        let report = reports.clone().nth(index)?;
        return Some(Decision::denied(report, micros(retry_after_us)));
    }
    Some(Decision::allowed(
        reports.reduce(|a, b| super::local::closer(Some(a), b)),
    ))
}

fn micros(n: i64) -> Duration {
    Duration::from_micros(u64::try_from(n).unwrap_or(0))
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u32, secs: u64, label: &str) -> Window {
        Window {
            requests,
            burst: requests,
            period: Duration::from_secs(secs),
            label: label.into(),
        }
    }

    #[test]
    fn replies_decode_to_the_closest_or_refusing_window() {
        let windows = [window(10, 1, "a"), window(100, 60, "b")];
        let allowed = decode(
            &[0, 0, 7, 300_000, 2, 40_000_000],
            &windows,
            Algorithm::FixedWindow,
        )
        .unwrap();
        assert!(allowed.allowed);
        let report = allowed.report.unwrap();
        assert_eq!((&*report.label, report.remaining), ("b", 2));
        assert_eq!(report.reset, Duration::from_secs(40));

        let refused = decode(
            &[2, 1_500_000, 9, 1, 0, 9],
            &windows,
            Algorithm::FixedWindow,
        )
        .unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(1500));
        assert_eq!(&*refused.report.unwrap().label, "b");

        assert!(decode(&[0, 0, 1], &windows, Algorithm::FixedWindow).is_none());
        assert!(decode(&[3, 0, 1, 1, 1, 1], &windows, Algorithm::FixedWindow).is_none());
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact("redis://u:secret@cache:6379/0"),
            "redis://***@cache:6379/0"
        );
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }
}
