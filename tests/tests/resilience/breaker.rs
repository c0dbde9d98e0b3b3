//! The circuit breaker under a backend that dies and comes back: it opens within its
//! threshold, fails fast without touching the network, probes when the open period is over,
//! reopens on a failed probe and closes on a good one. And the configured fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::harness::PATIENCE;
use support::{Backend, Proto, TestNode};

use crate::admin_json;

const THRESHOLD: usize = 5;
const CLIENTS: usize = 4;

fn config(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - match: {{ paths: ["/*"] }}
    proxy: {{ upstream: b, timeout: 2s, retry: {{ attempts: 0 }} }}
upstreams:
  - name: b
    targets: [{{ address: "{addr}" }}]
    outlier_detection: {{ enabled: false }}
    circuit_breaker: {{ consecutive_failures: {THRESHOLD}, failure_rate: 0, open_for: 1s }}
{extra}
"#
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    bad_gateway: AtomicUsize,
    open: AtomicUsize,
    other: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_opens_the_circuit_and_a_probe_closes_it() {
    let backend = Backend::start("b").await;
    let addr = backend.addr();
    let node = TestNode::start(&config(addr, "")).await;

    // Continuous load from several clients while the backend dies.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(tokio::sync::Notify::new());
    let mut load = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let c = node.client(
            if i % 2 == 0 {
                Proto::Http1
            } else {
                Proto::Http2
            },
            "main",
        );
        let (tally, stop, opened) = (tally.clone(), stop.clone(), opened.clone());
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = c.get("/hello").await;
                let counter = match r.status.as_u16() {
                    200 => &tally.ok,
                    502 => &tally.bad_gateway,
                    503 => {
                        assert_eq!(
                            r.json()["error"]["message"],
                            "upstream circuit breaker is open"
                        );
                        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
                        assert!((1..=1).contains(&wait), "retry-after {wait}");
                        opened.notify_one();
                        &tally.open
                    }
                    _ => &tally.other,
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    backend.wait_for_requests(20).await;
    backend.stop().await;
    tokio::time::timeout(PATIENCE, opened.notified())
        .await
        .expect("the circuit never opened");
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = load.join_next().await {
        done.unwrap();
    }
    let failures = tally.bad_gateway.load(Ordering::SeqCst);
    // THRESHOLD consecutive failures open it. Requests in flight when the backend died can
    // still land a success that restarts the count, or fail after the trip: at most one of
    // each per client.
    assert!(
        (THRESHOLD..=THRESHOLD + 2 * CLIENTS).contains(&failures),
        "{failures} requests reached the dead backend"
    );
    assert_eq!(tally.other.load(Ordering::SeqCst), 0);
    assert!(tally.ok.load(Ordering::SeqCst) >= 20);

    // The open period ends with a probe; the backend is still dead, so it reopens.
    let c = node.client(Proto::Http1, "main");
    let reopened = wait_for_status(&c, 502).await;
    assert!(reopened >= 1, "requests failed fast before the probe");
    let status = admin_json(&node, "/upstreams/b/health").await;
    assert_eq!(status["circuit_breaker"]["state"], "open");
    assert_eq!(status["circuit_breaker"]["trips"], 2);

    // The backend returns, but while the circuit is open nothing reaches it.
    let backend = Backend::start_on("b", addr).await;
    for _ in 0..10 {
        let r = c.get("/hello").await;
        assert_eq!(r.status, 503);
    }
    assert_eq!(backend.accepts(), 0, "an open circuit must not connect");

    // After the open period one probe goes through and closes the circuit.
    wait_for_status(&c, 200).await;
    for _ in 0..10 {
        assert_eq!(c.get("/hello").await.status, 200);
    }
    assert_eq!(backend.requests(), 11);
    let status = admin_json(&node, "/upstreams/b/health").await;
    assert_eq!(status["circuit_breaker"]["state"], "closed");
    assert_eq!(status["circuit_breaker"]["trips"], 2);
    assert!(status["circuit_breaker"]["rejected"].as_u64().unwrap() >= 10);
}

/// Send requests until one answers `status` (the circuit moves on its own clock, checked
/// lazily by requests); every other answer must be the fast 503. Returns the 503s seen.
async fn wait_for_status(c: &support::TestClient, status: u16) -> usize {
    let mut fast_fails = 0;
    let wait = async {
        loop {
            let r = c.get("/hello").await;
            if r.status == status {
                return;
            }
            assert_eq!(r.status, 503, "{}", r.text());
            fast_fails += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("never got {status}"));
    fast_fails
}

#[tokio::test]
async fn an_open_circuit_serves_the_fallback() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let fallback = r#"    fallback: { status: 200, headers: { content-type: application/json }, body: '{"items":[]}' }"#;
    let node = TestNode::start(&config(dead, fallback)).await;
    for proto in support::BOTH {
        let c = node.client(proto, "main");
        let mut statuses = Vec::new();
        for _ in 0..THRESHOLD + 3 {
            statuses.push(c.get("/list").await);
        }
        let failed = statuses.iter().filter(|r| r.status == 502).count();
        let fallbacks: Vec<_> = statuses.iter().filter(|r| r.status == 200).collect();
        if proto == Proto::Http1 {
            assert_eq!(failed, THRESHOLD);
        } else {
            assert_eq!(failed, 0, "still open from the HTTP/1.1 round");
        }
        assert!(!fallbacks.is_empty());
        for r in fallbacks {
            assert_eq!(r.text(), r#"{"items":[]}"#);
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert!(r.header("x-request-id").is_some());
            assert!(
                r.header("retry-after").is_none(),
                "only a 503 says when to retry"
            );
        }
    }
}
