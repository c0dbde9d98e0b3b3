//! Local limits: a burst and its 429 with every header, several windows at once, per-route
//! overrides and shared budgets, each algorithm, recovery after `Retry-After`, and counters
//! across reloads.

use std::time::Duration;

use support::{BOTH, Proto, TestNode};

use super::{node_yaml, ok_route, sample, scrape, statuses};

fn section(policies: &str) -> String {
    format!("rate_limiting:\n  policies:\n{policies}")
}

#[tokio::test]
async fn a_burst_within_capacity_passes_and_the_next_gets_429_with_headers() {
    for proto in BOTH {
        let policies =
            "    - { name: per-ip, key: client_ip, limits: [{ requests: 3, per: 1h }] }\n";
        let node = TestNode::start(&node_yaml(
            &section(policies),
            "",
            &ok_route("api", "/api", "[per-ip]"),
        ))
        .await;
        let c = node.client(proto, "main");
        for remaining in ["2", "1", "0"] {
            let r = c.get("/api").await;
            assert_eq!(r.status, 200, "{proto:?}");
            assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
            assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
            let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
            assert!((1..=3600).contains(&reset), "reset {reset}");
            assert_eq!(
                r.header("ratelimit").unwrap(),
                format!("\"per-ip\";r={remaining};t={reset}")
            );
            assert_eq!(r.header("ratelimit-policy"), Some("\"per-ip\";q=3;w=3600"));
        }
        let refused = c.get("/api").await;
        assert_eq!(refused.status, 429, "{proto:?}");
        let body = refused.json();
        assert_eq!(body["error"]["code"], 429);
        assert_eq!(body["error"]["message"], "rate limit exceeded");
        assert_eq!(
            body["error"]["request_id"],
            refused.header("x-request-id").unwrap()
        );
        // One request per 1200 s refills a bucket of 3 per hour.
        let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1190..=1200).contains(&retry), "retry-after {retry}");
        assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(refused.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            refused.header("ratelimit-policy"),
            Some("\"per-ip\";q=3;w=3600")
        );

        let metrics = scrape(&node);
        assert_eq!(
            sample(
                &metrics,
                "meshgate_rate_limit_rejections_total{route=\"api\",method=\"GET\"}"
            ),
            Some(1.0),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn several_windows_apply_at_once_and_the_refusing_one_is_reported() {
    let policies = r#"    - name: hourly-first
      key: client_ip
      algorithm: fixed_window
      limits: [{ requests: 2, per: 1h }, { requests: 5, per: 1d }]
    - name: daily-first
      key: client_ip
      algorithm: fixed_window
      limits: [{ requests: 5, per: 1h }, { requests: 2, per: 1d }]
"#;
    let routes = [
        ok_route("a", "/a", "[hourly-first]"),
        ok_route("b", "/b", "[daily-first]"),
    ]
    .concat();
    let node = TestNode::start(&node_yaml(&section(policies), "", &routes)).await;
    let c = node.client(Proto::Http1, "main");

    let first = c.get("/a").await;
    assert_eq!(
        first.header("x-ratelimit-limit"),
        Some("2"),
        "the closer window"
    );
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"hourly-first/1h\";q=2;w=3600, \"hourly-first/1day\";q=5;w=86400")
    );
    assert_eq!(c.get("/a").await.status, 200);
    let refused = c.get("/a").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("x-ratelimit-limit"), Some("2"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry <= 3600, "the hour window refused: {retry}");
    assert!(
        refused
            .header("ratelimit")
            .unwrap()
            .starts_with("\"hourly-first/1h\";r=0;")
    );

    assert_eq!(statuses(&c, "/b", &[], 3).await, [200, 200, 429]);
    let refused = c.get("/b").await;
    assert_eq!(refused.header("x-ratelimit-limit"), Some("2"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    // A daily window is longer than an hour, unless the test runs just before midnight on the
    // node's clock (the fixed day window started when the node did, so it cannot).
    assert!(retry > 3600, "the day window refused: {retry}");
}

#[tokio::test]
async fn an_expensive_endpoint_gets_its_own_lower_limit() {
    let policies = "    - { name: per-ip, key: client_ip, limits: [{ requests: 4, per: 1h }] }\n";
    let routes = [
        ok_route("list", "/list", "[per-ip]"),
        ok_route("search", "/search", "[per-ip]"),
        ok_route(
            "export",
            "/export",
            "[{ policy: per-ip, limits: [{ requests: 1, per: 1h }] }]",
        ),
    ]
    .concat();
    let node = TestNode::start(&node_yaml(&section(policies), "", &routes)).await;
    let c = node.client(Proto::Http1, "main");
    // The override counts on its own, with its own limit …
    assert_eq!(statuses(&c, "/export", &[], 2).await, [200, 429]);
    let r = c.get("/export").await;
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"per-ip@export\";q=1;w=3600")
    );
    // … while routes naming the same policy share its budget.
    assert_eq!(statuses(&c, "/list", &[], 2).await, [200, 200]);
    assert_eq!(statuses(&c, "/search", &[], 3).await, [200, 200, 429]);
    assert_eq!(c.get("/list").await.status, 429);
}

#[tokio::test]
async fn every_algorithm_enforces_its_limit() {
    let policies = r#"    - { name: bucket, key: client_ip, algorithm: gcra, limits: [{ requests: 3, per: 1h }] }
    - { name: sliding, key: client_ip, algorithm: sliding_window, limits: [{ requests: 3, per: 1h }] }
    - { name: fixed, key: client_ip, algorithm: fixed_window, limits: [{ requests: 3, per: 1h }] }
"#;
    let routes = [
        ok_route("bucket", "/bucket", "[bucket]"),
        ok_route("sliding", "/sliding", "[sliding]"),
        ok_route("fixed", "/fixed", "[fixed]"),
    ]
    .concat();
    let node = TestNode::start(&node_yaml(&section(policies), "", &routes)).await;
    let c = node.client(Proto::Http2, "main");
    for path in ["/bucket", "/sliding", "/fixed"] {
        let got = statuses(&c, path, &[], 5).await;
        assert_eq!(got, [200, 200, 200, 429, 429], "{path}");
    }
}

#[tokio::test]
async fn a_refused_client_passes_again_once_its_bucket_refills() {
    // Five per second, no burst: one request per 200 ms.
    let policies =
        "    - { name: paced, key: client_ip, limits: [{ requests: 5, per: 1s, burst: 1 }] }\n";
    let node = TestNode::start(&node_yaml(
        &section(policies),
        "",
        &ok_route("paced", "/paced", "[paced]"),
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    assert_eq!(c.get("/paced").await.status, 200);
    let refused = c.get("/paced").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Bounded wait for the refill (≈200 ms): at most 40 × 50 ms.
    let mut passed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if c.get("/paced").await.status == 200 {
            passed = true;
            break;
        }
    }
    assert!(passed, "the bucket never refilled");
}

fn reload_yaml(b_requests: u32, extra_route: &str) -> String {
    let policies = format!(
        "    - {{ name: a, key: client_ip, limits: [{{ requests: 2, per: 1h }}] }}\n    - {{ name: b, key: client_ip, limits: [{{ requests: {b_requests}, per: 1h }}] }}\n"
    );
    let routes = [
        ok_route("a", "/a", "[a]"),
        ok_route("b", "/b", "[b]"),
        ok_route(
            "c",
            "/c",
            "[{ key: client_ip, limits: [{ requests: 1, per: 1h }] }]",
        ),
        extra_route.to_string(),
    ]
    .concat();
    node_yaml(&section(&policies), "", &routes)
}

#[tokio::test]
async fn a_reload_keeps_the_counters_of_unchanged_policies() {
    let node = TestNode::start(&reload_yaml(2, "")).await;
    let c = node.client(Proto::Http1, "main");
    assert_eq!(statuses(&c, "/a", &[], 2).await, [200, 200]);
    assert_eq!(statuses(&c, "/b", &[], 2).await, [200, 200]);
    assert_eq!(statuses(&c, "/c", &[], 1).await, [200]);

    // An unrelated change: every counter stays.
    let extra = ok_route("new", "/new", "[]");
    let event = node.rewrite_config(&reload_yaml(2, &extra)).await;
    assert!(event.result.is_ok(), "{event:?}");
    assert_eq!(c.get("/new").await.status, 200);
    assert_eq!(c.get("/a").await.status, 429, "a kept its counters");
    assert_eq!(c.get("/b").await.status, 429, "b kept its counters");
    assert_eq!(
        c.get("/c").await.status,
        429,
        "the inline policy kept its counters"
    );

    // b's limit changes: b starts over; a still remembers.
    let event = node.rewrite_config(&reload_yaml(3, &extra)).await;
    assert!(event.result.is_ok(), "{event:?}");
    assert_eq!(c.get("/a").await.status, 429);
    assert_eq!(statuses(&c, "/b", &[], 4).await, [200, 200, 200, 429]);
    assert_eq!(
        node.handle().rate_limit_keys("a"),
        Some(1),
        "one client key held for policy a"
    );
}

/// The full example in docs/rate-limiting.md loads and compiles as documented.
#[test]
fn the_documented_config_is_valid() {
    let path = format!("{}/../docs/rate-limiting.md", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(path).unwrap();
    let body = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    assert!(body.starts_with("# full config"), "{body}");
    let config = meshgate_config::parse_str(body, meshgate_config::Format::Yaml)
        .unwrap_or_else(|e| panic!("documented config does not load: {e}"));
    let compiled = meshgate_config::compile(&config).unwrap();
    let ids: Vec<&str> = compiled
        .rate_limiting
        .policies
        .iter()
        .map(|p| &*p.id)
        .collect();
    assert_eq!(
        ids,
        [
            "per-consumer",
            "fleet-wide",
            "per-tenant",
            "per-consumer@export",
            "export#1"
        ]
    );
    assert_eq!(
        compiled.routes[0]
            .rate_limit
            .policy_header
            .as_ref()
            .unwrap(),
        "\"per-consumer/1s\";q=20;w=2, \"per-consumer/1day\";q=10000;w=86400, \"fleet-wide\";q=600;w=60"
    );
    assert!(!compiled.routes[2].rate_limit.is_limited());
}
