use std::time::Duration;

use super::compile::{Algorithm, KeyPart, PolicyStore};
use super::model::FailureModeConfig;
use crate::load::{Format, parse_with_env};

fn with(section: &str, routes: &str) -> String {
    format!(
        "listeners: [{{ name: main, address: \"127.0.0.1:0\" }}]\n{section}\nroutes:\n{routes}\n"
    )
}

fn problems(text: &str) -> Vec<String> {
    match parse_with_env(text, Format::Yaml, "t", &|_| None) {
        Ok(config) => match crate::compile(&config) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        },
        Err(e) => e
            .problems()
            .map(|p| p.iter().map(|e| e.to_string()).collect())
            .unwrap_or_else(|| vec![e.to_string()]),
    }
}

fn compiled(text: &str) -> crate::CompiledConfig {
    let config = parse_with_env(text, Format::Yaml, "t", &|_| None).unwrap();
    crate::compile(&config).unwrap()
}

const SECTION: &str = r#"
rate_limiting:
  redis: { url: "redis://127.0.0.1:6379/0", timeout: 20ms }
  policies:
    - name: per-consumer
      key: consumer
      limits:
        - { requests: 1000, per: 1h }
        - { requests: 10, per: 1s, burst: 20 }
    - name: shared
      key: [client_ip, { header: x-tenant }]
      algorithm: sliding_window
      store: redis
      limits: [{ requests: 100, per: 1m }]
      fallback_limits: [{ requests: 50, per: 1m }]
"#;

const ROUTES: &str = r#"
  - name: cheap
    match: { paths: ["/cheap"] }
    respond: { status: 200 }
    rate_limit: [per-consumer, shared]
  - name: expensive
    match: { paths: ["/expensive"] }
    respond: { status: 200 }
    rate_limit:
      - { policy: per-consumer, limits: [{ requests: 2, per: 1s }] }
      - { key: path, algorithm: fixed_window, limits: [{ requests: 5, per: 1m }] }
  - name: free
    match: { paths: ["/free"] }
    respond: { status: 200 }
"#;

#[test]
fn policies_overrides_and_inline_policies_compile() {
    let c = compiled(&with(SECTION, ROUTES));
    let rl = &c.rate_limiting;
    let ids: Vec<&str> = rl.policies.iter().map(|p| &*p.id).collect();
    assert_eq!(
        ids,
        [
            "per-consumer",
            "shared",
            "per-consumer@expensive",
            "expensive#1"
        ]
    );

    let per_consumer = rl.policy("per-consumer").unwrap();
    assert_eq!(per_consumer.algorithm, Algorithm::Gcra);
    assert_eq!(per_consumer.key, [KeyPart::Consumer]);
    let periods: Vec<Duration> = per_consumer.windows.iter().map(|w| w.period).collect();
    assert_eq!(
        periods,
        [Duration::from_secs(1), Duration::from_secs(3600)],
        "shortest window first"
    );
    assert_eq!(per_consumer.windows[0].burst, 20);
    assert_eq!(per_consumer.windows[1].burst, 1000);

    let shared = rl.policy("shared").unwrap();
    assert_eq!(shared.key.len(), 2);
    match &shared.store {
        PolicyStore::Redis {
            failure_mode,
            fallback,
        } => {
            assert_eq!(*failure_mode, FailureModeConfig::Open);
            assert_eq!(fallback[0].requests, 50);
        }
        other => panic!("{other:?}"),
    }

    let override_ = rl.policy("per-consumer@expensive").unwrap();
    assert_eq!(override_.key, [KeyPart::Consumer], "inherited");
    assert_eq!(override_.windows.len(), 1, "limits replaced");
    assert_eq!(override_.windows[0].requests, 2);
    let inline = rl.policy("expensive#1").unwrap();
    assert_eq!(inline.algorithm, Algorithm::FixedWindow);
    assert_eq!(inline.key, [KeyPart::Path]);

    assert_eq!(c.routes[0].rate_limit.policies, [0, 1]);
    assert_eq!(c.routes[1].rate_limit.policies, [2, 3]);
    assert!(!c.routes[2].rate_limit.is_limited());
    assert!(c.routes[2].rate_limit.policy_header.is_none());
}

#[test]
fn the_policy_header_lists_every_window_of_the_route() {
    let c = compiled(&with(SECTION, ROUTES));
    let header = c.routes[0].rate_limit.policy_header.clone().unwrap();
    // The token bucket of 10/s with a burst of 20 holds 20 and refills in 2 s.
    assert_eq!(
        header,
        "\"per-consumer/1s\";q=20;w=2, \"per-consumer/1h\";q=1000;w=3600, \"shared\";q=100;w=60"
    );
    let header = c.routes[1].rate_limit.policy_header.clone().unwrap();
    assert_eq!(
        header,
        "\"per-consumer@expensive\";q=2;w=1, \"expensive#1\";q=5;w=60"
    );
}

#[test]
fn header_names_are_configurable_and_can_be_turned_off() {
    let section = r#"
rate_limiting:
  headers: { limit: X-Limit, remaining: null, policy: null }
  policies: [{ name: p, limits: [{ requests: 1, per: 1s }] }]
"#;
    let routes = "  - { match: { paths: [\"/\"] }, respond: {}, rate_limit: [p] }";
    let c = compiled(&with(section, routes));
    let names = &c.rate_limiting.headers;
    assert_eq!(names.limit.as_ref().unwrap(), "x-limit");
    assert!(names.remaining.is_none());
    assert_eq!(names.reset.as_ref().unwrap(), "x-ratelimit-reset");
    assert_eq!(names.ratelimit.as_ref().unwrap(), "ratelimit");
    assert!(c.routes[0].rate_limit.policy_header.is_none());
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let section = r#"
rate_limiting:
  redis: { url: "http://localhost:6379", timeout: 0s }
  headers: { limit: "bad header", reset: X-RateLimit-Limit }
  policies:
    - { name: a, limits: [] }
    - { name: a, limits: [{ requests: 1, per: 1s }] }
    - name: "b c"
      limits: [{ requests: 0, per: 1s }, { requests: 5, per: 1s }]
    - name: win
      algorithm: fixed_window
      key: [consumer, consumer, { header: "no good" }]
      limits: [{ requests: 5, per: 1m, burst: 3 }]
      failure_mode: closed
    - name: slide
      algorithm: sliding_window
      store: redis
      failure_mode: closed
      limits: [{ requests: 20000000, per: 1d }]
      fallback_limits: [{ requests: 1, per: 1s }]
"#;
    let routes = r#"
  - name: r
    match: { paths: ["/"] }
    respond: {}
    rate_limit: [nope, { policy: missing }, { key: route }]
"#;
    let found = problems(&with(section, routes));
    let expected = [
        "rate_limiting.redis.url: \"http://localhost:6379\" is not redis[s]://[user:password@]host[:port][/db]",
        "rate_limiting.redis.timeout: must be greater than zero",
        "rate_limiting.headers.limit: \"bad header\" is not a valid header name",
        "rate_limiting.policies[1].name: duplicate policy name \"a\" (first used at rate_limiting.policies[0])",
        "rate_limiting.policies[2].name: \"b c\" may only contain letters, digits, '-', '_' and '.'",
        "routes[0].rate_limit[0]: unknown rate-limit policy \"nope\"",
        "routes[0].rate_limit[1].policy: unknown rate-limit policy \"missing\"",
        "rate_limiting.policies[0].limits: at least one limit is required, e.g. {requests: 100, per: 1m}",
        "rate_limiting.policies[2].limits[0].requests: must be at least 1",
        "rate_limiting.policies[2].limits[1].per: another limit already has per: 1s",
        "rate_limiting.policies[3].key: consumer is listed twice",
        "rate_limiting.policies[3].key: \"no good\" is not a valid header name",
        "rate_limiting.policies[3].limits[0].burst: burst applies to the gcra (token bucket) algorithm only",
        "rate_limiting.policies[3].failure_mode: only a policy with store: redis has a failure mode",
        "rate_limiting.policies[4].limits[0].requests: a sliding window counts at most 16777215 requests",
        "rate_limiting.policies[4].fallback_limits: failure_mode: closed refuses requests while Redis is down; fallback limits would never apply",
        "routes[0].rate_limit[2].limits: an inline policy needs limits (or policy: NAME to start from a named one)",
    ];
    for e in expected {
        assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn redis_store_needs_the_redis_section() {
    let section = r#"
rate_limiting:
  policies: [{ name: p, store: redis, limits: [{ requests: 1, per: 1s }] }]
"#;
    let found = problems(&with(
        section,
        "  - { match: { paths: [\"/\"] }, respond: {} }",
    ));
    assert_eq!(
        found,
        [
            "rate_limiting.policies[0].store: store: redis needs rate_limiting.redis (the server counters are shared in)"
        ]
    );
}

#[test]
fn redis_urls() {
    use super::validate::check_redis_url;
    for ok in [
        "redis://127.0.0.1",
        "redis://127.0.0.1:6379",
        "redis://cache.internal:6380/2",
        "redis://user:secret@cache:6379/0",
        "redis://[::1]:6379",
        "rediss://cache:6379",
    ] {
        assert!(check_redis_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "redis://",
        "redis://cache:0",
        "redis://cache:port",
        "redis://cache:6379/db",
        "unix:///tmp/redis.sock",
    ] {
        assert!(check_redis_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn keys_accept_one_part_a_list_and_aliases() {
    let section = r#"
rate_limiting:
  policies:
    - { name: a, key: ip, limits: [{ requests: 1, per: 1s }] }
    - { name: b, key: [upstream, route], limits: [{ requests: 1, per: 1s }] }
    - { name: c, algorithm: token_bucket, limits: [{ requests: 1, per: 1s }] }
"#;
    let c = compiled(&with(
        section,
        "  - { match: { paths: [\"/\"] }, respond: {} }",
    ));
    let rl = &c.rate_limiting;
    assert_eq!(rl.policies[0].key, [KeyPart::ClientIp]);
    assert_eq!(rl.policies[1].key, [KeyPart::Service, KeyPart::Route]);
    assert_eq!(rl.policies[2].key, [KeyPart::Consumer], "the default key");
    assert_eq!(rl.policies[2].algorithm, Algorithm::Gcra);

    let bad = problems(&with(
        "rate_limiting:\n  policies: [{ name: a, key: who, limits: [{ requests: 1, per: 1s }] }]",
        "  - { match: { paths: [\"/\"] }, respond: {} }",
    ));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("a key (consumer"), "{bad:?}");
}

#[test]
fn redis_tls_and_credentials_are_checked_and_compiled() {
    let route = "  - { match: { paths: [\"/\"] }, respond: {} }";
    let bad = r#"
rate_limiting:
  redis: { url: "redis://cache:6379", tls: { server_name: cache.internal }, username: "", password: p, password_file: /f }
"#;
    let found = problems(&with(bad, route));
    for field in [
        "rate_limiting.redis.tls: ",
        "rate_limiting.redis.tls.server_name: ",
        "rate_limiting.redis: set at most one of password",
        "rate_limiting.redis.username: ",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(field)),
            "{field} in {found:#?}"
        );
    }
    let good = r#"
rate_limiting:
  redis: { url: "rediss://cache:6380/1", tls: { ca: /etc/redis-ca.pem }, username: gateway, password_file: /run/secrets/redis }
"#;
    let spec = compiled(&with(good, route))
        .rate_limiting
        .redis
        .clone()
        .unwrap();
    assert_eq!(spec.username.as_deref(), Some("gateway"));
    assert_eq!(
        spec.password,
        Some(crate::auth::ClientSecret::File("/run/secrets/redis".into()))
    );
    assert_eq!(spec.tls.unwrap().ca.as_deref(), Some("/etc/redis-ca.pem"));
}
