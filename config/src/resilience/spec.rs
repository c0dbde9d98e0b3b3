//! The runtime form of the resilience settings: durations resolved, methods and headers
//! parsed, disabled features as `None`. Built from a validated config; no clocks, no sockets.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{
    CircuitBreakerConfig, DEFAULT_HEALTH_METHOD, DEFAULT_HEALTH_PATH, DEFAULT_HEALTH_STATUS,
    FallbackConfig, HealthCheckConfig, HealthCheckKind, LimitsConfig, OutlierDetectionConfig,
    RetryConfig, RetryOn,
};
use crate::model::UpstreamConfig;

/// Everything about failure handling that belongs to one upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamResilience {
    /// `None`: no active probes.
    pub health_check: Option<HealthCheckSpec>,
    /// `None`: outlier detection disabled.
    pub outlier: Option<OutlierSpec>,
    /// `None`: circuit breaker disabled.
    pub breaker: Option<BreakerSpec>,
    pub limits: LimitsSpec,
    /// Served instead of the standard 503 while the circuit is open.
    pub fallback: Option<FallbackSpec>,
    /// Percent of endpoints that must be available; below it all endpoints are used.
    pub panic_threshold: u32,
}

impl Default for UpstreamResilience {
    fn default() -> Self {
        Self {
            health_check: None,
            outlier: Some(OutlierSpec::from(&OutlierDetectionConfig::default())),
            breaker: Some(BreakerSpec::from(&CircuitBreakerConfig::default())),
            limits: LimitsSpec::from(&LimitsConfig::default()),
            fallback: None,
            panic_threshold: super::DEFAULT_PANIC_THRESHOLD,
        }
    }
}

impl UpstreamResilience {
    pub fn from_config(u: &UpstreamConfig) -> Self {
        Self {
            health_check: u.health_check.as_ref().map(HealthCheckSpec::from),
            outlier: u
                .outlier_detection
                .enabled
                .then(|| OutlierSpec::from(&u.outlier_detection)),
            breaker: u
                .circuit_breaker
                .enabled
                .then(|| BreakerSpec::from(&u.circuit_breaker)),
            limits: LimitsSpec::from(&u.limits),
            fallback: u.fallback.as_ref().map(FallbackSpec::from),
            panic_threshold: u.panic_threshold,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub probe: HealthProbe,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub jitter_percent: u32,
}

/// What one probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthProbe {
    Tcp,
    Http {
        method: Method,
        /// Path and query.
        path: String,
        /// `None`: the target's `host:port`.
        host: Option<HeaderValue>,
        expected_statuses: Vec<u16>,
    },
}

impl From<&HealthCheckConfig> for HealthCheckSpec {
    fn from(c: &HealthCheckConfig) -> Self {
        let probe = match c.kind {
            HealthCheckKind::Tcp => HealthProbe::Tcp,
            HealthCheckKind::Http => HealthProbe::Http {
                method: Method::from_bytes(
                    c.method
                        .as_deref()
                        .unwrap_or(DEFAULT_HEALTH_METHOD)
                        .as_bytes(),
                )
                .unwrap_or(Method::GET),
                path: c
                    .path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_string()),
                host: c
                    .host
                    .as_deref()
                    .and_then(|h| HeaderValue::from_str(h).ok()),
                expected_statuses: c
                    .expected_statuses
                    .clone()
                    .unwrap_or_else(|| vec![DEFAULT_HEALTH_STATUS]),
            },
        };
        Self {
            probe,
            interval: c.interval.get(),
            timeout: c.timeout.get(),
            unhealthy_threshold: c.unhealthy_threshold,
            healthy_threshold: c.healthy_threshold,
            jitter_percent: c.jitter_percent,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSpec {
    pub consecutive_failures: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    pub interval: Duration,
}

impl OutlierSpec {
    /// How long the `times`-th ejection lasts (Envoy: base × times, capped).
    pub fn ejection_time(&self, times: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(times.max(1))
            .min(self.max_ejection_time)
    }

    /// How many of `total` endpoints may be ejected at once; always at least one (Envoy).
    pub fn max_ejected(&self, total: usize) -> usize {
        (total * self.max_ejection_percent as usize / 100).max(1)
    }
}

impl From<&OutlierDetectionConfig> for OutlierSpec {
    fn from(c: &OutlierDetectionConfig) -> Self {
        Self {
            consecutive_failures: c.consecutive_failures,
            base_ejection_time: c.base_ejection_time.get(),
            max_ejection_time: c.max_ejection_time.get(),
            max_ejection_percent: c.max_ejection_percent,
            interval: c.interval.get(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSpec {
    /// 0 = not a trigger.
    pub consecutive_failures: u32,
    /// Percent; 0 = not a trigger.
    pub failure_rate: u32,
    pub window: Duration,
    pub minimum_requests: u32,
    pub open_for: Duration,
    pub half_open_requests: u32,
}

impl From<&CircuitBreakerConfig> for BreakerSpec {
    fn from(c: &CircuitBreakerConfig) -> Self {
        Self {
            consecutive_failures: c.consecutive_failures,
            failure_rate: c.failure_rate,
            window: c.window.get(),
            minimum_requests: c.minimum_requests,
            open_for: c.open_for.get(),
            half_open_requests: c.half_open_requests,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitsSpec {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: Option<u32>,
    pub retry_budget: RetryBudget,
}

impl LimitsSpec {
    /// Concurrent retries allowed while `active` requests are in flight.
    pub fn retries_allowed(&self, active: u32) -> u32 {
        let budget = self.retry_budget.allowed(active);
        self.max_retries.map_or(budget, |cap| budget.min(cap))
    }
}

impl From<&LimitsConfig> for LimitsSpec {
    fn from(c: &LimitsConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            max_pending_requests: c.max_pending_requests,
            max_requests: c.max_requests,
            max_retries: c.max_retries,
            retry_budget: RetryBudget {
                percent: c.retry_budget.percent,
                min_concurrency: c.retry_budget.min_concurrency,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_concurrency: u32,
}

impl RetryBudget {
    /// Envoy: `max(min_retry_concurrency, budget_percent × active requests)`.
    pub fn allowed(&self, active: u32) -> u32 {
        let share = (u64::from(active) * u64::from(self.percent) / 100) as u32;
        share.max(self.min_concurrency)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FallbackSpec {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl From<&FallbackConfig> for FallbackSpec {
    fn from(c: &FallbackConfig) -> Self {
        let mut headers = HeaderMap::new();
        for (k, v) in &c.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.append(name, value);
            }
        }
        Self {
            status: StatusCode::from_u16(c.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            headers,
            body: Bytes::from(c.body.clone().unwrap_or_default()),
        }
    }
}

/// A route's retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    pub attempts: u32,
    pub on_connect_failure: bool,
    pub on_reset: bool,
    pub on_timeout: bool,
    pub statuses: Vec<u16>,
    pub per_try_timeout: Option<Duration>,
    pub non_idempotent: bool,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_body: u64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self::from(&RetryConfig::default())
    }
}

impl RetrySpec {
    pub fn retries_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status.as_u16())
    }

    /// The back-off ceiling before retry number `retry` (1-based): base × 2^(retry-1), capped.
    /// The caller draws the actual wait below it (jitter).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(16);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

impl From<&RetryConfig> for RetrySpec {
    fn from(c: &RetryConfig) -> Self {
        Self {
            attempts: c.attempts,
            on_connect_failure: c.on.contains(&RetryOn::ConnectFailure),
            on_reset: c.on.contains(&RetryOn::Reset),
            on_timeout: c.on.contains(&RetryOn::Timeout),
            statuses: c.statuses.clone(),
            per_try_timeout: c.per_try_timeout.map(|d| d.get()),
            non_idempotent: c.non_idempotent,
            backoff_base: c.backoff.base.get(),
            backoff_max: c.backoff.max.get(),
            max_body: c.max_body,
        }
    }
}
