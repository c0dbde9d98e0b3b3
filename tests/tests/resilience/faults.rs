//! Upstream faults and what the client sees: a hanging backend is a 504 at the configured
//! timeout (route or per try), a reset mid-body aborts the client stream and is never retried,
//! an answer that is not HTTP or whose head is too big is a 502 and its connection is closed.

use std::time::Duration;

use support::{BOTH, Backend, TestNode};
use tokio::time::Instant;

use crate::raw::{Behaviour, RawBackend};

fn config(targets: &[std::net::SocketAddr], proxy_extra: &str) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|a| format!("{{ address: \"{a}\" }}"))
        .collect();
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - match: {{ paths: ["/*"] }}
    proxy: {{ upstream: b, {proxy_extra} }}
upstreams:
  - name: b
    targets: [{}]
    outlier_detection: {{ enabled: false }}
    circuit_breaker: {{ enabled: false }}
"#,
        targets.join(", ")
    )
}

#[tokio::test]
async fn a_hanging_backend_is_a_504_at_the_route_timeout() {
    let backend = Backend::start("hang").await;
    let node = TestNode::start(&config(&[backend.addr()], "timeout: 300ms")).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let started = Instant::now();
        let r = c.get("/slow/10000").await;
        assert_eq!(r.status, 504, "{proto:?}");
        assert_eq!(r.json()["error"]["message"], "upstream timed out");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
    // Timeouts are not retried by default: one try per request.
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn a_per_try_timeout_moves_on_to_another_endpoint() {
    let hanging = Backend::start_with_delay("hanging", Duration::from_secs(10)).await;
    let fast = Backend::start("fast").await;
    let node = TestNode::start(&config(
        &[hanging.addr(), fast.addr()],
        "timeout: 5s, retry: { attempts: 1, on: [timeout], per_try_timeout: 200ms }",
    ))
    .await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        for _ in 0..4 {
            let r = c.get("/hello").await;
            assert_eq!(r.status, 200, "{proto:?}: {}", r.text());
            assert_eq!(r.header("x-backend"), Some("fast"));
        }
    }
    // Round robin sent half of the first tries to the hanging endpoint; each moved on.
    assert_eq!(hanging.requests(), 4);
    assert_eq!(fast.requests(), 8);

    // Only hanging endpoints: every try times out, then the client gets 504.
    let node = TestNode::start(&config(
        &[hanging.addr()],
        "timeout: 5s, retry: { attempts: 1, on: [timeout], per_try_timeout: 200ms }",
    ))
    .await;
    let c = node.client(support::Proto::Http1, "main");
    let started = Instant::now();
    let r = c.get("/hello").await;
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "two tries of 200 ms"
    );
    assert_eq!(hanging.requests(), 6);
}

#[tokio::test]
async fn a_reset_mid_body_aborts_the_client_stream_and_is_not_retried() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(
        &[backend.addr()],
        "retry: { attempts: 3, on: [reset, connect_failure] }",
    ))
    .await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let before = backend.requests();
        let result = c
            .send(
                c.request(http::Method::GET, "/reset")
                    .body(support::client::empty())
                    .unwrap(),
            )
            .await;
        assert!(
            result.is_err(),
            "{proto:?}: a truncated body must not look complete: {result:?}"
        );
        assert_eq!(
            backend.requests(),
            before + 1,
            "{proto:?}: headers were sent, so no retry"
        );
        assert_eq!(c.get("/hello").await.status, 200);
    }
}

#[tokio::test]
async fn garbage_and_oversized_answers_are_502_and_close_the_connection() {
    let garbage = RawBackend::start(Behaviour::Answer(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec())).await;
    let big_head = format!(
        "HTTP/1.1 200 OK\r\nx-huge: {}\r\ncontent-length: 0\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let oversized = RawBackend::start(Behaviour::Answer(big_head.into_bytes())).await;
    for raw in [&garbage, &oversized] {
        let node = TestNode::start(&config(&[raw.addr()], "retry: { attempts: 0 }")).await;
        for proto in BOTH {
            let c = node.client(proto, "main");
            let r = c.get("/x").await;
            assert_eq!(r.status, 502, "{proto:?}");
            assert_eq!(
                r.json()["error"]["message"],
                "upstream sent an invalid response"
            );
        }
        // Every connection that carried a bad answer was closed by the gateway.
        raw.wait_closed_by_peer(raw.accepts()).await;
        assert_eq!(raw.accepts(), 2, "one per request, none reused");
        node.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_reset_before_headers_is_retried_elsewhere_for_idempotent_requests_only() {
    let resetting = RawBackend::start(Behaviour::Reset).await;
    let good = Backend::start("good").await;
    let node = TestNode::start(&config(&[resetting.addr(), good.addr()], "")).await;
    let c = node.client(support::Proto::Http1, "main");
    for _ in 0..6 {
        let r = c.get("/hello").await;
        assert_eq!(r.status, 200, "GET is retried on the other endpoint");
    }
    assert_eq!(resetting.requests(), 3);
    let mut failed = 0;
    for _ in 0..6 {
        let r = c
            .send(
                c.request(http::Method::POST, "/hello")
                    .body(support::client::body("x"))
                    .unwrap(),
            )
            .await
            .unwrap();
        if r.status == 502 {
            failed += 1;
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert_eq!(failed, 3, "POSTs that met the reset are not retried");
    assert_eq!(resetting.requests(), 6);
}
