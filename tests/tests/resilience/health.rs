//! Active health checks take an endpoint out of rotation when its probes fail and bring it
//! back when they pass again; below the panic threshold every endpoint is used; with none
//! available requests fail fast with 503.

use std::collections::HashMap;

use support::{Backend, Proto, TestNode};

use crate::{await_state, endpoint_json, in_rotation, upstream};

fn config(backends: &[std::net::SocketAddr], check: &str, extra: &str) -> String {
    config_with_retry(backends, check, extra, "{}")
}

fn config_with_retry(
    backends: &[std::net::SocketAddr],
    check: &str,
    extra: &str,
    retry: &str,
) -> String {
    let targets: Vec<String> = backends
        .iter()
        .map(|a| format!("{{ address: \"{a}\" }}"))
        .collect();
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: pool, retry: {retry} }} }}
upstreams:
  - name: pool
    targets: [{}]
    outlier_detection: {{ enabled: false }}
    circuit_breaker: {{ enabled: false }}
    health_check: {check}
{extra}
"#,
        targets.join(", ")
    )
}

const HTTP_CHECK: &str = "{ path: /healthz, interval: 50ms, timeout: 500ms, unhealthy_threshold: 2, healthy_threshold: 2, jitter_percent: 0 }";

async fn tally(node: &TestNode, n: usize) -> HashMap<String, usize> {
    let c = node.client(Proto::Http1, "main");
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = c.get("/hello").await;
        assert_eq!(r.status, 200, "{}", r.text());
        *counts
            .entry(r.header("x-backend").unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn failing_probes_remove_an_endpoint_and_passing_ones_restore_it() {
    for check in [
        HTTP_CHECK,
        "{ type: tcp, interval: 50ms, timeout: 500ms, unhealthy_threshold: 2, healthy_threshold: 2 }",
    ] {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let a_addr = a.addr();
        let node = TestNode::start(&config(&[a_addr, b.addr()], check, "")).await;
        let pool = upstream(&node, "pool");
        assert_eq!(tally(&node, 10).await.len(), 2, "both serve at first");

        a.stop().await;
        await_state(&pool, "a out of rotation", |s| !in_rotation(s, a_addr)).await;
        let counts = tally(&node, 10).await;
        assert_eq!(counts.get("b"), Some(&10), "{check}: {counts:?}");
        let seen = endpoint_json(&node, "pool", a_addr).await;
        assert_eq!(seen["healthy"], false);
        assert_eq!(seen["in_rotation"], false);

        let a = Backend::start_on("a", a_addr).await;
        await_state(&pool, "a back in rotation", |s| in_rotation(s, a_addr)).await;
        let counts = tally(&node, 10).await;
        assert_eq!(counts.get("a"), Some(&5), "{check}: {counts:?}");
        assert_eq!(endpoint_json(&node, "pool", a_addr).await["healthy"], true);
        if check == HTTP_CHECK {
            // Probes are HTTP requests to the configured path, beside the 5 proxied ones.
            assert!(a.requests() > 5, "{}", a.requests());
        } else {
            assert_eq!(a.requests(), 5, "TCP probes only connect");
        }
    }
}

#[tokio::test]
async fn a_probe_must_answer_an_expected_status() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    // The mock answers /status/503 with 503: never healthy.
    let check = "{ path: /status/503, interval: 50ms, timeout: 500ms, unhealthy_threshold: 1, healthy_threshold: 1 }";
    let node = TestNode::start(&config(
        &[a.addr(), b.addr()],
        check,
        "    panic_threshold: 0",
    ))
    .await;
    let pool = upstream(&node, "pool");
    await_state(&pool, "nothing in rotation", |s| s.rotation.is_empty()).await;
    let c = node.client(Proto::Http1, "main");
    let r = c.get("/hello").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["error"]["message"],
        "no upstream endpoint available"
    );
    // A reload that accepts 503 as healthy brings both back.
    let accepting = "{ path: /status/503, expected_statuses: [503], interval: 50ms, timeout: 500ms, unhealthy_threshold: 1, healthy_threshold: 1 }";
    let event = node
        .rewrite_config(&config(
            &[a.addr(), b.addr()],
            accepting,
            "    panic_threshold: 0",
        ))
        .await;
    assert_eq!(event.result, Ok(()));
    await_state(&pool, "both back", |s| s.rotation.len() == 2).await;
    assert_eq!(c.get("/hello").await.status, 200);
}

#[tokio::test]
async fn below_the_panic_threshold_all_endpoints_take_traffic_and_none_means_503() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c_backend = Backend::start("c").await;
    let addrs = [a.addr(), b.addr(), c_backend.addr()];
    let yaml = config_with_retry(
        &addrs,
        HTTP_CHECK,
        "    panic_threshold: 50",
        "{ attempts: 0 }",
    );
    let node = TestNode::start(&yaml).await;
    let pool = upstream(&node, "pool");

    a.stop().await;
    await_state(&pool, "a out", |s| s.rotation.len() == 2 && !s.panic).await;
    // 1 of 3 available is below 50 %: panic mode balances over all three (Envoy).
    b.stop().await;
    await_state(&pool, "panic", |s| s.panic && s.rotation.len() == 3).await;
    let doc = crate::admin_json(&node, "/upstreams/pool/health").await;
    assert_eq!(doc["panic"], true);
    assert_eq!(doc["endpoints_in_rotation"], 3);
    // Without retries, round robin over all three: one request in three reaches c.
    let client = node.client(Proto::Http1, "main");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(client.get("/hello").await.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 502, 502, 502, 502]);

    // None available: no endpoint to try, requests fail fast without a connect attempt.
    let accepts = c_backend.accepts();
    c_backend.stop().await;
    await_state(&pool, "none available", |s| s.rotation.is_empty()).await;
    let client = node.client(Proto::Http2, "main");
    for _ in 0..5 {
        let r = client.get("/hello").await;
        assert_eq!(r.status, 503);
    }
    assert!(accepts > 0);
}

#[tokio::test]
async fn the_checker_and_the_pool_are_supervised_and_follow_reloads() {
    use meshgate_actors::ChildKey;

    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let a_addr = a.addr();
    let node = TestNode::start(&config(&[a_addr, b.addr()], HTTP_CHECK, "")).await;
    let pool = upstream(&node, "pool");
    a.stop().await;
    await_state(&pool, "a out", |s| !in_rotation(s, a_addr)).await;

    // Kill both actors: the supervisor restarts them; the verdict survives the pool's restart.
    let mut restarts = node.handle().view().restarts();
    let children = node.handle().children().await;
    let victims: Vec<_> = children
        .iter()
        .filter(|(k, _)| matches!(k, ChildKey::HealthChecker(_) | ChildKey::UpstreamPool(_)))
        .collect();
    assert_eq!(victims.len(), 2, "{children:?}");
    for (_, cell) in &victims {
        cell.kill();
    }
    tokio::time::timeout(support::harness::PATIENCE, restarts.wait_for(|n| *n >= 2))
        .await
        .expect("both restarted")
        .unwrap();
    assert!(
        !in_rotation(&pool.load(), a_addr),
        "still out after the restarts"
    );

    // The restarted checker notices the endpoint come back.
    let _a = Backend::start_on("a", a_addr).await;
    await_state(&pool, "a back", |s| in_rotation(s, a_addr)).await;

    // A reload without health_check stops the checker.
    let event = node
        .rewrite_config(&config(&[a_addr, b.addr()], "null", ""))
        .await;
    assert_eq!(event.result, Ok(()));
    let children = node.handle().children().await;
    assert!(
        !children
            .iter()
            .any(|(k, _)| matches!(k, ChildKey::HealthChecker(_))),
        "{children:?}"
    );
    assert!(
        children
            .iter()
            .any(|(k, _)| matches!(k, ChildKey::UpstreamPool(_)))
    );
}
