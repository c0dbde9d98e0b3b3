//! API keys (`<id>.<secret>`, Argon2id at rest) and Basic credentials.

use support::idp::cheap_phc;
use support::{BOTH, Proto};

use super::{echo_route, node_yaml, start};

const KEY: &str = "billing.kT3vQ9xLr2mW8pZs";

fn consumers(extra_credentials: &str) -> String {
    format!(
        r#"consumers:
  - username: billing-svc
    id: 5d1e-billing
    groups: [internal]
    credentials:
      - api_key: {{ id: billing, hash: "{}" }}
      - basic: {{ username: ops, password_hash: "{}" }}
{extra_credentials}"#,
        cheap_phc(KEY),
        cheap_phc("correct horse battery staple")
    )
}

#[tokio::test]
async fn a_valid_key_authenticates_and_is_not_forwarded() {
    let yaml = node_yaml(
        "auth: { api_key: { query: apikey } }",
        &consumers(""),
        &[
            echo_route("keyed", "/keyed", "{ methods: [api_key] }"),
            echo_route(
                "forwarding",
                "/fwd",
                "{ methods: [api_key], forward_credentials: true }",
            ),
        ]
        .concat(),
    );
    let node = start(&yaml).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c.get_with("/keyed", &[("x-api-key", KEY)]).await;
        assert_eq!(r.status, 200, "{proto:?}: {}", r.text());
        let h = &r.json()["headers"];
        assert_eq!(h["x-consumer-id"], "5d1e-billing");
        assert_eq!(h["x-consumer-username"], "billing-svc");
        assert_eq!(h["x-credential-identifier"], "billing");
        assert!(h.get("x-api-key").is_none(), "the key went upstream: {h}");
        // The same key as a query parameter, removed from the forwarded URI.
        let r = c.get(&format!("/keyed?apikey={KEY}&page=2")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["query"], "page=2");
        let r = c.get_with("/fwd", &[("x-api-key", KEY)]).await;
        assert_eq!(r.json()["headers"]["x-api-key"], KEY);
    }
    // Argon2 ran once for the key; every later use came from the verified-key cache.
    assert_eq!(node.handle().auth_stats().argon2_verifications, 1);
}

#[tokio::test]
async fn wrong_unknown_missing_and_malformed_keys_get_401_with_a_challenge() {
    let yaml = node_yaml(
        "",
        &consumers(""),
        &echo_route("keyed", "/keyed", "{ methods: [api_key] }"),
    );
    let node = start(&yaml).await;
    let c = node.client(Proto::Http1, "main");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("x-api-key", "billing.wrong-secret-000000")],
            "invalid credentials",
        ),
        (
            &[("x-api-key", "nobody.kT3vQ9xLr2mW8pZs")],
            "invalid credentials",
        ),
        (&[("x-api-key", "no-dot-at-all")], "invalid credentials"),
        (
            &[("x-api-key", KEY), ("x-api-key", KEY)],
            "invalid credentials",
        ),
        (&[], "authentication required"),
    ];
    for (headers, message) in cases {
        let r = c.get_with("/keyed", headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
        let body = r.json();
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["message"], message, "{headers:?}");
        assert_eq!(
            body["error"]["request_id"],
            r.header("x-request-id").unwrap()
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("ApiKey realm=\"meshgate\"")
        );
    }
    // Only the wrong secret of a known id cost an Argon2 verification.
    assert_eq!(node.handle().auth_stats().argon2_verifications, 1);
}

#[tokio::test]
async fn an_unknown_key_flood_is_held_to_the_per_client_argon2_budget() {
    let auth = "auth: { secret_hashing: { per_client_burst: 3, per_client_interval: 1h } }";
    let yaml = node_yaml(
        auth,
        &consumers(""),
        &echo_route("keyed", "/keyed", "{ methods: [api_key] }"),
    );
    let node = start(&yaml).await;
    let c = node.client(Proto::Http1, "main");
    let mut statuses = Vec::new();
    for i in 0..40 {
        let key = format!("billing.guess-{i:04}-xxxxxxxxxx");
        let r = c.get_with("/keyed", &[("x-api-key", &key)]).await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(retry > 0 && retry <= 3600, "{retry}");
        }
    }
    let verifications = node.handle().auth_stats().argon2_verifications;
    assert_eq!(verifications, 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 37);
    // Repeating a key that already failed is answered from memory, even over budget.
    let r = c
        .get_with("/keyed", &[("x-api-key", "billing.guess-0000-xxxxxxxxxx")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(node.handle().auth_stats().argon2_verifications, 3);
}

#[tokio::test]
async fn concurrent_first_uses_are_bounded_by_the_argon2_slots() {
    // 20 clients at once with 20 different wrong secrets: one slot, everything still answered.
    let auth = "auth: { secret_hashing: { max_concurrent: 1, per_client_burst: 100 } }";
    let yaml = node_yaml(
        auth,
        &consumers(""),
        &echo_route("keyed", "/keyed", "{ methods: [api_key] }"),
    );
    let node = start(&yaml).await;
    let c = node.client(Proto::Http2, "main");
    let requests = (0..20).map(|i| {
        let c = c.clone();
        async move {
            let key = format!("billing.parallel-{i:02}-xxxxxxxxxx");
            c.get_with("/keyed", &[("x-api-key", &key)]).await.status
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(node.handle().auth_stats().argon2_verifications, 20);
}

#[tokio::test]
async fn basic_auth_accepts_the_password_and_challenges_otherwise() {
    use base64::Engine;
    let yaml = node_yaml(
        "auth: { realm: shop }",
        &consumers(""),
        &echo_route("basic", "/basic", "{ methods: [basic] }"),
    );
    let node = start(&yaml).await;
    let c = node.client(Proto::Http1, "main");
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let r = c
        .get_with(
            "/basic",
            &[(
                "authorization",
                &basic("ops", "correct horse battery staple"),
            )],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    assert_eq!(h["x-consumer-username"], "billing-svc");
    assert_eq!(h["x-credential-identifier"], "ops");
    assert!(h.get("authorization").is_none());
    for bad in [
        basic("ops", "wrong"),
        basic("nobody", "x"),
        "Basic !!!".into(),
        "Basic".into(),
    ] {
        let r = c.get_with("/basic", &[("authorization", &bad)]).await;
        assert_eq!(r.status, 401, "{bad}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"shop\", charset=\"UTF-8\"")
        );
    }
    let r = c.get("/basic").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["message"], "authentication required");
}
