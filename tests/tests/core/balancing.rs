//! Load balancing over real backends: weights, least requests and peak EWMA steering away
//! from a slow instance, consistent hashing stickiness.

use std::collections::HashMap;
use std::time::Duration;

use support::{Backend, Proto, TestNode};

fn config(algorithm: &str, backends: &[(&Backend, u32)]) -> String {
    let targets: Vec<String> = backends
        .iter()
        .map(|(b, w)| format!("{{ address: \"{}\", weight: {w} }}", b.addr()))
        .collect();
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: pool }} }}
upstreams:
  - name: pool
    load_balancing: {algorithm}
    targets: [{}]
"#,
        targets.join(", ")
    )
}

async fn tally(
    node: &TestNode,
    requests: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let c = node.client(Proto::Http1, "main");
    let mut counts = HashMap::new();
    for _ in 0..requests {
        let r = c.get_with("/hello", headers).await;
        assert_eq!(r.status, 200);
        *counts
            .entry(r.header("x-backend").unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn weighted_round_robin_is_exact() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let node = TestNode::start(&config("round_robin", &[(&a, 3), (&b, 1), (&c, 1)])).await;
    let counts = tally(&node, 100, &[]).await;
    assert_eq!(counts["a"], 60, "{counts:?}");
    assert_eq!(counts["b"], 20, "{counts:?}");
    assert_eq!(counts["c"], 20, "{counts:?}");
}

/// 16 concurrent clients against one fast and one slow instance: the in-flight-aware
/// algorithms send most requests to the fast one; round robin would split them evenly.
async fn fast_share(algorithm: &str) -> (usize, usize) {
    let fast = Backend::start("fast").await;
    let slow = Backend::start_with_delay("slow", Duration::from_millis(100)).await;
    let node = TestNode::start(&config(algorithm, &[(&fast, 1), (&slow, 1)])).await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let c = node.client(Proto::Http1, "main");
        clients.spawn(async move {
            for _ in 0..10 {
                assert_eq!(c.get("/hello").await.status, 200);
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    (fast.requests(), slow.requests())
}

#[tokio::test]
async fn least_requests_steers_away_from_a_slow_instance() {
    let (fast, slow) = fast_share("least_requests").await;
    assert_eq!(fast + slow, 160);
    assert!(fast > 2 * slow, "fast {fast} vs slow {slow}");
}

#[tokio::test]
async fn peak_ewma_steers_away_from_a_slow_instance() {
    let (fast, slow) = fast_share("peak_ewma").await;
    assert_eq!(fast + slow, 160);
    assert!(fast > 2 * slow, "fast {fast} vs slow {slow}");
}

#[tokio::test]
async fn round_robin_does_not_steer() {
    let (fast, slow) = fast_share("round_robin").await;
    assert_eq!(fast, 80);
    assert_eq!(slow, 80);
}

#[tokio::test]
async fn consistent_hash_sticks_each_key_to_one_backend() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let node = TestNode::start(&config(
        "{ consistent_hash: { header: x-user } }",
        &[(&a, 1), (&b, 1), (&c, 1)],
    ))
    .await;
    let mut used = HashMap::new();
    for user in 0..30 {
        let key = format!("user-{user}");
        let counts = tally(&node, 3, &[("x-user", &key)]).await;
        assert_eq!(counts.len(), 1, "{key} spread over {counts:?}");
        *used.entry(counts.into_keys().next().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        used.len(),
        3,
        "30 keys should reach every backend: {used:?}"
    );
}
