//! The `telemetry:` section — metrics, access logs, tracing, usage analytics and latency
//! headers: its serde model with named defaults, its validation (field paths) and its compiled
//! form. Kept in one file so the rest of the config only needs a one-line hook per stage.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::error::{ConfigError, FieldPath};

/// `service.name` of exported spans.
pub const DEFAULT_SERVICE_NAME: &str = "meshgate";
/// Access-log records that may wait for the writer before new ones are dropped (and counted).
pub const DEFAULT_ACCESS_LOG_BUFFER: usize = 8192;
/// Where access logs go unless a file is named.
pub const ACCESS_LOG_STDOUT: &str = "stdout";
/// Parent-based sampling: a root trace is recorded with this probability.
pub const DEFAULT_SAMPLE_RATIO: f64 = 1.0;
/// How often finished spans are sent to the OTLP endpoint (the SDK's default is 5 s).
pub const DEFAULT_EXPORT_INTERVAL: HumanDuration = HumanDuration::from_secs(5);
/// Distinct consumer × route × status class × day keys kept in memory.
pub const DEFAULT_ANALYTICS_MAX_ENTRIES: usize = 100_000;
/// Days of usage analytics kept (a month and a few days of slack for billing runs).
pub const DEFAULT_ANALYTICS_RETENTION_DAYS: u32 = 35;
/// Largest access-log buffer accepted (records are preallocated).
pub const MAX_ACCESS_LOG_BUFFER: usize = 1 << 20;
/// Request headers whose values never appear in an access log, whatever the config says.
pub const ALWAYS_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// `telemetry:` — what the node reports about the traffic it serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub metrics: MetricsConfig,
    pub access_log: AccessLogConfig,
    pub tracing: TracingConfig,
    pub analytics: AnalyticsConfig,
    pub latency_headers: LatencyHeadersConfig,
}

/// Prometheus metrics at `GET /metrics` on the admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// One JSON line per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// `stdout` or a file path (appended to; reopened on SIGUSR1 for logrotate).
    pub path: String,
    /// Log the query string with the path (redacted parameters replaced).
    pub include_query: bool,
    /// Extra request headers to log under `headers`.
    pub headers: Vec<String>,
    /// Header names and query parameters whose values are replaced by `[REDACTED]`, on top of
    /// Authorization, Proxy-Authorization, Cookie and Set-Cookie.
    pub redact: Vec<String>,
    /// Records waiting for the writer; beyond it records are dropped and counted.
    pub buffer: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: ACCESS_LOG_STDOUT.to_string(),
            include_query: false,
            headers: Vec::new(),
            redact: Vec::new(),
            buffer: DEFAULT_ACCESS_LOG_BUFFER,
        }
    }
}

/// OpenTelemetry traces over OTLP/gRPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// `http://host:4317`; tracing is off without it.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Probability that a trace started here is recorded; a client's sampled flag wins.
    pub sample_ratio: f64,
    pub export_interval: HumanDuration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: DEFAULT_SERVICE_NAME.to_string(),
            sample_ratio: DEFAULT_SAMPLE_RATIO,
            export_interval: DEFAULT_EXPORT_INTERVAL,
        }
    }
}

/// Usage counters per consumer × route × status class × day (`GET /analytics/usage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    pub enabled: bool,
    pub max_entries: usize,
    pub retention_days: u32,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_entries: DEFAULT_ANALYTICS_MAX_ENTRIES,
            retention_days: DEFAULT_ANALYTICS_RETENTION_DAYS,
        }
    }
}

/// `X-Upstream-Latency` / `X-Gateway-Latency` response headers (milliseconds), per route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyHeadersConfig {
    /// On every route.
    pub all_routes: bool,
    /// On these routes (by name).
    pub routes: Vec<String>,
}

/// The compiled `telemetry:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySpec {
    pub metrics: bool,
    pub access_log: Option<AccessLogSpec>,
    pub tracing: Option<TracingSpec>,
    pub analytics: Option<AnalyticsSpec>,
    pub latency_headers: LatencyHeadersConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSpec {
    /// `None` = stdout.
    pub path: Option<std::path::PathBuf>,
    pub include_query: bool,
    /// Extra headers to log, lowercase.
    pub headers: Vec<HeaderName>,
    /// Lowercase header names and query parameter names to redact.
    pub redact: Arc<[String]>,
    pub buffer: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracingSpec {
    pub otlp_endpoint: String,
    pub service_name: String,
    pub sample_ratio: f64,
    pub export_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsSpec {
    pub max_entries: usize,
    pub retention_days: u32,
}

impl TelemetrySpec {
    /// Whether responses of the route named `route` carry latency headers.
    pub fn latency_headers_on(&self, route: &str) -> bool {
        self.latency_headers.all_routes || self.latency_headers.routes.iter().any(|r| r == route)
    }
}

impl Default for TelemetrySpec {
    fn default() -> Self {
        compile(&TelemetryConfig::default())
    }
}

/// Check the section; `route_names` are the names routes are known by (`route-<i>` when
/// unnamed).
pub fn validate(t: &TelemetryConfig, route_names: &[String], path: &FieldPath) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let log = path.field("access_log");
    let a = &t.access_log;
    if a.path.trim().is_empty() {
        errors.push(
            log.field("path")
                .error("must not be empty (write stdout for standard output)"),
        );
    }
    if !(1..=MAX_ACCESS_LOG_BUFFER).contains(&a.buffer) {
        errors.push(log.field("buffer").error(format!(
            "{} is out of range 1..={MAX_ACCESS_LOG_BUFFER}",
            a.buffer
        )));
    }
    for (i, h) in a.headers.iter().enumerate() {
        if HeaderName::from_bytes(h.as_bytes()).is_err() {
            errors.push(
                log.field("headers")
                    .index(i)
                    .error(format!("{h:?} is not a valid header name")),
            );
        }
    }
    for (i, r) in a.redact.iter().enumerate() {
        if r.trim().is_empty() {
            errors.push(log.field("redact").index(i).error("must not be empty"));
        }
    }
    let tr = path.field("tracing");
    let tc = &t.tracing;
    if let Some(endpoint) = &tc.otlp_endpoint
        && let Err(message) = check_endpoint(endpoint)
    {
        errors.push(tr.field("otlp_endpoint").error(message));
    }
    if !(0.0..=1.0).contains(&tc.sample_ratio) {
        errors.push(
            tr.field("sample_ratio")
                .error(format!("{} is out of range 0.0..=1.0", tc.sample_ratio)),
        );
    }
    if tc.service_name.trim().is_empty() {
        errors.push(tr.field("service_name").error("must not be empty"));
    }
    if tc.export_interval.get().is_zero() {
        errors.push(
            tr.field("export_interval")
                .error("must be greater than zero"),
        );
    }
    let an = path.field("analytics");
    if t.analytics.max_entries == 0 {
        errors.push(an.field("max_entries").error("must be at least 1"));
    }
    if t.analytics.retention_days == 0 {
        errors.push(an.field("retention_days").error("must be at least 1"));
    }
    for (i, name) in t.latency_headers.routes.iter().enumerate() {
        if !route_names.iter().any(|r| r == name) {
            errors.push(
                path.field("latency_headers")
                    .field("routes")
                    .index(i)
                    .error(format!("unknown route {name:?}")),
            );
        }
    }
    errors
}

/// `http://host:port` or `https://host:port` (OTLP/gRPC).
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| format!("{endpoint:?} is not a URL (e.g. http://127.0.0.1:4317)"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!(
            "{endpoint:?}: write the OTLP/gRPC endpoint as http://host:port"
        )),
    }
}

/// The compiled form of a validated section.
pub fn compile(t: &TelemetryConfig) -> TelemetrySpec {
    let a = &t.access_log;
    let access_log = a.enabled.then(|| AccessLogSpec {
        path: (a.path != ACCESS_LOG_STDOUT).then(|| a.path.clone().into()),
        include_query: a.include_query,
        headers: a
            .headers
            .iter()
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .collect(),
        redact: ALWAYS_REDACTED_HEADERS
            .iter()
            .map(|h| h.to_string())
            .chain(a.redact.iter().map(|r| r.trim().to_ascii_lowercase()))
            .collect(),
        buffer: a.buffer,
    });
    let tc = &t.tracing;
    let tracing = tc.otlp_endpoint.as_ref().map(|endpoint| TracingSpec {
        otlp_endpoint: endpoint.clone(),
        service_name: tc.service_name.clone(),
        sample_ratio: tc.sample_ratio,
        export_interval: tc.export_interval.get(),
    });
    let analytics = t.analytics.enabled.then_some(AnalyticsSpec {
        max_entries: t.analytics.max_entries,
        retention_days: t.analytics.retention_days,
    });
    TelemetrySpec {
        metrics: t.metrics.enabled,
        access_log,
        tracing,
        analytics,
        latency_headers: t.latency_headers.clone(),
    }
}

#[cfg(test)]
mod tests;
