//! `/metrics`: counters and histograms move as requests flow (errors included), state survives
//! reloads, and `promtool check metrics` accepts a live scrape.

use support::prometheus::{Scrape, promtool};
use support::{BOTH, Backend, Proto, TestClient, TestNode, eventually};

fn config(backend: &Backend, dead: std::net::SocketAddr, extra_route: &str) -> String {
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ name: hello, match: {{ paths: ["/hello"] }}, respond: {{ body: "hi\n" }} }}
  - {{ name: api, match: {{ paths: ["/api/*"] }}, proxy: {{ upstream: b, strip_prefix: /api }} }}
  - {{ name: dead, match: {{ paths: ["/dead"] }}, proxy: {{ upstream: dead }} }}
{extra_route}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}
  - {{ name: dead, targets: [{{ address: "{dead}" }}] }}
"#,
        backend.addr()
    )
}

/// A loopback port that refuses connections (held for the rest of the test process).
fn dead_port() -> std::net::SocketAddr {
    Box::leak(Box::new(support::net::RefusingPort::new())).addr
}

/// Scrape until `done` holds for the scrape (see `eventually`).
async fn scrape_when(node: &TestNode, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let admin = node.admin();
    eventually(what, || async {
        let s = Scrape::fetch(admin).await;
        done(&s).then_some(s)
    })
    .await
}

const REQUESTS: &str = "meshgate_requests_total";

#[tokio::test]
async fn counters_and_histograms_move_with_traffic_and_errors() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(&backend, dead_port(), "")).await;
    let before = Scrape::fetch(node.admin()).await;
    assert_eq!(
        before.sum(REQUESTS, &[]),
        0.0,
        "nothing counted before traffic"
    );
    for proto in BOTH {
        let c = node.client(proto, "main");
        for _ in 0..3 {
            assert_eq!(c.get("/hello").await.status, 200);
        }
        for _ in 0..2 {
            let r = c.get("/api/stream/100000").await;
            assert_eq!((r.status.as_u16(), r.body.len()), (200, 100_000));
        }
        assert_eq!(c.get("/nowhere").await.status, 404);
        assert_eq!(c.get("/dead").await.status, 502);
        let r = c
            .send(
                c.request(http::Method::POST, "/api/upload")
                    .body(support::client::body(vec![b'x'; 1000]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.text(), "1000");
    }
    let s = scrape_when(&node, "16 requests counted", |s| {
        s.sum(REQUESTS, &[]) == 16.0
    })
    .await;
    let hello = [("route", "hello"), ("upstream", "-")];
    let api = [("route", "api"), ("upstream", "b")];
    assert_eq!(
        s.value(
            REQUESTS,
            &[
                hello[0],
                hello[1],
                ("method", "GET"),
                ("status_class", "2xx")
            ]
        ),
        6.0
    );
    assert_eq!(
        s.value(
            REQUESTS,
            &[("route", "-"), ("upstream", "-"), ("status_class", "4xx")]
        ),
        2.0,
        "an unmatched request is counted under route \"-\""
    );
    assert_eq!(
        s.value(
            REQUESTS,
            &[
                ("route", "dead"),
                ("upstream", "dead"),
                ("status_class", "5xx")
            ]
        ),
        2.0
    );
    assert_eq!(
        s.value(
            REQUESTS,
            &[api[0], ("method", "POST"), ("status_class", "2xx")]
        ),
        2.0
    );
    // Histograms: every request has a total and a gateway time; only proxied ones an
    // upstream time (a refused connect still took upstream time).
    let count = |name: &str, route: &str| s.value(name, &[("route", route)]);
    assert_eq!(count("meshgate_request_duration_seconds_count", "api"), 6.0);
    assert_eq!(
        count("meshgate_gateway_duration_seconds_count", "hello"),
        6.0
    );
    assert_eq!(
        count("meshgate_upstream_duration_seconds_count", "hello"),
        0.0
    );
    assert_eq!(
        count("meshgate_upstream_duration_seconds_count", "api"),
        6.0
    );
    assert_eq!(
        count("meshgate_upstream_duration_seconds_count", "dead"),
        2.0
    );
    let inf = s.value(
        "meshgate_request_duration_seconds_bucket",
        &[api[0], ("le", "+Inf")],
    );
    let ten = s.value(
        "meshgate_request_duration_seconds_bucket",
        &[api[0], ("le", "10")],
    );
    assert_eq!((inf, ten), (6.0, 6.0), "buckets are cumulative");
    assert!(s.value("meshgate_request_duration_seconds_sum", &[api[0]]) > 0.0);
    assert_eq!(
        s.value("meshgate_response_bytes_total", &api),
        4.0 * 100_000.0 + 2.0 * 4.0,
        "streamed bodies counted to their end (+ two \"1000\" answers)"
    );
    assert_eq!(s.value("meshgate_response_bytes_total", &hello), 18.0);
    assert_eq!(s.value("meshgate_request_bytes_total", &api), 2000.0);
    assert!(s.value("meshgate_connections_total", &[("listener", "main")]) >= 2.0);
    assert_eq!(
        s.value("meshgate_upstream_endpoints", &[("upstream", "b")]),
        1.0
    );
    assert_eq!(
        s.value("meshgate_upstream_endpoints_healthy", &[("upstream", "b")]),
        1.0
    );
    assert_eq!(
        s.value("meshgate_upstream_in_flight", &[("upstream", "b")]),
        0.0
    );
    assert_eq!(s.value("meshgate_config_generation", &[]), 1.0);
    assert_eq!(
        s.value(
            "meshgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[tokio::test]
async fn connections_are_counted_while_open() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(&backend, dead_port(), "")).await;
    let c = node.client(Proto::Http1, "main");
    c.get("/hello").await;
    // The pooled client keeps its connection open.
    let s = Scrape::fetch(node.admin()).await;
    assert_eq!(
        s.value("meshgate_connections_active", &[("listener", "main")]),
        1.0
    );
    drop(c);
    scrape_when(&node, "the connection counted closed", |s| {
        s.value("meshgate_connections_active", &[("listener", "main")]) == 0.0
    })
    .await;
}

#[tokio::test]
async fn state_survives_reloads_and_reloads_are_counted() {
    let backend = Backend::start("b").await;
    let dead = dead_port();
    let node = TestNode::start(&config(&backend, dead, "")).await;
    let c = node.client(Proto::Http1, "main");
    for _ in 0..4 {
        c.get("/hello").await;
    }
    let extra = r#"  - { name: new, match: { paths: ["/new"] }, respond: { status: 201 } }"#;
    let event = node.rewrite_config(&config(&backend, dead, extra)).await;
    assert_eq!(event.result, Ok(()));
    c.get("/hello").await;
    c.get("/new").await;
    let broken = config(&backend, dead, extra).replace("upstream: b,", "upstream: nope,");
    assert!(node.rewrite_config(&broken).await.result.is_err());
    let s = scrape_when(&node, "6 requests counted", |s| s.sum(REQUESTS, &[]) == 6.0).await;
    assert_eq!(
        s.value(REQUESTS, &[("route", "hello")]),
        5.0,
        "the route's counter carried across the reload"
    );
    assert_eq!(
        s.value(REQUESTS, &[("route", "new"), ("status_class", "2xx")]),
        1.0
    );
    assert_eq!(s.value("meshgate_config_generation", &[]), 2.0);
    assert_eq!(
        s.value("meshgate_config_reloads_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        s.value("meshgate_config_reloads_total", &[("result", "failure")]),
        1.0
    );
}

#[tokio::test]
async fn promtool_accepts_a_live_scrape() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(&backend, dead_port(), "")).await;
    let c = node.client(Proto::Http1, "main");
    for path in ["/hello", "/api/hello", "/nowhere", "/dead"] {
        c.get(path).await;
    }
    let s = scrape_when(&node, "4 requests counted", |s| s.sum(REQUESTS, &[]) == 4.0).await;
    let (ok, output) = promtool(&["check", "metrics"], Some(&s.text)).await;
    assert!(
        ok,
        "promtool check metrics failed:\n{output}\n--- scrape ---\n{}",
        s.text
    );
    assert!(
        output.trim().is_empty(),
        "promtool reported lint problems:\n{output}"
    );
}

#[tokio::test]
async fn disabled_metrics_answer_404_and_record_nothing() {
    let backend = Backend::start("b").await;
    let yaml = format!(
        "{}\ntelemetry:\n  metrics: {{ enabled: false }}\n",
        config(&backend, dead_port(), "")
    );
    let node = TestNode::start(&yaml).await;
    node.client(Proto::Http1, "main").get("/hello").await;
    let admin = TestClient::new(Proto::Http1, node.admin());
    let r = admin.get("/metrics").await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    let r = admin.get("/analytics/usage").await;
    assert_eq!(r.status, 404, "analytics are off by default");
}
