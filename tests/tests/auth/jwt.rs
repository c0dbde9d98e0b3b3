//! JWT bearer tokens: JWKS fetching and rotation, every supported algorithm, claim checks at
//! the leeway boundary, and the known attacks.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::idp::{SigningKey, TestIdp, now};
use support::{BOTH, Proto, TestNode};

use super::{echo_route, node_yaml, start};

fn claims(sub: &str, exp_in: i64) -> Value {
    json!({"sub": sub, "iss": "https://idp.test", "aud": "orders", "exp": now() + exp_in, "scope": "orders:read"})
}

fn pem_yaml(pem: &str) -> String {
    format!("\"{}\"", pem.replace('\n', "\\n"))
}

/// A JWKS provider `corp` (RS256 from the IdP) plus static ES256/ES384/EdDSA/PS256 keys.
async fn setup(extra_provider: &str, route_auth: &str) -> (TestIdp, TestNode, SigningKey) {
    let idp = TestIdp::start().await;
    let rsa = SigningKey::load("rsa-a", Algorithm::RS256, "a");
    idp.set_keys(vec![rsa.jwk()]);
    let es256 = SigningKey::load("ec-p256", Algorithm::ES256, "es256");
    let es384 = SigningKey::load("ec-p384", Algorithm::ES384, "es384");
    let ed = SigningKey::load("ed25519", Algorithm::EdDSA, "ed");
    let ps = SigningKey::load("rsa-b", Algorithm::PS256, "ps");
    let auth = format!(
        r#"auth:
  jwt:
    - name: corp
      issuer: https://idp.test
      audiences: [orders]
      algorithms: [RS256, ES256, ES384, EdDSA, PS256]
      leeway: 10s
      jwks: {{ url: "{url}", min_refetch_interval: 1h, refresh_interval: 1h }}
      keys:
        - {{ kid: es256, alg: ES256, pem: {es256} }}
        - {{ kid: es384, alg: ES384, pem: {es384} }}
        - {{ kid: ed, alg: EdDSA, pem: {ed} }}
        - {{ kid: ps, alg: PS256, pem: {ps} }}
      forward_claims: {{ email: x-user-email }}
      token: {{ cookie: session, query: access_token }}
{extra_provider}"#,
        url = idp.jwks_url(),
        es256 = pem_yaml(&es256.public_pem),
        es384 = pem_yaml(&es384.public_pem),
        ed = pem_yaml(&ed.public_pem),
        ps = pem_yaml(&ps.public_pem),
    );
    let consumers = "consumers:\n  - username: alice\n    id: c-alice\n    credentials: [{ jwt: { provider: corp, subject: alice } }]";
    let route = echo_route("orders", "/orders/*", route_auth);
    let node = start(&node_yaml(&auth, consumers, &route)).await;
    (idp, node, rsa)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn jwks_and_static_keys_of_every_algorithm_authenticate() {
    let (idp, node, rsa) = setup("", "{ methods: [{ jwt: corp }] }").await;
    let mut tokens = vec![rsa.sign(&claims("alice", 60))];
    for (file, alg, kid) in [
        ("ec-p256", Algorithm::ES256, "es256"),
        ("ec-p384", Algorithm::ES384, "es384"),
        ("ed25519", Algorithm::EdDSA, "ed"),
        ("rsa-b", Algorithm::PS256, "ps"),
    ] {
        tokens.push(SigningKey::load(file, alg, kid).sign(&claims("alice", 60)));
    }
    for proto in BOTH {
        let c = node.client(proto, "main");
        for token in &tokens {
            let r = c
                .get_with("/orders/1", &[("authorization", &bearer(token))])
                .await;
            assert_eq!(r.status, 200, "{proto:?} {token}: {}", r.text());
            let h = &r.json()["headers"];
            assert_eq!(h["x-consumer-id"], "c-alice");
            assert_eq!(h["x-credential-identifier"], "alice");
            assert_eq!(h["x-authenticated-scope"], "orders:read");
            assert!(h.get("authorization").is_none());
        }
    }
    // A subject with no configured consumer authenticates as a token consumer.
    let mut bob = claims("bob", 60);
    bob["email"] = json!("bob@example.test");
    let r = node
        .client(Proto::Http1, "main")
        .get_with("/orders/1", &[("authorization", &bearer(&rsa.sign(&bob)))])
        .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-consumer-id"], "corp:bob");
    assert_eq!(h["x-user-email"], "bob@example.test");
    assert_eq!(idp.jwks_fetches(), 1, "one fetch at load, none per request");
}

#[tokio::test]
async fn tokens_from_a_cookie_or_query_parameter_are_read_and_not_forwarded() {
    let (_idp, node, rsa) = setup("", "{ methods: [{ jwt: corp }] }").await;
    let token = rsa.sign(&claims("alice", 60));
    let c = node.client(Proto::Http1, "main");
    let r = c
        .get_with(
            "/orders/1",
            &[("cookie", &format!("theme=dark; session={token}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["cookie"], "theme=dark");
    let r = c.get(&format!("/orders/1?access_token={token}&x=1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["query"], "x=1");
}

#[tokio::test]
async fn claims_are_checked_at_the_leeway_boundary() {
    let (_idp, node, rsa) = setup("", "{ methods: [{ jwt: corp }] }").await;
    let c = node.client(Proto::Http1, "main");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("alice", 60);
        f(&mut c);
        rsa.sign(&c)
    };
    // leeway 10s; a few seconds of margin keep the verdicts independent of the test's speed.
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "expired within the leeway",
            with(&|c| c["exp"] = json!(now() - 5)),
            200,
        ),
        (
            "expired beyond the leeway",
            with(&|c| c["exp"] = json!(now() - 15)),
            401,
        ),
        (
            "nbf within the leeway",
            with(&|c| c["nbf"] = json!(now() + 5)),
            200,
        ),
        (
            "nbf beyond the leeway",
            with(&|c| c["nbf"] = json!(now() + 15)),
            401,
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.test")),
            401,
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!(["billing"])),
            401,
        ),
        (
            "audience in a list",
            with(&|c| c["aud"] = json!(["billing", "orders"])),
            200,
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            401,
        ),
    ];
    for (what, token, status) in cases {
        let r = c
            .get_with("/orders/1", &[("authorization", &bearer(&token))])
            .await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        if status == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"meshgate\", error=\"invalid_token\""),
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let (_idp, node, rsa) = setup("", "{ methods: [{ jwt: corp }] }").await;
    let c = node.client(Proto::Http1, "main");
    let body = B64.encode(claims("alice", 60).to_string());
    let seg = |v: Value| B64.encode(v.to_string());
    let hmac = |input: &str, key: &[u8]| {
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(key),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{sig}")
    };
    let valid = rsa.sign(&claims("alice", 60));
    let mut forged = Vec::new();
    for alg in ["none", "None", "nOnE"] {
        forged.push((
            format!("alg {alg}"),
            format!("{}.{body}.", seg(json!({"alg": alg, "kid": "a"}))),
        ));
    }
    forged.push((
        "empty signature".into(),
        valid[..=valid.rfind('.').unwrap()].to_string(),
    ));
    // HS256 keyed with the RSA public key the IdP publishes (the HS/RS confusion).
    let confused = format!("{}.{body}", seg(json!({"alg": "HS256", "kid": "a"})));
    forged.push((
        "HS256 with the RSA public key".into(),
        hmac(&confused, rsa.public_pem.as_bytes()),
    ));
    // A token carrying its own key.
    let attacker = b"attacker-chosen-secret-0123456789abcdef";
    let jwk = json!({"kty": "oct", "k": B64.encode(attacker)});
    let embedded = format!("{}.{body}", seg(json!({"alg": "HS256", "jwk": jwk})));
    forged.push(("embedded jwk".into(), hmac(&embedded, attacker)));
    let jku = format!(
        "{}.{body}",
        seg(json!({"alg": "RS256", "kid": "a", "jku": "http://127.0.0.1:1/evil"}))
    );
    let jku_signed = {
        let sig =
            jsonwebtoken::crypto::sign(jku.as_bytes(), &rsa.encoding, Algorithm::RS256).unwrap();
        format!("{jku}.{sig}")
    };
    forged.push(("jku".into(), jku_signed));
    for kid in [
        "../../../etc/passwd",
        "' OR '1'='1",
        "a; DROP TABLE keys --",
    ] {
        let token = format!("{}.{body}", seg(json!({"alg": "RS256", "kid": kid})));
        let sig =
            jsonwebtoken::crypto::sign(token.as_bytes(), &rsa.encoding, Algorithm::RS256).unwrap();
        forged.push((format!("kid {kid}"), format!("{token}.{sig}")));
    }
    forged.push(("tampered claims".into(), {
        let parts: Vec<&str> = valid.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims("admin", 60).to_string()),
            parts[2]
        )
    }));
    for (what, token) in forged {
        let r = c
            .get_with("/orders/1", &[("authorization", &bearer(&token))])
            .await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(
            r.json()["error"]["message"],
            "invalid credentials",
            "{what}"
        );
    }
    assert_eq!(
        c.get_with("/orders/1", &[("authorization", &bearer(&valid))])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_100_kb_token_is_refused_without_harm() {
    // Header limits raised above the 10 KB token so that it reaches the JWT's own size check
    // (the default 8 KB of headers would answer 431 first; docs/security.md).
    let security = "security:\n  limits: { max_header_bytes: 64KB }\n";
    let (_idp, node, rsa) = setup(security, "{ methods: [{ jwt: corp }] }").await;
    let huge = format!(
        "{}{}",
        rsa.sign(&claims("alice", 60)),
        "A".repeat(100 * 1024)
    );
    let medium = format!(
        "{}{}",
        rsa.sign(&claims("alice", 60)),
        "A".repeat(10 * 1024)
    );
    for proto in BOTH {
        let c = node.client(proto, "main");
        let auth = bearer(&huge);
        let req = c
            .request(http::Method::GET, "/orders/1")
            .header("authorization", auth.as_str())
            .body(support::client::empty())
            .unwrap();
        match c.send(req).await {
            Ok(r) => assert!(
                r.status == 431 || r.status == 401,
                "{proto:?}: {}",
                r.status
            ),
            // HTTP/2 may refuse the oversized header block by resetting the stream.
            Err(e) => assert_eq!(proto, Proto::Http2, "{e}"),
        }
        let r = c
            .get_with("/orders/1", &[("authorization", &bearer(&medium))])
            .await;
        assert_eq!(r.status, 401, "{proto:?}");
        // The node is fine.
        let fresh = node.client(proto, "main");
        let ok = fresh
            .get_with(
                "/orders/1",
                &[("authorization", &bearer(&rsa.sign(&claims("alice", 60))))],
            )
            .await;
        assert_eq!(ok.status, 200, "{proto:?}");
    }
}

#[tokio::test]
async fn jwks_rotation_is_picked_up_and_unknown_kids_cannot_hammer_the_idp() {
    let (idp, node, rsa) = setup("", "{ methods: [{ jwt: corp }] }").await;
    let c = node.client(Proto::Http1, "main");
    let ok = c
        .get_with(
            "/orders/1",
            &[("authorization", &bearer(&rsa.sign(&claims("alice", 60))))],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(idp.jwks_fetches(), 1);
    // The IdP rotates to key "b"; the first token signed with it triggers one refetch.
    let rotated = SigningKey::load("rsa-b", Algorithm::RS256, "b");
    idp.set_keys(vec![rotated.jwk()]);
    let r = c
        .get_with(
            "/orders/1",
            &[(
                "authorization",
                &bearer(&rotated.sign(&claims("alice", 60))),
            )],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.jwks_fetches(), 2);
    // Random kids: refused, and within min_refetch_interval (1h) no further fetch.
    let random = (0..30).map(|i| {
        let c = c.clone();
        let key = SigningKey::load("rsa-b", Algorithm::RS256, &format!("random-{i}"));
        async move {
            c.get_with(
                "/orders/1",
                &[("authorization", &bearer(&key.sign(&claims("alice", 60))))],
            )
            .await
            .status
        }
    });
    let statuses = futures_util::future::join_all(random).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(idp.jwks_fetches(), 2);
    // The old key is gone from the set: its tokens no longer verify.
    let old = c
        .get_with(
            "/orders/1",
            &[("authorization", &bearer(&rsa.sign(&claims("alice", 61))))],
        )
        .await;
    assert_eq!(old.status, 401);
}

#[tokio::test]
async fn required_scopes_answer_403_insufficient_scope() {
    let (_idp, node, rsa) = setup("", "{ methods: [{ jwt: corp }], scopes: [orders:write] }").await;
    let c = node.client(Proto::Http1, "main");
    let r = c
        .get_with(
            "/orders/1",
            &[("authorization", &bearer(&rsa.sign(&claims("alice", 60))))],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["message"], "insufficient_scope");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"meshgate\", error=\"insufficient_scope\", scope=\"orders:write\"")
    );
    let mut writer = claims("alice", 60);
    writer["scope"] = json!("orders:read orders:write");
    let r = c
        .get_with(
            "/orders/1",
            &[("authorization", &bearer(&rsa.sign(&writer)))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
