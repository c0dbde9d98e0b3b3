//! The resilience settings users write: route-level `retry` and upstream-level `health_check`,
//! `outlier_detection`, `circuit_breaker`, `limits`, `fallback` and `panic_threshold`. Serde
//! structs with named defaults (each cites where it comes from); meaning is checked in
//! [`check`], the runtime form is built in [`spec`].

pub mod check;
pub mod spec;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

pub use spec::{
    BreakerSpec, FallbackSpec, HealthCheckSpec, HealthProbe, LimitsSpec, OutlierSpec, RetryBudget,
    RetrySpec, UpstreamResilience,
};

/// Retries after the first try (Envoy's `num_retries` default is 1).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 1;
/// Upper bound on retries per request: more only multiplies load on a failing upstream.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// Envoy's retry back-off: base 25 ms, capped at 10 × base.
pub const DEFAULT_RETRY_BACKOFF_BASE: HumanDuration = HumanDuration::from_millis(25);
pub const DEFAULT_RETRY_BACKOFF_MAX: HumanDuration = HumanDuration::from_millis(250);
/// Largest request body buffered so that it can be sent again (bigger bodies stream, and
/// are retried only when the connection failed before any byte was sent).
pub const DEFAULT_RETRY_MAX_BODY: u64 = 64 * 1024;

/// Probe interval: the 10 s (Envoy makes `interval` a required field; Consul's
/// documented check examples use 10 s).
pub const DEFAULT_HEALTH_INTERVAL: HumanDuration = HumanDuration::from_secs(10);
/// Kong's (and APISIX's) active health-check `timeout`: 1 s.
pub const DEFAULT_HEALTH_TIMEOUT: HumanDuration = HumanDuration::from_secs(1);
/// Consecutive failed probes that take an endpoint out, and good probes that bring it back:
/// the 3 and 2 (Envoy requires both fields; APISIX defaults to 2 successes).
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Each wait between probe rounds is stretched by up to this share of the interval so that
/// many nodes do not probe in lock-step (Envoy's `interval_jitter_percent`, default 0 there).
pub const DEFAULT_HEALTH_JITTER_PERCENT: u32 = 10;
/// Kong's `http_path` default.
pub const DEFAULT_HEALTH_PATH: &str = "/";
pub const DEFAULT_HEALTH_METHOD: &str = "GET";
/// Envoy's default expected status: 200 only.
pub const DEFAULT_HEALTH_STATUS: u16 = 200;

/// Envoy outlier detection: `consecutive_5xx` 5, `base_ejection_time` 30 s,
/// `max_ejection_time` 300 s, `max_ejection_percent` 10, `interval` 10 s.
pub const DEFAULT_OUTLIER_CONSECUTIVE_FAILURES: u32 = 5;
pub const DEFAULT_BASE_EJECTION_TIME: HumanDuration = HumanDuration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_TIME: HumanDuration = HumanDuration::from_secs(300);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;
pub const DEFAULT_OUTLIER_INTERVAL: HumanDuration = HumanDuration::from_secs(10);

/// Circuit breaker: 10 consecutive failures, or 50 % failures over a 10 s window with at
/// least 20 requests (Hystrix's `errorThresholdPercentage`, `metrics.rollingStats` and
/// `requestVolumeThreshold`); open for 30 s; one half-open probe (resilience4j's
/// `permittedNumberOfCallsInHalfOpenState` idea, at its smallest).
pub const DEFAULT_BREAKER_CONSECUTIVE_FAILURES: u32 = 10;
pub const DEFAULT_BREAKER_FAILURE_RATE: u32 = 50;
pub const DEFAULT_BREAKER_WINDOW: HumanDuration = HumanDuration::from_secs(10);
pub const DEFAULT_BREAKER_MINIMUM_REQUESTS: u32 = 20;
pub const DEFAULT_BREAKER_OPEN_FOR: HumanDuration = HumanDuration::from_secs(30);
pub const DEFAULT_BREAKER_HALF_OPEN_REQUESTS: u32 = 1;

/// Envoy's circuit-breaker thresholds: 1024 connections, pending requests and requests.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
pub const DEFAULT_MAX_PENDING_REQUESTS: u32 = 1024;
pub const DEFAULT_MAX_REQUESTS: u32 = 1024;
/// Envoy's `retry_budget`: 20 % of active requests, at least 3 concurrent retries.
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
pub const DEFAULT_RETRY_BUDGET_MIN_CONCURRENCY: u32 = 3;

/// Envoy's `healthy_panic_threshold`: below 50 % available endpoints, use them all.
pub const DEFAULT_PANIC_THRESHOLD: u32 = 50;

/// `proxy.retry`: when a failed try is sent again. Absent = these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first try; 0 turns retries off.
    pub attempts: u32,
    /// Which failures are retried.
    pub on: Vec<RetryOn>,
    /// Upstream statuses retried (e.g. 502, 503, 504).
    pub statuses: Vec<u16>,
    /// Each try's own limit; the route `timeout` still bounds the whole request.
    pub per_try_timeout: Option<HumanDuration>,
    /// Also retry methods that are not idempotent (POST, PATCH) after the request was sent.
    pub non_idempotent: bool,
    pub backoff: BackoffConfig,
    /// Request bodies up to this size (known from Content-Length) are buffered so that they
    /// can be sent again.
    pub max_body: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            on: vec![RetryOn::ConnectFailure, RetryOn::Reset],
            statuses: Vec::new(),
            per_try_timeout: None,
            non_idempotent: false,
            backoff: BackoffConfig::default(),
            max_body: DEFAULT_RETRY_MAX_BODY,
        }
    }
}

/// A failure class that a retry policy may cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The connection could not be made (refused, timed out): the request never left.
    ConnectFailure,
    /// The upstream closed or reset the connection, or sent garbage, before response headers.
    Reset,
    /// A try ran past `per_try_timeout`.
    Timeout,
}

/// Exponential back-off between tries, with jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    pub base: HumanDuration,
    pub max: HumanDuration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: DEFAULT_RETRY_BACKOFF_BASE,
            max: DEFAULT_RETRY_BACKOFF_MAX,
        }
    }
}

/// `upstreams[].health_check`: active probes of every endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// HTTP only.
    pub path: Option<String>,
    /// HTTP only.
    pub method: Option<String>,
    /// HTTP only: the Host header; default the target's `host:port`.
    pub host: Option<String>,
    /// HTTP only.
    pub expected_statuses: Option<Vec<u16>>,
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub jitter_percent: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::Http,
            path: None,
            method: None,
            host: None,
            expected_statuses: None,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            jitter_percent: DEFAULT_HEALTH_JITTER_PERCENT,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// An HTTP/1.1 request; healthy when the status is expected.
    #[default]
    Http,
    /// A TCP connect; healthy when it succeeds.
    Tcp,
}

/// `upstreams[].outlier_detection`: passive health from real traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetectionConfig {
    pub enabled: bool,
    /// Consecutive 5xx responses or connect failures that eject an endpoint.
    pub consecutive_failures: u32,
    /// The first ejection lasts this long; each further one adds another.
    pub base_ejection_time: HumanDuration,
    pub max_ejection_time: HumanDuration,
    /// At most this share of endpoints is ejected at once (at least one always may be).
    pub max_ejection_percent: u32,
    /// An endpoint that stays in for this long forgets one past ejection.
    pub interval: HumanDuration,
}

impl Default for OutlierDetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: DEFAULT_OUTLIER_CONSECUTIVE_FAILURES,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
            interval: DEFAULT_OUTLIER_INTERVAL,
        }
    }
}

/// `upstreams[].circuit_breaker`: fail fast while an upstream keeps failing. It counts
/// requests by their final outcome (after retries), and only failures the upstream answers
/// for: not the client's, not our own limits', not those of an endpoint already ejected or
/// being ejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    pub enabled: bool,
    /// Consecutive failed requests that open the circuit; 0 = only the failure rate counts.
    pub consecutive_failures: u32,
    /// Percent of failed requests in `window` that opens it; 0 = only consecutive failures
    /// count.
    pub failure_rate: u32,
    pub window: HumanDuration,
    /// The failure rate is judged only over at least this many requests.
    pub minimum_requests: u32,
    pub open_for: HumanDuration,
    /// Probe requests let through when half-open; all must succeed to close.
    pub half_open_requests: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: DEFAULT_BREAKER_CONSECUTIVE_FAILURES,
            failure_rate: DEFAULT_BREAKER_FAILURE_RATE,
            window: DEFAULT_BREAKER_WINDOW,
            minimum_requests: DEFAULT_BREAKER_MINIMUM_REQUESTS,
            open_for: DEFAULT_BREAKER_OPEN_FOR,
            half_open_requests: DEFAULT_BREAKER_HALF_OPEN_REQUESTS,
        }
    }
}

/// `upstreams[].limits`: concurrency bounds (Envoy's circuit-breaker thresholds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open connections to all endpoints together.
    pub max_connections: u32,
    /// Requests waiting for a connection when `max_connections` is reached.
    pub max_pending_requests: u32,
    /// Requests in flight (until the response body ends).
    pub max_requests: u32,
    /// A hard cap on concurrent retries on top of the budget; absent = the budget alone.
    pub max_retries: Option<u32>,
    pub retry_budget: RetryBudgetConfig,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_retries: None,
            retry_budget: RetryBudgetConfig::default(),
        }
    }
}

/// Concurrent retries may be at most `percent` of active requests, but always
/// `min_concurrency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    pub percent: u32,
    pub min_concurrency: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            percent: DEFAULT_RETRY_BUDGET_PERCENT,
            min_concurrency: DEFAULT_RETRY_BUDGET_MIN_CONCURRENCY,
        }
    }
}

/// `upstreams[].fallback`: what clients get while the circuit is open, instead of the
/// standard 503.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

fn default_fallback_status() -> u16 {
    503
}

pub(crate) fn default_panic_threshold() -> u32 {
    DEFAULT_PANIC_THRESHOLD
}

#[cfg(test)]
mod tests;
