//! Validation of the resilience settings: ranges, orderings and HTTP syntax, each problem with
//! its field path (`upstreams[0].health_check.interval: must be greater than zero`).

use std::time::Duration;

use super::{
    CircuitBreakerConfig, FallbackConfig, HealthCheckConfig, HealthCheckKind, LimitsConfig,
    MAX_RETRY_ATTEMPTS, OutlierDetectionConfig, RetryConfig,
};
use crate::duration::HumanDuration;
use crate::error::{ConfigError, FieldPath};
use crate::model::UpstreamConfig;

/// Largest consecutive-count threshold accepted anywhere (a typo guard, not a design limit).
const MAX_THRESHOLD: u32 = 10_000;

/// Check an upstream's `health_check`, `outlier_detection`, `circuit_breaker`, `limits`,
/// `fallback` and `panic_threshold`.
pub(crate) fn upstream(u: &UpstreamConfig, path: &FieldPath, errors: &mut Vec<ConfigError>) {
    let mut c = Checker { errors };
    if let Some(h) = &u.health_check {
        c.health_check(h, &path.field("health_check"));
    }
    c.outlier(&u.outlier_detection, &path.field("outlier_detection"));
    c.breaker(&u.circuit_breaker, &path.field("circuit_breaker"));
    c.limits(&u.limits, &path.field("limits"));
    if let Some(f) = &u.fallback {
        c.fallback(f, &path.field("fallback"));
    }
    c.percent(u.panic_threshold, &path.field("panic_threshold"));
}

/// Check a route's `proxy.retry`.
pub(crate) fn retry(r: &RetryConfig, path: &FieldPath, errors: &mut Vec<ConfigError>) {
    let mut c = Checker { errors };
    if r.attempts > MAX_RETRY_ATTEMPTS {
        c.push(path.field("attempts").error(format!(
            "{} is out of range 0..={MAX_RETRY_ATTEMPTS}",
            r.attempts
        )));
    }
    for (i, status) in r.statuses.iter().enumerate() {
        if !(400..=599).contains(status) {
            c.push(
                path.field("statuses")
                    .index(i)
                    .error(format!("{status} is out of range 400..=599")),
            );
        }
    }
    for (i, on) in r.on.iter().enumerate() {
        if r.on[..i].contains(on) {
            c.push(path.field("on").index(i).error("listed twice"));
        }
    }
    if let Some(t) = r.per_try_timeout {
        c.positive(t, &path.field("per_try_timeout"));
    }
    let backoff = path.field("backoff");
    c.positive(r.backoff.base, &backoff.field("base"));
    if r.backoff.max < r.backoff.base {
        c.push(backoff.field("max").error(format!(
            "{} is shorter than backoff.base ({})",
            r.backoff.max, r.backoff.base
        )));
    }
}

struct Checker<'a> {
    errors: &'a mut Vec<ConfigError>,
}

impl Checker<'_> {
    fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    fn positive(&mut self, d: HumanDuration, path: &FieldPath) {
        if d.get().is_zero() {
            self.push(path.error("must be greater than zero"));
        }
    }

    fn percent(&mut self, value: u32, path: &FieldPath) {
        if value > 100 {
            self.push(path.error(format!("{value} is out of range 0..=100 (percent)")));
        }
    }

    fn threshold(&mut self, value: u32, min: u32, path: &FieldPath) {
        if !(min..=MAX_THRESHOLD).contains(&value) {
            self.push(path.error(format!("{value} is out of range {min}..={MAX_THRESHOLD}")));
        }
    }

    fn health_check(&mut self, h: &HealthCheckConfig, path: &FieldPath) {
        self.positive(h.interval, &path.field("interval"));
        self.positive(h.timeout, &path.field("timeout"));
        self.threshold(h.unhealthy_threshold, 1, &path.field("unhealthy_threshold"));
        self.threshold(h.healthy_threshold, 1, &path.field("healthy_threshold"));
        self.percent(h.jitter_percent, &path.field("jitter_percent"));
        if h.kind == HealthCheckKind::Tcp {
            let http_only = [
                ("path", h.path.is_some()),
                ("method", h.method.is_some()),
                ("host", h.host.is_some()),
                ("expected_statuses", h.expected_statuses.is_some()),
            ];
            for (field, set) in http_only {
                if set {
                    self.push(
                        path.field(field)
                            .error("only HTTP health checks take this (type is tcp)"),
                    );
                }
            }
            return;
        }
        if let Some(p) = &h.path
            && (!p.starts_with('/') || http::uri::PathAndQuery::try_from(p.as_str()).is_err())
        {
            self.push(
                path.field("path")
                    .error(format!("{p:?} must be a path starting with '/'")),
            );
        }
        if let Some(m) = &h.method
            && (m.is_empty()
                || m.bytes().any(|b| b.is_ascii_lowercase())
                || http::Method::from_bytes(m.as_bytes()).is_err())
        {
            self.push(path.field("method").error(format!(
                "{m:?} is not an HTTP method (write it in capitals)"
            )));
        }
        if let Some(host) = &h.host
            && (host.is_empty() || http::HeaderValue::from_str(host).is_err())
        {
            self.push(
                path.field("host")
                    .error(format!("{host:?} is not a valid Host header value")),
            );
        }
        if let Some(statuses) = &h.expected_statuses {
            if statuses.is_empty() {
                self.push(
                    path.field("expected_statuses")
                        .error("must list at least one status"),
                );
            }
            for (i, s) in statuses.iter().enumerate() {
                if !(100..=599).contains(s) {
                    self.push(
                        path.field("expected_statuses")
                            .index(i)
                            .error(format!("{s} is out of range 100..=599")),
                    );
                }
            }
        }
    }

    fn outlier(&mut self, o: &OutlierDetectionConfig, path: &FieldPath) {
        if !o.enabled {
            return;
        }
        self.threshold(
            o.consecutive_failures,
            1,
            &path.field("consecutive_failures"),
        );
        self.positive(o.base_ejection_time, &path.field("base_ejection_time"));
        if o.max_ejection_time < o.base_ejection_time {
            self.push(path.field("max_ejection_time").error(format!(
                "{} is shorter than base_ejection_time ({})",
                o.max_ejection_time, o.base_ejection_time
            )));
        }
        self.percent(o.max_ejection_percent, &path.field("max_ejection_percent"));
        self.positive(o.interval, &path.field("interval"));
    }

    fn breaker(&mut self, b: &CircuitBreakerConfig, path: &FieldPath) {
        if !b.enabled {
            return;
        }
        self.threshold(
            b.consecutive_failures,
            0,
            &path.field("consecutive_failures"),
        );
        self.percent(b.failure_rate, &path.field("failure_rate"));
        if b.consecutive_failures == 0 && b.failure_rate == 0 {
            self.push(path.error(
                "consecutive_failures and failure_rate are both 0: nothing would open the circuit (set enabled: false instead)",
            ));
        }
        self.positive(b.window, &path.field("window"));
        if b.window.get() > Duration::from_secs(3600) {
            self.push(path.field("window").error("must be at most 1h"));
        }
        self.threshold(b.minimum_requests, 1, &path.field("minimum_requests"));
        self.positive(b.open_for, &path.field("open_for"));
        self.threshold(b.half_open_requests, 1, &path.field("half_open_requests"));
    }

    fn limits(&mut self, l: &LimitsConfig, path: &FieldPath) {
        for (field, value) in [
            ("max_connections", l.max_connections),
            ("max_requests", l.max_requests),
        ] {
            if value == 0 {
                self.push(path.field(field).error("must be at least 1"));
            }
        }
        if let Some(0) = l.max_retries {
            self.push(path.field("max_retries").error(
                "must be at least 1 (set the route's retry.attempts to 0 to turn retries off)",
            ));
        }
        self.percent(
            l.retry_budget.percent,
            &path.field("retry_budget").field("percent"),
        );
    }

    fn fallback(&mut self, f: &FallbackConfig, path: &FieldPath) {
        if !(200..=599).contains(&f.status) {
            self.push(
                path.field("status")
                    .error(format!("{} is out of range 200..=599", f.status)),
            );
        }
        for (name, value) in &f.headers {
            let p = path.field("headers").field(name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.push(p.error("not a valid header name"));
            } else if http::HeaderValue::from_str(value).is_err() {
                self.push(p.error(format!("{value:?} is not a valid header value")));
            }
        }
    }
}
