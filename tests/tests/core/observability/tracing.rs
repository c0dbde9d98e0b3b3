//! Tracing: with tracing off, trace headers pass through untouched; with an OTLP endpoint,
//! one request through a gateway and a sidecar (two real processes) arrives at a test OTLP
//! receiver as one trace: a server span per hop with routing, filters and upstream children,
//! each hop's server span the child of the previous hop's upstream span.

use std::path::Path;
use std::time::Duration;

use support::otlp_receiver::{KIND_CLIENT, KIND_SERVER, OtlpReceiver, ReceivedSpan};
use support::{BOTH, Backend, NodeProcess, Proto, TestClient, TestNode};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn without_tracing_trace_headers_pass_through_unchanged() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ name: all, match: {{ paths: ["/*"] }}, proxy: {{ upstream: b }} }}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}
"#,
        backend.addr()
    ))
    .await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    for proto in BOTH {
        let seen = node
            .client(proto, "main")
            .get_with(
                "/echo",
                &[("traceparent", &traceparent), ("tracestate", "vendor=abc")],
            )
            .await
            .json();
        assert_eq!(seen["headers"]["traceparent"], traceparent.as_str());
        assert_eq!(seen["headers"]["tracestate"], "vendor=abc");
    }
}

fn write(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

fn tracing_section(receiver: &OtlpReceiver, service: &str) -> String {
    format!(
        "telemetry:\n  tracing: {{ otlp_endpoint: \"{}\", service_name: {service}, export_interval: 100ms }}\n",
        receiver.endpoint()
    )
}

/// The one span of `service` named `name`.
fn span<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{service}/{name} in {spans:#?}");
    found[0]
}

#[tokio::test]
async fn one_trace_spans_gateway_and_sidecar() {
    let receiver = OtlpReceiver::start().await;
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar_config = write(
        dir.path(),
        "sidecar.yaml",
        &format!(
            r#"
mode: sidecar
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - {{ name: inbound, address: "127.0.0.1:0" }}
routes:
  - {{ name: local, match: {{ paths: ["/*"] }}, proxy: {{ upstream: app }} }}
upstreams:
  - {{ name: app, targets: [{{ address: "{}" }}] }}
{}"#,
            backend.addr(),
            tracing_section(&receiver, "sidecar")
        ),
    );
    let mut sidecar = NodeProcess::spawn(&sidecar_config).await;
    let gateway_config = write(
        dir.path(),
        "gateway.yaml",
        &format!(
            r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - {{ name: edge, address: "127.0.0.1:0" }}
routes:
  - {{ name: api, match: {{ paths: ["/api/*"] }}, proxy: {{ upstream: sidecar, strip_prefix: /api }} }}
upstreams:
  - {{ name: sidecar, targets: [{{ address: "{}" }}] }}
{}"#,
            sidecar.addr("inbound"),
            tracing_section(&receiver, "edge")
        ),
    );
    let mut gateway = NodeProcess::spawn(&gateway_config).await;

    let client = TestClient::new(Proto::Http1, gateway.addr("edge"));
    let seen = client
        .get_with(
            "/api/echo/orders",
            &[
                ("traceparent", &format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")),
                ("tracestate", "vendor=abc"),
            ],
        )
        .await
        .json();
    let spans = receiver.wait_for_spans(8).await;

    assert!(
        spans.iter().all(|s| s.trace_id == TRACE_ID),
        "one trace id across both hops: {spans:#?}"
    );
    let edge = span(&spans, "edge", "GET api");
    assert_eq!(edge.kind, KIND_SERVER);
    assert_eq!(
        edge.parent_span_id, CLIENT_SPAN,
        "the client's span is the parent"
    );
    assert_eq!(edge.attributes["http.route"], "api");
    assert_eq!(edge.attributes["http.response.status_code"], "200");
    for child in ["routing", "filters"] {
        assert_eq!(span(&spans, "edge", child).parent_span_id, edge.span_id);
    }
    let edge_call = span(&spans, "edge", "upstream");
    assert_eq!(edge_call.kind, KIND_CLIENT);
    assert_eq!(edge_call.parent_span_id, edge.span_id);
    assert_eq!(edge_call.attributes["meshgate.upstream"], "sidecar");

    let side = span(&spans, "sidecar", "GET local");
    assert_eq!(side.kind, KIND_SERVER);
    assert_eq!(
        side.parent_span_id, edge_call.span_id,
        "the sidecar continues the gateway's upstream call"
    );
    for child in ["routing", "filters"] {
        assert_eq!(span(&spans, "sidecar", child).parent_span_id, side.span_id);
    }
    let side_call = span(&spans, "sidecar", "upstream");
    assert_eq!(side_call.parent_span_id, side.span_id);

    // The application behind the sidecar sees the sidecar's call as its parent, and the
    // vendor state travels along.
    assert_eq!(
        seen["headers"]["traceparent"],
        format!("00-{TRACE_ID}-{}-01", side_call.span_id)
    );
    assert_eq!(seen["headers"]["tracestate"], "vendor=abc");

    drop(client);
    for node in [&mut gateway, &mut sidecar] {
        node.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(node.wait(Duration::from_secs(5)).await.success());
    }
    assert_eq!(receiver.spans().len(), 8, "one request, eight spans");
}
