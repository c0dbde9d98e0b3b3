//! Limits shared through a real Redis: two nodes enforce one combined limit; Redis killed,
//! paused and restarted under running nodes — failing open to the local fallback or closed,
//! logged, counted, and recovering by themselves.

use std::time::Duration;

use futures_util::future::join_all;
use support::redis_server::{RedisServer, RedisTls};
use support::tls::TestCa;
use support::{NodeProcess, Proto, TestClient, TestNode, TestResponse};

use super::{count, node_yaml, ok_route, sample, scrape, statuses};

/// A Redis section with a generous timeout (loaded test machines) and a quick retry.
fn redis_section(url: &str, policies: &str) -> String {
    format!(
        "rate_limiting:\n  redis: {{ url: \"{url}\", timeout: 2s, retry_interval: 200ms, key_prefix: \"t:\" }}\n  policies:\n{policies}"
    )
}

#[tokio::test]
async fn two_nodes_sharing_one_redis_enforce_one_combined_limit() {
    let redis = RedisServer::start().await;
    let policies = r#"    - { name: bucket, key: client_ip, store: redis, algorithm: gcra, limits: [{ requests: 10, per: 1h }] }
    - { name: sliding, key: client_ip, store: redis, algorithm: sliding_window, limits: [{ requests: 10, per: 1h }] }
    - { name: fixed, key: client_ip, store: redis, algorithm: fixed_window, limits: [{ requests: 10, per: 1h }, { requests: 100, per: 1d }] }
"#;
    let routes = [
        ok_route("bucket", "/bucket", "[bucket]"),
        ok_route("sliding", "/sliding", "[sliding]"),
        ok_route("fixed", "/fixed", "[fixed]"),
    ]
    .concat();
    let yaml = node_yaml(&redis_section(&redis.url(), policies), "", &routes);
    let first = TestNode::start(&yaml).await;
    let second = TestNode::start(&yaml).await;
    let clients = [
        first.client(Proto::Http1, "main"),
        second.client(Proto::Http2, "main"),
    ];
    for path in ["/bucket", "/sliding", "/fixed"] {
        // 30 requests at once, alternating nodes: exactly the limit passes in total.
        let sends = (0..30).map(|i| {
            let c = clients[i % 2].clone();
            async move { c.get(path).await }
        });
        let responses: Vec<TestResponse> = join_all(sends).await;
        let ok: Vec<u16> = responses.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(count(&ok, 200), 10, "{path}: {ok:?}");
        assert_eq!(count(&ok, 429), 20, "{path}: {ok:?}");
        let refused = responses.iter().find(|r| r.status == 429).unwrap();
        assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
        assert!(refused.header("retry-after").is_some());
    }
    for node in [&first, &second] {
        let metrics = scrape(node);
        assert_eq!(
            sample(&metrics, "meshgate_rate_limit_redis_up"),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "meshgate_rate_limit_redis_errors_total"),
            Some(0.0),
            "no check fell back: {metrics}"
        );
    }
    // A refusal writes nothing: the day window counted only the 10 that passed.
    let day = redis
        .command("HGET t:fixed:fixed_window:ip=127.0.0.1 c86400000000")
        .await;
    assert_eq!(day, "$2\r\n10\r\n");
    let mut keys = redis.keys("t:*").await;
    keys.sort();
    assert_eq!(
        keys,
        [
            "t:bucket:gcra:ip=127.0.0.1",
            "t:fixed:fixed_window:ip=127.0.0.1",
            "t:sliding:sliding_window:ip=127.0.0.1",
        ]
    );
}

/// Poll (bounded) until a response satisfies `done`; returns it.
async fn until(
    c: &TestClient,
    path: &str,
    what: &str,
    done: impl Fn(&TestResponse) -> bool,
) -> TestResponse {
    for _ in 0..100 {
        let r = c.get(path).await;
        if done(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 100 tries");
}

#[tokio::test]
async fn redis_down_fails_open_to_the_local_fallback_and_recovers() {
    let mut redis = RedisServer::start().await;
    let policies = r#"    - name: shared
      key: client_ip
      store: redis
      limits: [{ requests: 100, per: 1h }]
      fallback_limits: [{ requests: 3, per: 1h }]
"#;
    let node = TestNode::start(&node_yaml(
        &redis_section(&redis.url(), policies),
        "",
        &ok_route("api", "/api", "[shared]"),
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    let r = c.get("/api").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("100"), "Redis decides");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("99"));

    redis.kill();
    // Each node now enforces the fallback alone: 3 pass, then 429.
    let during = statuses(&c, "/api", &[], 5).await;
    assert_eq!(during, [200, 200, 200, 429, 429]);
    let r = c.get("/api").await;
    assert_eq!(
        r.header("x-ratelimit-limit"),
        Some("3"),
        "the fallback decides"
    );
    let metrics = scrape(&node);
    assert_eq!(sample(&metrics, "meshgate_rate_limit_redis_up"), Some(0.0));
    assert!(sample(&metrics, "meshgate_rate_limit_redis_errors_total").unwrap() >= 1.0);
    assert_eq!(
        sample(
            &metrics,
            "meshgate_rate_limit_redis_fallback_total{mode=\"open\"}"
        ),
        Some(6.0),
        "{metrics}"
    );

    redis.start_again().await;
    let back = until(&c, "/api", "recovery", |r| {
        r.header("x-ratelimit-limit") == Some("100")
    })
    .await;
    assert_eq!(back.status, 200);
    // The restarted Redis is empty: the count starts over there.
    assert_eq!(back.header("x-ratelimit-remaining"), Some("99"));
    assert_eq!(
        sample(&scrape(&node), "meshgate_rate_limit_redis_up"),
        Some(1.0)
    );
}

#[tokio::test]
async fn redis_down_fails_closed_when_configured_and_recovers() {
    let mut redis = RedisServer::start().await;
    let policies = "    - { name: strict, key: client_ip, store: redis, failure_mode: closed, limits: [{ requests: 100, per: 1h }] }\n";
    let node = TestNode::start(&node_yaml(
        &redis_section(&redis.url(), policies),
        "",
        &ok_route("api", "/api", "[strict]"),
    ))
    .await;
    let c = node.client(Proto::Http2, "main");
    assert_eq!(c.get("/api").await.status, 200);

    redis.kill();
    let refused = c.get("/api").await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.json()["error"]["message"],
        "rate limit store unavailable"
    );
    assert!(refused.header("retry-after").is_some());
    assert_eq!(c.get("/api").await.status, 503);
    let metrics = scrape(&node);
    assert_eq!(
        sample(
            &metrics,
            "meshgate_rate_limit_redis_fallback_total{mode=\"closed\"}"
        ),
        Some(2.0),
        "{metrics}"
    );

    redis.start_again().await;
    until(&c, "/api", "recovery", |r| r.status == 200).await;
}

#[tokio::test]
async fn a_frozen_redis_costs_at_most_the_timeout() {
    let redis = RedisServer::start().await;
    let section = format!(
        "rate_limiting:\n  redis: {{ url: \"{}\", timeout: 300ms, retry_interval: 100ms }}\n  policies:\n    - {{ name: shared, key: client_ip, store: redis, limits: [{{ requests: 100, per: 1h }}], fallback_limits: [{{ requests: 50, per: 1h }}] }}\n",
        redis.url()
    );
    let node = TestNode::start(&node_yaml(
        &section,
        "",
        &ok_route("api", "/api", "[shared]"),
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    assert_eq!(c.get("/api").await.header("x-ratelimit-limit"), Some("100"));

    redis.pause();
    // Redis holds the connection open and never answers: the check gives up after its timeout
    // and the fallback decides — the request does not wait for Redis to come back.
    let r = tokio::time::timeout(Duration::from_secs(10), c.get("/api"))
        .await
        .expect("the request finished while Redis was still frozen");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("50"));
    assert!(sample(&scrape(&node), "meshgate_rate_limit_redis_errors_total").unwrap() >= 1.0);

    redis.resume();
    until(&c, "/api", "recovery", |r| {
        r.header("x-ratelimit-limit") == Some("100")
    })
    .await;
}

#[tokio::test]
async fn a_node_starts_and_serves_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    redis.kill();
    let policies = "    - { name: shared, key: client_ip, store: redis, limits: [{ requests: 5, per: 1h }] }\n";
    let node = TestNode::start(&node_yaml(
        &redis_section(&url, policies),
        "",
        &ok_route("api", "/api", "[shared]"),
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    // The fallback defaults to the policy's own limits, per node.
    let got = statuses(&c, "/api", &[], 6).await;
    assert_eq!(got, [200, 200, 200, 200, 200, 429]);

    redis.start_again().await;
    let back = until(&c, "/api", "recovery", |r| r.status == 200).await;
    assert_eq!(back.header("x-ratelimit-remaining"), Some("4"));
}

#[tokio::test]
async fn an_outage_and_the_recovery_are_logged_once_each() {
    let mut redis = RedisServer::start().await;
    let policies = "    - { name: shared, key: client_ip, store: redis, limits: [{ requests: 100, per: 1h }], fallback_limits: [{ requests: 50, per: 1h }] }\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshgate.yaml");
    let yaml = node_yaml(
        &redis_section(&redis.url(), policies),
        "admin: { address: \"127.0.0.1:0\" }",
        &ok_route("api", "/api", "[shared]"),
    );
    std::fs::write(&path, yaml).unwrap();
    let node = NodeProcess::spawn(&path).await;
    let c = TestClient::new(Proto::Http1, node.addr("main"));
    assert_eq!(c.get("/api").await.header("x-ratelimit-limit"), Some("100"));

    redis.kill();
    assert_eq!(statuses(&c, "/api", &[], 3).await, [200, 200, 200]);
    let line = node
        .wait_for_log("rate-limit Redis unreachable; policies apply their failure mode")
        .await;
    assert!(line.contains("WARN"), "{line}");

    redis.start_again().await;
    until(&c, "/api", "recovery", |r| {
        r.header("x-ratelimit-limit") == Some("100")
    })
    .await;
    node.wait_for_log("rate-limit Redis reachable again").await;
    let log = node.log();
    for needle in ["Redis unreachable", "Redis reachable again"] {
        let n = log.iter().filter(|l| l.contains(needle)).count();
        assert_eq!(n, 1, "{needle:?} logged {n} times:\n{}", log.join("\n"));
    }
}

/// Redis over TLS (`rediss://`, a test CA) with an ACL user whose password comes from a file.
fn tls_section(
    redis: &RedisServer,
    ca: &std::path::Path,
    password_file: &std::path::Path,
) -> String {
    format!(
        "rate_limiting:\n  redis: {{ url: \"{url}\", tls: {{ ca: \"{ca}\" }}, username: gateway, password_file: \"{pw}\", timeout: 2s, retry_interval: 200ms }}\n  policies:\n    - {{ name: strict, key: client_ip, store: redis, failure_mode: closed, limits: [{{ requests: 3, per: 1h }}] }}\n",
        url = redis.tls_url(),
        ca = ca.display(),
        pw = password_file.display(),
    )
}

async fn tls_redis(ca: &TestCa) -> (RedisServer, std::path::PathBuf) {
    let server = ca.server(&["127.0.0.1"]);
    let redis = RedisServer::start_tls(&RedisTls {
        server: &server,
        ca: &ca.ca_path(),
        user: "gateway",
        password: "s3cret-pw",
    })
    .await;
    let password_file = ca.dir.path().join("redis-password");
    std::fs::write(&password_file, "s3cret-pw\n").unwrap();
    (redis, password_file)
}

#[tokio::test]
async fn limits_are_shared_over_tls_with_an_acl_user() {
    let ca = TestCa::new("redis-ca");
    let (redis, password_file) = tls_redis(&ca).await;
    let section = tls_section(&redis, &ca.ca_path(), &password_file);
    let node = TestNode::start(&node_yaml(
        &section,
        "",
        &ok_route("api", "/api", "[strict]"),
    ))
    .await;
    for proto in [Proto::Http1, Proto::Http2] {
        let c = node.client(proto, "main");
        let got = statuses(&c, "/api", &[], 5).await;
        // failure_mode: closed: an unreachable Redis would answer 503, so these 429s are
        // Redis's count (shared by both protocols' clients, which come from one IP).
        let expected = if proto == Proto::Http1 {
            vec![200, 200, 200, 429, 429]
        } else {
            vec![429; 5]
        };
        assert_eq!(got, expected, "{proto:?}");
    }
}

#[tokio::test]
async fn a_redis_certificate_from_another_ca_is_refused_naming_the_setting() {
    let ca = TestCa::new("redis-ca");
    let other = TestCa::new("other-ca");
    let (redis, password_file) = tls_redis(&ca).await;
    let routes = [
        ok_route("api", "/api", "[strict]"),
        "  - name: open\n    match: { paths: [\"/open\"] }\n    respond: { status: 200 }\n"
            .to_string(),
    ]
    .concat();
    let section = tls_section(&redis, &other.ca_path(), &password_file);
    // The real binary (its log is read) with its admin listener on a free port.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshgate.yaml");
    let yaml = node_yaml(&section, "admin: { address: \"127.0.0.1:0\" }", &routes);
    std::fs::write(&config, yaml).unwrap();
    let node = NodeProcess::spawn(&config).await;
    let c = TestClient::new(Proto::Http1, node.addr("main"));
    // failure_mode: closed: the untrusted Redis is never used, requests needing it get 503.
    let r = c.get("/api").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], 503);
    assert_eq!(c.get("/open").await.status, 200);
    node.wait_for_log("rate_limiting.redis.tls: ").await;
}
