//! Retries: a failed try goes to another endpoint; only idempotent methods are sent again
//! unless the route opts in (and then small bodies are replayed whole); the retry budget keeps
//! retries from multiplying the load on an upstream that is down.

use std::time::Duration;

use http::Method;
use support::{Backend, Proto, TestNode};

use crate::raw::RawBackend;

fn config(targets: &[std::net::SocketAddr], routes: &str, upstream_extra: &str) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|a| format!("{{ address: \"{a}\" }}"))
        .collect();
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
{routes}
upstreams:
  - name: pool
    targets: [{}]
    outlier_detection: {{ enabled: false }}
    circuit_breaker: {{ enabled: false }}
{upstream_extra}
"#,
        targets.join(", ")
    )
}

#[tokio::test]
async fn a_retried_status_goes_to_another_endpoint() {
    let failing = RawBackend::status(503).await;
    let good = Backend::start("good").await;
    let routes = r#"
  - match: { paths: ["/opt-in/*"] }
    proxy: { upstream: pool, strip_prefix: /opt-in, retry: { attempts: 1, statuses: [503], non_idempotent: true } }
  - match: { paths: ["/*"] }
    proxy: { upstream: pool, retry: { attempts: 1, statuses: [503] } }"#;
    let node = TestNode::start(&config(&[failing.addr(), good.addr()], routes, "")).await;
    for proto in support::BOTH {
        let c = node.client(proto, "main");
        let before = failing.requests();
        for _ in 0..6 {
            let r = c.get("/hello").await;
            assert_eq!(r.status, 200, "{proto:?}");
            assert_eq!(r.header("x-backend"), Some("good"));
        }
        assert_eq!(
            failing.requests() - before,
            3,
            "every other first try met the 503"
        );
    }
    assert_eq!(good.requests(), 12);

    // POST is not idempotent: the 503 is the answer, nothing is sent twice.
    let c = node.client(Proto::Http1, "main");
    let (before_failing, before_good) = (failing.requests(), good.requests());
    let mut answers = Vec::new();
    for _ in 0..6 {
        let r = post(&c, "/echo", "payload").await;
        answers.push(r.status.as_u16());
    }
    answers.sort_unstable();
    assert_eq!(answers, [200, 200, 200, 503, 503, 503]);
    assert_eq!(failing.requests() - before_failing, 3);
    assert_eq!(good.requests() - before_good, 3);

    // The opt-in route retries POSTs, replaying the buffered body in full.
    for _ in 0..6 {
        let r = post(&c, "/opt-in/echo", "payload").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body"], "payload");
        assert_eq!(r.json()["method"], "POST");
    }
    assert_eq!(failing.requests() - before_failing, 6);
}

async fn post(c: &support::TestClient, path: &str, body: &'static str) -> support::TestResponse {
    c.send(
        c.request(Method::POST, path)
            .header("content-length", body.len())
            .body(support::client::body(body))
            .unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn connect_failures_are_retried_even_for_post() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let good = Backend::start("good").await;
    let routes = r#"
  - match: { paths: ["/*"] }
    proxy: { upstream: pool }"#;
    let node = TestNode::start(&config(&[dead, good.addr()], routes, "")).await;
    let c = node.client(Proto::Http2, "main");
    for _ in 0..6 {
        // Nothing reached the dead endpoint, so even a POST is safe to send elsewhere.
        let r = post(&c, "/echo", "abc").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body"], "abc");
    }
    assert_eq!(good.requests(), 6);
}

/// 20 clients against an upstream that answers every request with 503 after 200 ms. Without
/// a budget each request makes 1 + 3 tries (80). The budget allows concurrent retries of at
/// most 20 % of the active requests (here ≤ 4), so retries stay a fraction of the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_during_an_outage() {
    const CLIENTS: usize = 20;
    let budgeted = Backend::start_with_delay("budgeted", Duration::from_millis(200)).await;
    let unbounded = Backend::start_with_delay("unbounded", Duration::from_millis(200)).await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - match: {{ paths: ["/budgeted/*"] }}
    proxy: {{ upstream: budgeted, strip_prefix: /budgeted, retry: {{ attempts: 3, statuses: [503], backoff: {{ base: 1ms, max: 1ms }} }} }}
  - match: {{ paths: ["/unbounded/*"] }}
    proxy: {{ upstream: unbounded, strip_prefix: /unbounded, retry: {{ attempts: 3, statuses: [503], backoff: {{ base: 1ms, max: 1ms }} }} }}
upstreams:
  - name: budgeted
    targets: [{{ address: "{}" }}]
    outlier_detection: {{ enabled: false }}
    circuit_breaker: {{ enabled: false }}
    limits: {{ retry_budget: {{ percent: 20, min_concurrency: 3 }} }}
  - name: unbounded
    targets: [{{ address: "{}" }}]
    outlier_detection: {{ enabled: false }}
    circuit_breaker: {{ enabled: false }}
    limits: {{ retry_budget: {{ percent: 100, min_concurrency: 1000 }} }}
"#,
        budgeted.addr(),
        unbounded.addr()
    );
    let node = TestNode::start(&yaml).await;
    for prefix in ["/budgeted", "/unbounded"] {
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let c = node.client(Proto::Http1, "main");
            let path = format!("{prefix}/status/503");
            clients.spawn(async move { c.get(&path).await.status });
        }
        while let Some(status) = clients.join_next().await {
            assert_eq!(
                status.unwrap(),
                503,
                "the last upstream answer is passed on"
            );
        }
    }
    assert_eq!(unbounded.requests(), CLIENTS * 4);
    let tries = budgeted.requests();
    // ≤ 4 concurrent retries, each at least 200 ms, within the ~800 ms the requests last.
    assert!(
        (CLIENTS + 3..=CLIENTS + 20).contains(&tries),
        "{tries} tries for {CLIENTS} requests"
    );
    let doc = crate::admin_json(&node, "/upstreams/budgeted/health").await;
    assert_eq!(
        doc["limits"]["retries_started"].as_u64().unwrap() as usize,
        tries - CLIENTS
    );
    assert!(doc["limits"]["retries_denied"].as_u64().unwrap() > 0);
}

/// Bodies up to `max_body` (by Content-Length) are buffered and replayed; bigger ones stream
/// through once and are not retried after a reset, whatever the method.
#[tokio::test]
async fn only_small_bodies_are_replayed() {
    let resetting = RawBackend::start(crate::raw::Behaviour::Reset).await;
    let good = Backend::start("good").await;
    let routes = r#"
  - match: { paths: ["/*"] }
    proxy: { upstream: pool, retry: { attempts: 1, max_body: 1024 } }"#;
    let node = TestNode::start(&config(&[resetting.addr(), good.addr()], routes, "")).await;
    let c = node.client(Proto::Http1, "main");
    let put = |size: usize| {
        c.request(Method::PUT, "/upload")
            .header("content-length", size)
            .body(support::client::body(vec![b'x'; size]))
            .unwrap()
    };
    for _ in 0..2 {
        let r = c.send(put(1000)).await.unwrap();
        assert_eq!((r.status.as_u16(), r.text()), (200, "1000".to_string()));
    }
    let mut big = Vec::new();
    for _ in 0..2 {
        big.push(c.send(put(1_000_000)).await.unwrap().status.as_u16());
    }
    big.sort_unstable();
    assert_eq!(
        big,
        [200, 502],
        "the big body met the reset once and was not sent again"
    );
    assert_eq!(resetting.requests(), 2);
    assert_eq!(good.requests(), 3);
}
