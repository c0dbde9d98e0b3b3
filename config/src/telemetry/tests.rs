use super::*;
use crate::load::{Format, parse_with_env};

fn problems(text: &str) -> Vec<String> {
    match parse_with_env(text, Format::Yaml, "t", &|_| None) {
        Ok(_) => vec![],
        Err(e) => e
            .problems()
            .map(|p| p.iter().map(|e| e.to_string()).collect())
            .unwrap_or_else(|| vec![e.to_string()]),
    }
}

#[test]
fn defaults_turn_metrics_on_and_the_rest_off() {
    let spec = TelemetrySpec::default();
    assert!(spec.metrics);
    assert!(spec.access_log.is_none());
    assert!(spec.tracing.is_none());
    assert!(spec.analytics.is_none());
    assert!(!spec.latency_headers_on("any"));
}

#[test]
fn a_full_section_compiles() {
    let text = r#"
routes:
  - { name: users, match: { paths: ["/u"] }, respond: {} }
  - { match: { paths: ["/x"] }, respond: {} }
telemetry:
  metrics: { enabled: false }
  access_log:
    enabled: true
    path: /var/log/meshgate/access.log
    include_query: true
    headers: [X-Api-Version]
    redact: [" Token "]
    buffer: 16
  tracing:
    otlp_endpoint: http://127.0.0.1:4317
    service_name: edge
    sample_ratio: 0.25
    export_interval: 200ms
  analytics: { enabled: true, max_entries: 10, retention_days: 2 }
  latency_headers: { routes: [users, route-1] }
"#;
    let config = parse_with_env(text, Format::Yaml, "t", &|_| None).unwrap();
    let spec = crate::compile(&config).unwrap().telemetry;
    assert!(!spec.metrics);
    let log = spec.access_log.clone().unwrap();
    assert_eq!(
        log.path.unwrap().to_str(),
        Some("/var/log/meshgate/access.log")
    );
    assert_eq!(log.headers, vec![HeaderName::from_static("x-api-version")]);
    assert!(log.redact.iter().any(|r| r == "authorization"));
    assert!(log.redact.iter().any(|r| r == "token"));
    let tracing = spec.tracing.clone().unwrap();
    assert_eq!(tracing.sample_ratio, 0.25);
    assert_eq!(tracing.export_interval, Duration::from_millis(200));
    assert_eq!(spec.analytics.as_ref().unwrap().max_entries, 10);
    assert!(spec.latency_headers_on("users") && spec.latency_headers_on("route-1"));
    assert!(!TelemetrySpec::default().latency_headers_on("users"));
}

#[test]
fn each_bad_field_reports_its_path() {
    let cases: &[(&str, &str)] = &[
        (
            "telemetry: {access_log: {buffer: 0}}",
            "telemetry.access_log.buffer",
        ),
        (
            "telemetry: {access_log: {path: ''}}",
            "telemetry.access_log.path",
        ),
        (
            "telemetry: {access_log: {headers: ['a b']}}",
            "telemetry.access_log.headers[0]",
        ),
        (
            "telemetry: {access_log: {redact: ['']}}",
            "telemetry.access_log.redact[0]",
        ),
        (
            "telemetry: {tracing: {otlp_endpoint: 'localhost'}}",
            "telemetry.tracing.otlp_endpoint",
        ),
        (
            "telemetry: {tracing: {sample_ratio: 1.5}}",
            "telemetry.tracing.sample_ratio",
        ),
        (
            "telemetry: {tracing: {export_interval: 0s}}",
            "telemetry.tracing.export_interval",
        ),
        (
            "telemetry: {analytics: {max_entries: 0}}",
            "telemetry.analytics.max_entries",
        ),
        (
            "telemetry: {analytics: {retention_days: 0}}",
            "telemetry.analytics.retention_days",
        ),
        (
            "telemetry: {latency_headers: {routes: [nope]}}",
            "telemetry.latency_headers.routes[0]",
        ),
        ("telemetry: {metrics: {on: true}}", "telemetry.metrics.on"),
    ];
    for (text, path) in cases {
        let found = problems(text);
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{text}: expected a problem at {path}, got {found:?}"
        );
    }
}
