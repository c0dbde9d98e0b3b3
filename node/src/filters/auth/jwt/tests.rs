use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode};
use meshgate_config::auth::CompiledAuth;
use serde_json::json;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn compiled(provider_extra: &str) -> Arc<CompiledAuth> {
    let text = format!(
        r#"
auth:
  jwt:
    - name: corp
      issuer: https://idp.test
      audiences: [api]
      algorithms: [HS256, RS256]
      leeway: 10s
      keys:
        - {{ kid: hs, alg: HS256, secret: "{SECRET}" }}
        - {{ kid: rs, alg: RS256, pem: "{rsa}" }}
{provider_extra}
consumers:
  - username: alice
    credentials: [{{ jwt: {{ provider: corp, subject: alice }} }}]
"#,
        rsa = include_str!("../../../../../tests/fixtures/jwt/rsa-a.pub.pem").replace('\n', "\\n")
    );
    let config = meshgate_config::parse_str(&text, meshgate_config::Format::Yaml).unwrap();
    meshgate_config::compile(&config).unwrap().auth
}

fn runtime(auth: &CompiledAuth) -> JwtRuntime {
    JwtRuntime::new(auth.jwt["corp"].clone(), None)
}

fn claims(exp_offset: f64) -> serde_json::Value {
    let now = unix_now();
    json!({"sub": "alice", "iss": "https://idp.test", "aud": "api", "exp": (now + exp_offset) as i64, "scope": "read write"})
}

fn hs_token(claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token with a hand-written header, signed with HMAC-SHA256 under `secret`.
fn forged(header: serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{sig}")
}

async fn check(
    rt: &JwtRuntime,
    auth: &CompiledAuth,
    token: &str,
) -> Result<Identity, &'static str> {
    let digester = SecretDigester::new().unwrap();
    match rt.authenticate(token, auth, &digester).await {
        Attempt::Ok(identity) => Ok(identity),
        Attempt::Rejected(reason) => Err(reason),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_maps_to_its_consumer_with_scopes() {
    let auth = compiled("");
    let rt = runtime(&auth);
    let identity = check(&rt, &auth, &hs_token(&claims(60.0))).await.unwrap();
    assert_eq!(&*identity.consumer.username, "alice");
    assert_eq!(identity.credential.as_deref(), Some("alice"));
    assert_eq!(identity.scopes.unwrap(), "read write");
}

#[tokio::test]
async fn alg_none_and_its_spellings_are_refused() {
    let auth = compiled("");
    let rt = runtime(&auth);
    for alg in ["none", "None", "nOnE", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "hs"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims(60.0).to_string());
        for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
            assert!(check(&rt, &auth, &token).await.is_err(), "{alg}: {token}");
        }
    }
    // A valid HS256 token with its signature cut off.
    let token = hs_token(&claims(60.0));
    let unsigned = &token[..=token.rfind('.').unwrap()];
    assert_eq!(
        check(&rt, &auth, unsigned).await.unwrap_err(),
        "empty signature"
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let auth = compiled("");
    let rt = runtime(&auth);
    let pem = include_str!("../../../../../tests/fixtures/jwt/rsa-a.pub.pem");
    // Under the RSA key's kid, no key is bound to HS256: the RSA key is never tried as a secret.
    let token = forged(
        json!({"alg": "HS256", "kid": "rs"}),
        &claims(60.0),
        pem.as_bytes(),
    );
    assert_eq!(check(&rt, &auth, &token).await.unwrap_err(), "unknown kid");
    let token = forged(
        json!({"alg": "HS256", "kid": "hs"}),
        &claims(60.0),
        pem.as_bytes(),
    );
    assert_eq!(
        check(&rt, &auth, &token).await.unwrap_err(),
        "bad signature"
    );
}

#[tokio::test]
async fn embedded_keys_crit_and_duplicate_members_are_refused() {
    let auth = compiled("");
    let rt = runtime(&auth);
    let jwk = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)});
    for header in [
        json!({"alg": "HS256", "kid": "hs", "jwk": jwk}),
        json!({"alg": "HS256", "kid": "hs", "jku": "http://evil.test/jwks"}),
        json!({"alg": "HS256", "kid": "hs", "x5u": "http://evil.test/cert"}),
        json!({"alg": "HS256", "kid": "hs", "x5c": ["MIIB"]}),
        json!({"alg": "HS256", "kid": "hs", "crit": ["exp"], "exp": 1}),
        json!({"alg": "ES512", "kid": "hs"}),
    ] {
        let token = forged(header.clone(), &claims(60.0), SECRET.as_bytes());
        assert!(check(&rt, &auth, &token).await.is_err(), "{header}");
    }
    let dup = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","alg":"none","kid":"hs"}"#),
        URL_SAFE_NO_PAD.encode(claims(60.0).to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        dup.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        check(&rt, &auth, &format!("{dup}.{sig}"))
            .await
            .unwrap_err(),
        "malformed header"
    );
}

#[tokio::test]
async fn malformed_tokens_and_odd_kids_are_refused() {
    let auth = compiled("");
    let rt = runtime(&auth);
    let good = hs_token(&claims(60.0));
    let cases = [
        "".to_string(),
        "a.b".to_string(),
        "a.b.c.d.e".to_string(),
        format!("{good}="),
        good.replace('.', ".."),
        format!("{good}.x"),
    ];
    for token in &cases {
        assert!(check(&rt, &auth, token).await.is_err(), "{token}");
    }
    for kid in [
        "../../../../dev/null",
        "' OR 1=1 --",
        "hs\u{0}",
        &"k".repeat(300),
    ] {
        let token = forged(
            json!({"alg": "HS256", "kid": kid}),
            &claims(60.0),
            SECRET.as_bytes(),
        );
        assert!(check(&rt, &auth, &token).await.is_err(), "{kid:?}");
    }
    let big = json!({"sub": "alice", "exp": unix_now() as i64 + 60, "pad": "x".repeat(9000)});
    assert_eq!(
        check(&rt, &auth, &hs_token(&big)).await.unwrap_err(),
        "token too large"
    );
}

#[test]
fn exp_and_nbf_honour_the_leeway_to_the_second() {
    let auth = compiled("");
    let spec = &auth.jwt["corp"];
    let now = 1_000_000.0;
    let with = |extra: serde_json::Value| {
        let mut c = json!({"iss": "https://idp.test", "aud": "api"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c.as_object().unwrap().clone()
    };
    // leeway 10s: valid while now < exp + 10
    assert!(check_claims(spec, &with(json!({"exp": now - 9.0})), now).is_ok());
    assert_eq!(
        check_claims(spec, &with(json!({"exp": now - 10.0})), now),
        Err("token expired")
    );
    assert_eq!(
        check_claims(spec, &with(json!({"exp": "soon"})), now),
        Err("exp is not a number")
    );
    // not before nbf - 10
    assert!(
        check_claims(
            spec,
            &with(json!({"exp": now + 60.0, "nbf": now + 10.0})),
            now
        )
        .is_ok()
    );
    assert_eq!(
        check_claims(
            spec,
            &with(json!({"exp": now + 60.0, "nbf": now + 10.5})),
            now
        ),
        Err("token not yet valid")
    );
    assert_eq!(
        check_claims(spec, &with(json!({})), now),
        Err("a required claim is missing")
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let auth = compiled("");
    let spec = &auth.jwt["corp"];
    let now = 1_000_000.0;
    let c = |v: serde_json::Value| v.as_object().unwrap().clone();
    let exp = now + 60.0;
    assert!(
        check_claims(
            spec,
            &c(json!({"exp": exp, "iss": "https://idp.test", "aud": ["x", "api"]})),
            now
        )
        .is_ok()
    );
    assert_eq!(
        check_claims(
            spec,
            &c(json!({"exp": exp, "iss": "https://evil.test", "aud": "api"})),
            now
        ),
        Err("wrong issuer")
    );
    assert_eq!(
        check_claims(spec, &c(json!({"exp": exp, "aud": "api"})), now),
        Err("wrong issuer")
    );
    assert_eq!(
        check_claims(
            spec,
            &c(json!({"exp": exp, "iss": "https://idp.test", "aud": "other"})),
            now
        ),
        Err("wrong audience")
    );
    assert_eq!(
        check_claims(
            spec,
            &c(json!({"exp": exp, "iss": "https://idp.test"})),
            now
        ),
        Err("wrong audience")
    );
}

#[tokio::test]
async fn unmapped_subjects_become_token_consumers_unless_required() {
    let auth = compiled("      groups_claim: roles");
    let rt = runtime(&auth);
    let mut c = claims(60.0);
    c["sub"] = json!("bob");
    c["roles"] = json!(["ops", "dev"]);
    let identity = check(&rt, &auth, &hs_token(&c)).await.unwrap();
    assert_eq!(&*identity.consumer.id, "corp:bob");
    assert!(!identity.consumer.configured);
    assert_eq!(
        identity.consumer.groups,
        [Arc::from("ops"), Arc::from("dev")]
    );
    let strict = compiled("      consumer_required: true");
    let rt = runtime(&strict);
    assert_eq!(
        check(&rt, &strict, &hs_token(&c)).await.unwrap_err(),
        "no consumer for this token"
    );
}
