use std::time::Duration;

use http::{Method, StatusCode};

use super::*;
use crate::compile::{CompiledConfig, RouteAction, compile};
use crate::load::{Format, parse_with_env};

fn compiled(text: &str) -> CompiledConfig {
    let config = parse_with_env(text, Format::Yaml, "t", &|_| None).unwrap();
    compile(&config).unwrap()
}

fn errors_of(text: &str) -> Vec<String> {
    match parse_with_env(text, Format::Yaml, "t", &|_| None) {
        Ok(_) => vec![],
        Err(e) => e
            .problems()
            .map(|p| p.iter().map(|e| e.to_string()).collect())
            .unwrap_or_else(|| vec![e.to_string()]),
    }
}

fn retry_of(c: &CompiledConfig, route: usize) -> &RetrySpec {
    match &c.routes[route].action {
        RouteAction::Proxy(p) => &p.retry,
        other => panic!("{other:?}"),
    }
}

const MINIMAL: &str =
    "routes: [{proxy: {upstream: u}}]\nupstreams: [{name: u, targets: [{address: '127.0.0.1:1'}]}]";

#[test]
fn absent_sections_take_the_documented_defaults() {
    let c = compiled(MINIMAL);
    let r = &c.upstreams[0].resilience;
    assert_eq!(*r, UpstreamResilience::default());
    assert!(r.health_check.is_none());
    let outlier = r.outlier.as_ref().unwrap();
    assert_eq!(outlier.consecutive_failures, 5);
    assert_eq!(outlier.base_ejection_time, Duration::from_secs(30));
    let breaker = r.breaker.as_ref().unwrap();
    assert_eq!(breaker.consecutive_failures, 10);
    assert_eq!(breaker.failure_rate, 50);
    assert_eq!(breaker.open_for, Duration::from_secs(30));
    assert_eq!(breaker.half_open_requests, 1);
    assert_eq!(r.limits.max_connections, 1024);
    assert_eq!(r.limits.retry_budget.percent, 20);
    assert_eq!(r.limits.retry_budget.min_concurrency, 3);
    assert_eq!(r.panic_threshold, 50);
    let retry = retry_of(&c, 0);
    assert_eq!(retry.attempts, 1);
    assert!(retry.on_connect_failure && retry.on_reset && !retry.on_timeout);
    assert!(retry.statuses.is_empty());
    assert_eq!(retry.max_body, 64 * 1024);
}

#[test]
fn every_field_compiles() {
    let c = compiled(
        r#"
routes:
  - proxy:
      upstream: u
      retry:
        attempts: 3
        on: [connect_failure, timeout]
        statuses: [502, 503]
        per_try_timeout: 200ms
        non_idempotent: true
        backoff: { base: 10ms, max: 1s }
        max_body: 1024
upstreams:
  - name: u
    targets: [{ address: "127.0.0.1:1" }]
    health_check:
      path: /healthz
      method: HEAD
      host: health.internal
      expected_statuses: [200, 204]
      interval: 2s
      timeout: 500ms
      unhealthy_threshold: 4
      healthy_threshold: 1
      jitter_percent: 0
    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1s, max_ejection_time: 3s, max_ejection_percent: 50, interval: 5s }
    circuit_breaker: { consecutive_failures: 0, failure_rate: 25, window: 5s, minimum_requests: 4, open_for: 2s, half_open_requests: 3 }
    limits: { max_connections: 8, max_pending_requests: 0, max_requests: 16, max_retries: 2, retry_budget: { percent: 50, min_concurrency: 1 } }
    fallback: { status: 200, headers: { content-type: application/json }, body: "{}" }
    panic_threshold: 0
  - name: t
    targets: [{ address: "127.0.0.1:2" }]
    health_check: { type: tcp }
    outlier_detection: { enabled: false }
    circuit_breaker: { enabled: false }
"#,
    );
    let retry = retry_of(&c, 0);
    assert_eq!(retry.attempts, 3);
    assert!(retry.on_connect_failure && !retry.on_reset && retry.on_timeout);
    assert!(retry.retries_status(StatusCode::BAD_GATEWAY));
    assert!(!retry.retries_status(StatusCode::GATEWAY_TIMEOUT));
    assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(200)));
    assert!(retry.non_idempotent);
    assert_eq!(retry.max_body, 1024);

    let r = &c.upstreams[0].resilience;
    let h = r.health_check.as_ref().unwrap();
    assert_eq!(
        h.probe,
        HealthProbe::Http {
            method: Method::HEAD,
            path: "/healthz".into(),
            host: Some(http::HeaderValue::from_static("health.internal")),
            expected_statuses: vec![200, 204],
        }
    );
    assert_eq!(
        (
            h.interval,
            h.timeout,
            h.unhealthy_threshold,
            h.healthy_threshold
        ),
        (Duration::from_secs(2), Duration::from_millis(500), 4, 1)
    );
    let o = r.outlier.as_ref().unwrap();
    assert_eq!(o.max_ejected(10), 5);
    let b = r.breaker.as_ref().unwrap();
    assert_eq!((b.consecutive_failures, b.failure_rate), (0, 25));
    assert_eq!(r.limits.max_pending_requests, 0);
    assert_eq!(
        r.limits.retries_allowed(100),
        2,
        "max_retries caps the budget"
    );
    let f = r.fallback.as_ref().unwrap();
    assert_eq!(f.status, StatusCode::OK);
    assert_eq!(f.headers["content-type"], "application/json");
    assert_eq!(&f.body[..], b"{}");
    assert_eq!(r.panic_threshold, 0);

    let t = &c.upstreams[1].resilience;
    assert_eq!(t.health_check.as_ref().unwrap().probe, HealthProbe::Tcp);
    assert!(t.outlier.is_none());
    assert!(t.breaker.is_none());
}

#[test]
fn each_bad_setting_reports_its_field_path() {
    let up = |extra: &str| {
        format!("upstreams: [{{name: u, targets: [{{address: '127.0.0.1:1'}}], {extra}}}]")
    };
    let route = |retry: &str| {
        format!(
            "routes: [{{proxy: {{upstream: u, retry: {retry}}}}}]\nupstreams: [{{name: u, targets: [{{address: '127.0.0.1:1'}}]}}]"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (
            up("health_check: {interval: 0s}"),
            "upstreams[0].health_check.interval",
        ),
        (
            up("health_check: {timeout: 0s}"),
            "upstreams[0].health_check.timeout",
        ),
        (
            up("health_check: {unhealthy_threshold: 0}"),
            "upstreams[0].health_check.unhealthy_threshold",
        ),
        (
            up("health_check: {healthy_threshold: 0}"),
            "upstreams[0].health_check.healthy_threshold",
        ),
        (
            up("health_check: {path: healthz}"),
            "upstreams[0].health_check.path",
        ),
        (
            up("health_check: {method: get}"),
            "upstreams[0].health_check.method",
        ),
        (
            up("health_check: {expected_statuses: [99]}"),
            "upstreams[0].health_check.expected_statuses[0]",
        ),
        (
            up("health_check: {expected_statuses: []}"),
            "upstreams[0].health_check.expected_statuses",
        ),
        (
            up("health_check: {type: tcp, path: /x}"),
            "upstreams[0].health_check.path",
        ),
        (
            up("health_check: {type: udp}"),
            "upstreams[0].health_check.type",
        ),
        (
            up("health_check: {jitter_percent: 101}"),
            "upstreams[0].health_check.jitter_percent",
        ),
        (
            up("health_check: {intervall: 1s}"),
            "upstreams[0].health_check.intervall",
        ),
        (
            up("outlier_detection: {consecutive_failures: 0}"),
            "upstreams[0].outlier_detection.consecutive_failures",
        ),
        (
            up("outlier_detection: {base_ejection_time: 10s, max_ejection_time: 5s}"),
            "upstreams[0].outlier_detection.max_ejection_time",
        ),
        (
            up("outlier_detection: {max_ejection_percent: 150}"),
            "upstreams[0].outlier_detection.max_ejection_percent",
        ),
        (
            up("circuit_breaker: {failure_rate: 101}"),
            "upstreams[0].circuit_breaker.failure_rate",
        ),
        (
            up("circuit_breaker: {consecutive_failures: 0, failure_rate: 0}"),
            "upstreams[0].circuit_breaker",
        ),
        (
            up("circuit_breaker: {open_for: 0s}"),
            "upstreams[0].circuit_breaker.open_for",
        ),
        (
            up("circuit_breaker: {half_open_requests: 0}"),
            "upstreams[0].circuit_breaker.half_open_requests",
        ),
        (
            up("circuit_breaker: {window: 0s}"),
            "upstreams[0].circuit_breaker.window",
        ),
        (
            up("limits: {max_connections: 0}"),
            "upstreams[0].limits.max_connections",
        ),
        (
            up("limits: {max_requests: 0}"),
            "upstreams[0].limits.max_requests",
        ),
        (
            up("limits: {max_retries: 0}"),
            "upstreams[0].limits.max_retries",
        ),
        (
            up("limits: {retry_budget: {percent: 200}}"),
            "upstreams[0].limits.retry_budget.percent",
        ),
        (up("fallback: {status: 99}"), "upstreams[0].fallback.status"),
        (
            up("fallback: {headers: {'bad name': x}}"),
            "upstreams[0].fallback.headers.bad name",
        ),
        (up("panic_threshold: 101"), "upstreams[0].panic_threshold"),
        (route("{attempts: 11}"), "routes[0].proxy.retry.attempts"),
        (
            route("{statuses: [200]}"),
            "routes[0].proxy.retry.statuses[0]",
        ),
        (route("{on: [reset, reset]}"), "routes[0].proxy.retry.on[1]"),
        (route("{on: [everything]}"), "routes[0].proxy.retry.on[0]"),
        (
            route("{per_try_timeout: 0s}"),
            "routes[0].proxy.retry.per_try_timeout",
        ),
        (
            route("{backoff: {base: 0s}}"),
            "routes[0].proxy.retry.backoff.base",
        ),
        (
            route("{backoff: {base: 1s, max: 10ms}}"),
            "routes[0].proxy.retry.backoff.max",
        ),
    ];
    for (text, path) in &cases {
        let errors = errors_of(text);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "config {text:?} should report {path}, got {errors:?}"
        );
    }
}

#[test]
fn disabled_sections_are_not_checked() {
    let errors = errors_of(
        "upstreams: [{name: u, targets: [{address: '127.0.0.1:1'}], outlier_detection: {enabled: false, consecutive_failures: 0}, circuit_breaker: {enabled: false, consecutive_failures: 0, failure_rate: 0}}]",
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn ejections_grow_with_each_one_up_to_the_cap() {
    let o = OutlierSpec {
        consecutive_failures: 5,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(100),
        max_ejection_percent: 10,
        interval: Duration::from_secs(10),
    };
    assert_eq!(o.ejection_time(1), Duration::from_secs(30));
    assert_eq!(o.ejection_time(2), Duration::from_secs(60));
    assert_eq!(o.ejection_time(4), Duration::from_secs(100));
    // Envoy: at least one endpoint may always be ejected, whatever the percentage.
    assert_eq!(o.max_ejected(3), 1);
    assert_eq!(o.max_ejected(30), 3);
}

#[test]
fn the_retry_budget_scales_with_active_requests() {
    let budget = RetryBudget {
        percent: 20,
        min_concurrency: 3,
    };
    assert_eq!(budget.allowed(0), 3);
    assert_eq!(budget.allowed(10), 3);
    assert_eq!(budget.allowed(20), 4);
    assert_eq!(budget.allowed(1000), 200);
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let r = RetrySpec::default();
    assert_eq!(r.backoff_ceiling(1), Duration::from_millis(25));
    assert_eq!(r.backoff_ceiling(2), Duration::from_millis(50));
    assert_eq!(r.backoff_ceiling(3), Duration::from_millis(100));
    assert_eq!(r.backoff_ceiling(10), Duration::from_millis(250));
}
