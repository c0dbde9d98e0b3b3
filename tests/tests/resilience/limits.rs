//! Concurrency limits (Envoy's circuit-breaker thresholds): past `max_requests` in flight, or
//! past `max_connections` plus `max_pending_requests` waiting, requests get 503 at once.

use std::time::Duration;

use meshgate_actors::upstream::LimitKind;
use support::harness::PATIENCE;
use support::{Backend, Proto, TestNode};

use crate::upstream;

fn config(addr: std::net::SocketAddr, limits: &str) -> String {
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: b }} }}
upstreams:
  - name: b
    targets: [{{ address: "{addr}" }}]
    limits: {limits}
"#
    )
}

#[tokio::test]
async fn requests_past_max_requests_get_503_at_once() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(backend.addr(), "{ max_requests: 2 }")).await;
    for proto in support::BOTH {
        let before = backend.requests();
        let mut slow = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let c = node.client(proto, "main");
            slow.spawn(async move { c.get("/slow/500").await.status });
        }
        backend.wait_for_requests(before + 2).await;
        let c = node.client(proto, "main");
        for _ in 0..3 {
            let r = c.get("/hello").await;
            assert_eq!(r.status, 503, "{proto:?}");
            assert_eq!(
                r.json()["error"]["message"],
                "upstream concurrency limit reached"
            );
        }
        while let Some(status) = slow.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }
        assert_eq!(
            backend.requests(),
            before + 2,
            "the rejected ones never left"
        );
        // The slots came back with the response bodies.
        assert_eq!(c.get("/hello").await.status, 200);
    }
    let doc = crate::admin_json(&node, "/upstreams/b/health").await;
    assert_eq!(doc["limits"]["overflows"], 6);
    assert_eq!(doc["limits"]["requests"], 0);
}

#[tokio::test]
async fn one_connection_one_pending_request_and_the_rest_is_turned_away() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(
        backend.addr(),
        "{ max_connections: 1, max_pending_requests: 1 }",
    ))
    .await;
    let handle = upstream(&node, "b");
    let c = node.client(Proto::Http1, "main");
    let first = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/slow/300").await.status })
    };
    backend.wait_for_requests(1).await;
    // The second request finds the only connection busy and waits for it.
    let second = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/hello").await.status })
    };
    tokio::time::timeout(PATIENCE, async {
        while handle.limits.current(LimitKind::Pending) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the second request never waited");
    let third = c.get("/hello").await;
    assert_eq!(third.status, 503);
    assert_eq!(
        third.json()["error"]["message"],
        "upstream connection limit reached"
    );
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(
        second.await.unwrap(),
        200,
        "the pending request got the connection"
    );
    assert_eq!(backend.accepts(), 1, "never more than one connection");
    assert_eq!(handle.limits.current(LimitKind::Pending), 0);
}
