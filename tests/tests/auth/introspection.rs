//! OAuth 2.0 token introspection (RFC 7662) against the test IdP: consumer mapping, scopes,
//! caching of active and inactive answers, an unreachable endpoint.

use serde_json::json;
use support::Proto;
use support::idp::{INTROSPECTION_CLIENT, TestIdp, now};

use super::{echo_route, node_yaml, start};

fn auth(endpoint: &str) -> String {
    format!(
        r#"auth:
  introspection:
    - name: oauth
      endpoint: "{endpoint}"
      client_id: {id}
      client_secret: "{secret}"
      timeout: 2s
      inactive_ttl: 1h
      forward_claims: {{ username: x-user }}"#,
        id = INTROSPECTION_CLIENT.0,
        secret = INTROSPECTION_CLIENT.1
    )
}

const CONSUMERS: &str = "consumers:\n  - username: mobile-app\n    credentials: [{ oauth2: { provider: oauth, subject: app-42 } }]";

#[tokio::test]
async fn active_tokens_authenticate_and_are_cached_until_used_up() {
    let idp = TestIdp::start().await;
    idp.set_token(
        "opaque-1",
        json!({"active": true, "client_id": "app-42", "username": "jdoe", "scope": "profile orders:read", "exp": now() + 300}),
    );
    let routes = [
        echo_route(
            "read",
            "/read",
            "{ methods: [{ introspection: oauth }], scopes: [orders:read] }",
        ),
        echo_route(
            "write",
            "/write",
            "{ methods: [{ introspection: oauth }], scopes: [orders:write] }",
        ),
    ]
    .concat();
    let node = start(&node_yaml(
        &auth(&idp.introspection_url()),
        CONSUMERS,
        &routes,
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    for _ in 0..10 {
        let r = c
            .get_with("/read", &[("authorization", "Bearer opaque-1")])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let h = &r.json()["headers"];
        assert_eq!(h["x-consumer-username"], "mobile-app");
        assert_eq!(h["x-credential-identifier"], "app-42");
        assert_eq!(h["x-authenticated-scope"], "profile orders:read");
        assert_eq!(h["x-user"], "jdoe");
    }
    assert_eq!(idp.introspection_calls(), 1);
    assert_eq!(node.handle().auth_stats().introspection_calls, 1);
    let r = c
        .get_with("/write", &[("authorization", "Bearer opaque-1")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["message"], "insufficient_scope");
    assert_eq!(
        idp.introspection_calls(),
        1,
        "the cached answer served the scope check"
    );
}

#[tokio::test]
async fn inactive_and_expired_tokens_are_refused_and_inactive_answers_cached() {
    let idp = TestIdp::start().await;
    idp.set_token(
        "stale",
        json!({"active": true, "client_id": "app-42", "exp": now() - 1}),
    );
    let node = start(&node_yaml(
        &auth(&idp.introspection_url()),
        CONSUMERS,
        &echo_route("read", "/read", "{ methods: [{ introspection: oauth }] }"),
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    for _ in 0..3 {
        let r = c
            .get_with("/read", &[("authorization", "Bearer revoked")])
            .await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"meshgate\", error=\"invalid_token\"")
        );
    }
    assert_eq!(
        idp.introspection_calls(),
        1,
        "the inactive answer is cached"
    );
    let r = c
        .get_with("/read", &[("authorization", "Bearer stale")])
        .await;
    assert_eq!(r.status, 401);
    // Concurrent first uses of one token share one call.
    idp.set_token(
        "fresh",
        json!({"active": true, "client_id": "app-42", "exp": now() + 60}),
    );
    let before = idp.introspection_calls();
    let parallel = (0..8).map(|_| {
        let c = c.clone();
        async move {
            c.get_with("/read", &[("authorization", "Bearer fresh")])
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(parallel).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(idp.introspection_calls(), before + 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_503_and_not_cached() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = start(&node_yaml(
        &auth(&format!("http://{dead}/introspect")),
        CONSUMERS,
        &echo_route("read", "/read", "{ methods: [{ introspection: oauth }] }"),
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    let r = c
        .get_with("/read", &[("authorization", "Bearer anything")])
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["error"]["message"],
        "authentication service unavailable"
    );
    let r = c
        .get_with("/read", &[("authorization", "Bearer anything")])
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(
        node.handle().auth_stats().introspection_calls,
        2,
        "failures are not cached"
    );
}
