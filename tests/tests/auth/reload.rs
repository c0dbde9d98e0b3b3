//! Auth state across config reloads: verified keys and JWKS key sets survive an unrelated
//! change; a changed hash takes effect at once.

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::Proto;
use support::idp::{SigningKey, TestIdp, cheap_phc, now};

use super::{echo_route, node_yaml};

const KEY: &str = "svc.0123456789abcdefgh";

fn yaml(idp: &TestIdp, hash: &str, extra_route: &str) -> String {
    let auth = format!(
        "auth:\n  jwt:\n    - {{ name: corp, algorithms: [RS256], jwks: {{ url: \"{}\", min_refetch_interval: 1h }} }}",
        idp.jwks_url()
    );
    let consumers = format!(
        "consumers:\n  - username: svc\n    credentials: [{{ api_key: {{ id: svc, hash: \"{hash}\" }} }}]"
    );
    let routes = [
        echo_route("keyed", "/keyed", "{ methods: [api_key] }"),
        echo_route("jwt", "/jwt", "{ methods: [{ jwt: corp }] }"),
        extra_route.to_string(),
    ]
    .concat();
    node_yaml(&auth, &consumers, &routes)
}

#[tokio::test]
async fn caches_and_key_sets_survive_reloads_and_changed_hashes_apply_at_once() {
    let idp = TestIdp::start().await;
    let rsa = SigningKey::load("rsa-a", Algorithm::RS256, "a");
    idp.set_keys(vec![rsa.jwk()]);
    let hash = cheap_phc(KEY);
    let node = support::TestNode::start(&yaml(&idp, &hash, "")).await;
    let c = node.client(Proto::Http1, "main");
    let token = rsa.sign(&json!({"sub": "svc", "exp": now() + 60}));
    let bearer = format!("Bearer {token}");
    assert_eq!(
        c.get_with("/keyed", &[("x-api-key", KEY)]).await.status,
        200
    );
    assert_eq!(
        c.get_with("/jwt", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    let before = node.handle().auth_stats();
    assert_eq!((before.argon2_verifications, before.jwks_fetches), (1, 1));

    let extra = echo_route("new", "/new", "");
    let event = node.rewrite_config(&yaml(&idp, &hash, &extra)).await;
    assert!(event.result.is_ok(), "{event:?}");
    assert_eq!(c.get("/new").await.status, 200);
    assert_eq!(
        c.get_with("/keyed", &[("x-api-key", KEY)]).await.status,
        200
    );
    assert_eq!(
        c.get_with("/jwt", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    assert_eq!(
        node.handle().auth_stats(),
        before,
        "a reload cost no Argon2 run and no JWKS fetch"
    );

    // The key's hash is replaced: the cached verification no longer counts.
    let event = node
        .rewrite_config(&yaml(&idp, &cheap_phc("svc.another-secret-000000"), &extra))
        .await;
    assert!(event.result.is_ok(), "{event:?}");
    assert_eq!(
        c.get_with("/keyed", &[("x-api-key", KEY)]).await.status,
        401
    );
    assert_eq!(
        c.get_with("/keyed", &[("x-api-key", "svc.another-secret-000000")])
            .await
            .status,
        200
    );
}
