use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Uri};
use meshgate_config::telemetry::{ALWAYS_REDACTED_HEADERS, AccessLogSpec};

use super::*;

fn spec(include_query: bool) -> AccessLogSpec {
    AccessLogSpec {
        path: None,
        include_query,
        headers: vec![
            HeaderName::from_static("authorization"),
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-version"),
        ],
        redact: ALWAYS_REDACTED_HEADERS
            .iter()
            .map(|s| s.to_string())
            .chain(["x-api-key".to_string(), "token".to_string()])
            .collect(),
        buffer: 8,
    }
}

fn record() -> FinishedRequest {
    FinishedRequest {
        time: std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        request_id: HeaderValue::from_static("req-1"),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        method: Method::POST,
        uri: Uri::from_static("/users/7?token=s3cret&page=2&%74oken=x"),
        status: 201,
        bytes_in: 5,
        bytes_out: 17,
        total: Duration::from_micros(2500),
        upstream_time: Some(Duration::from_micros(1800)),
        gateway_time: Duration::from_micros(400),
        route: Arc::from("users"),
        upstream: Some(Arc::from("users-svc")),
        endpoint: Some(SocketAddr::from(([10, 0, 0, 5], 8080))),
        consumer: None,
        user_agent: Some(HeaderValue::from_static("curl/8")),
        tls_version: None,
        listener: Arc::from("main"),
        trace_id: None,
        headers: vec![
            (
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer abc"),
            ),
            (
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_static("k-123"),
            ),
            (
                HeaderName::from_static("x-version"),
                HeaderValue::from_static("2"),
            ),
        ],
        aborted: false,
    }
}

#[test]
fn a_line_has_every_field_and_redacts_credentials() {
    let r = record();
    let line = serde_json::to_value(AccessLine::new(&r, &spec(true))).unwrap();
    assert_eq!(line["time"], "2023-11-14T22:13:20.123Z");
    assert_eq!(line["request_id"], "req-1");
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert_eq!(line["method"], "POST");
    assert_eq!(
        line["path"],
        "/users/7?token=[REDACTED]&page=2&%74oken=[REDACTED]"
    );
    assert_eq!(line["status"], 201);
    assert_eq!(line["bytes_in"], 5);
    assert_eq!(line["bytes_out"], 17);
    assert_eq!(line["duration_ms"], 2.5);
    assert_eq!(line["upstream_ms"], 1.8);
    assert_eq!(line["gateway_ms"], 0.4);
    assert_eq!(line["route"], "users");
    assert_eq!(line["upstream"], "users-svc");
    assert_eq!(line["upstream_endpoint"], "10.0.0.5:8080");
    assert!(line["consumer"].is_null());
    assert!(line["tls_version"].is_null());
    assert_eq!(line["user_agent"], "curl/8");
    assert_eq!(line["headers"]["authorization"], REDACTED);
    assert_eq!(line["headers"]["x-api-key"], REDACTED);
    assert_eq!(line["headers"]["x-version"], "2");
    let text = serde_json::to_string(&AccessLine::new(&r, &spec(true))).unwrap();
    for secret in ["Bearer abc", "k-123", "s3cret"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn the_query_is_left_out_unless_configured() {
    let r = record();
    let line = serde_json::to_value(AccessLine::new(&r, &spec(false))).unwrap();
    assert_eq!(line["path"], "/users/7");
}

#[test]
fn query_redaction_keeps_other_parameters_verbatim() {
    let redact = vec!["token".to_string()];
    assert_eq!(
        redact_query("a=1&token=x&b", &redact),
        "a=1&token=[REDACTED]&b"
    );
    assert_eq!(redact_query("TOKEN=x", &redact), "TOKEN=[REDACTED]");
    assert_eq!(redact_query("tok+en=x", &redact), "tok+en=x");
    assert_eq!(redact_query("token=", &redact), "token=");
}
