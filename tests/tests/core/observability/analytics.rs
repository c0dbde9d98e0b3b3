//! Usage analytics at `/analytics/usage` (JSON and CSV) and the latency headers.

use std::time::SystemTime;

use meshgate::telemetry::analytics::{day_of, format_day};
use serde_json::Value;
use support::{BOTH, Backend, Proto, TestClient, TestNode, eventually};

fn config(backend: &Backend) -> String {
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ name: ok, match: {{ paths: ["/ok"] }}, respond: {{ body: "ok" }} }}
  - {{ name: gone, match: {{ paths: ["/gone"] }}, respond: {{ status: 410 }} }}
  - {{ name: api, match: {{ paths: ["/api/*"] }}, proxy: {{ upstream: b, strip_prefix: /api }} }}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}
telemetry:
  analytics: {{ enabled: true }}
  latency_headers: {{ routes: [api, ok] }}
"#,
        backend.addr()
    )
}

fn row<'a>(report: &'a Value, route: &str, class: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route && r["status_class"] == class)
        .unwrap_or_else(|| panic!("no row for {route} {class}: {report}"))
}

#[tokio::test]
async fn usage_totals_equal_the_requests_sent() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(&backend)).await;
    let mut sent = 0;
    for proto in BOTH {
        let c = node.client(proto, "main");
        for (path, times) in [("/ok", 5), ("/gone", 3), ("/api/hello", 2), ("/nowhere", 1)] {
            for _ in 0..times {
                c.get(path).await;
                sent += 1;
            }
        }
    }
    let admin = TestClient::new(Proto::Http1, node.admin());
    let report = eventually("every request in the usage report", || async {
        let r = admin.get("/analytics/usage").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let report = r.json();
        (report["totals"]["requests"] == sent).then_some(report)
    })
    .await;
    assert_eq!(sent, 22);
    assert_eq!(row(&report, "ok", "2xx")["requests"], 10);
    assert_eq!(row(&report, "ok", "2xx")["bytes_out"], 20);
    assert_eq!(row(&report, "gone", "4xx")["requests"], 6);
    assert_eq!(row(&report, "api", "2xx")["requests"], 4);
    assert_eq!(row(&report, "-", "4xx")["requests"], 2);
    let today = format_day(day_of(SystemTime::now()));
    for r in report["rows"].as_array().unwrap() {
        assert_eq!(r["day"], today.as_str());
        assert!(r["consumer"].is_null(), "no authentication yet: {r}");
        assert!(r["latency_ms_sum"].as_f64().unwrap() > 0.0);
    }

    // The same report as CSV (by parameter and by Accept), and filtered by day.
    let csv = admin
        .get(&format!(
            "/analytics/usage?format=csv&from={today}&to={today}"
        ))
        .await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = csv.text();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("day,consumer,route,status_class,requests,bytes_in,bytes_out,latency_ms_sum")
    );
    let requests: u64 = lines
        .map(|l| l.split(',').nth(4).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(requests, sent);
    let by_accept = admin
        .get_with("/analytics/usage", &[("accept", "text/csv")])
        .await;
    assert_eq!(by_accept.text().lines().count(), text.lines().count());
    let later = admin.get("/analytics/usage?from=2999-01-01").await;
    assert_eq!(later.json()["totals"]["requests"], 0);
    let other = admin.get("/analytics/usage?consumer=acme").await;
    assert_eq!(other.json()["rows"], serde_json::json!([]));
    let bad = admin.get("/analytics/usage?from=yesterday").await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("YYYY-MM-DD")
    );
}

#[tokio::test]
async fn latency_headers_appear_on_configured_routes_only() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(&backend)).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let proxied = c.get("/api/hello").await;
        let upstream: u64 = proxied
            .header("x-upstream-latency")
            .unwrap()
            .parse()
            .unwrap();
        let gateway: u64 = proxied
            .header("x-gateway-latency")
            .unwrap()
            .parse()
            .unwrap();
        assert!(upstream < 10_000 && gateway < 10_000);
        let direct = c.get("/ok").await;
        assert!(
            direct.header("x-upstream-latency").is_none(),
            "no upstream was called"
        );
        assert!(direct.header("x-gateway-latency").is_some());
        let unlisted = c.get("/gone").await;
        assert!(unlisted.header("x-gateway-latency").is_none());
        assert!(unlisted.header("x-upstream-latency").is_none());
    }
}
