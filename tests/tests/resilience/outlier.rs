//! Outlier ejection: consecutive failures on one endpoint eject it for a base time that grows
//! with each ejection, it comes back on its own, and clients never notice (their tries are
//! retried on the other endpoint).

use support::{Backend, Proto, TestNode};

use crate::{await_state, endpoint_json, in_rotation, upstream};

#[tokio::test]
async fn ejections_grow_and_expire() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let good = Backend::start("good").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: pool }} }}
upstreams:
  - name: pool
    targets: [{{ address: "{dead}" }}, {{ address: "{}" }}]
    outlier_detection: {{ consecutive_failures: 3, base_ejection_time: 1s, max_ejection_time: 10s, max_ejection_percent: 50 }}
    circuit_breaker: {{ enabled: false }}
"#,
        good.addr()
    );
    let node = TestNode::start(&yaml).await;
    let pool = upstream(&node, "pool");
    let c = node.client(Proto::Http1, "main");

    for round in 1..=2u64 {
        // Each request's first try alternates; the dead endpoint's fail and are retried.
        let mut sent = 0;
        while in_rotation(&pool.load(), dead) {
            assert!(sent < 50, "round {round}: never ejected");
            assert_eq!(c.get("/hello").await.status, 200);
            sent += 1;
        }
        let seen = endpoint_json(&node, "pool", dead).await;
        assert_eq!(seen["total_ejections"], round);
        assert_eq!(seen["ejections"], round);
        assert_eq!(
            seen["ejected"]["duration_ms"],
            1000 * round,
            "round {round}: the ejection lasts base × ejections"
        );
        // Ejected: every request goes straight to the good endpoint.
        let tries = seen["requests"].as_u64().unwrap();
        for _ in 0..10 {
            assert_eq!(c.get("/hello").await.status, 200);
        }
        let seen = endpoint_json(&node, "pool", dead).await;
        assert_eq!(
            seen["requests"].as_u64().unwrap(),
            tries,
            "no try on an ejected endpoint"
        );
        await_state(&pool, "the ejection expires", |s| in_rotation(s, dead)).await;
        assert_eq!(
            endpoint_json(&node, "pool", dead).await["ejected"],
            serde_json::Value::Null
        );
    }
}

#[tokio::test]
async fn at_most_max_ejection_percent_is_ejected() {
    let dead: Vec<_> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .collect();
    let good = Backend::start("good").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: pool, retry: {{ attempts: 2 }} }} }}
upstreams:
  - name: pool
    targets: [{{ address: "{}" }}, {{ address: "{}" }}, {{ address: "{}" }}]
    outlier_detection: {{ consecutive_failures: 2, base_ejection_time: 1m, max_ejection_percent: 10 }}
    circuit_breaker: {{ enabled: false }}
"#,
        dead[0],
        dead[1],
        good.addr()
    );
    let node = TestNode::start(&yaml).await;
    let pool = upstream(&node, "pool");
    let c = node.client(Proto::Http1, "main");
    for _ in 0..30 {
        c.get("/hello").await;
    }
    await_state(&pool, "one ejected", |s| s.rotation.len() == 2).await;
    // 10 % of 3 endpoints rounds to none, but one may always go (Envoy); never two.
    let ejected = [
        endpoint_json(&node, "pool", dead[0]).await,
        endpoint_json(&node, "pool", dead[1]).await,
    ];
    let count = ejected.iter().filter(|e| !e["ejected"].is_null()).count();
    assert_eq!(count, 1, "{ejected:?}");
    assert_eq!(pool.load().rotation.len(), 2);
}

#[tokio::test]
async fn the_last_available_endpoint_is_never_ejected() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: pool, retry: {{ attempts: 0 }} }} }}
upstreams:
  - name: pool
    targets: [{{ address: "{dead}" }}]
    outlier_detection: {{ consecutive_failures: 2 }}
    circuit_breaker: {{ enabled: false }}
"#
    );
    let node = TestNode::start(&yaml).await;
    let c = node.client(Proto::Http1, "main");
    for _ in 0..10 {
        // Each request tries the endpoint (502), none is turned away for lack of one (503).
        assert_eq!(c.get("/hello").await.status, 502);
    }
    let seen = endpoint_json(&node, "pool", dead).await;
    assert_eq!(seen["total_ejections"], 0);
    assert_eq!(seen["requests"], 10);
}
