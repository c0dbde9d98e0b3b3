use argon2::{Algorithm as Argon2Algorithm, Argon2, Params, PasswordHasher, Version};

use crate::load::{Format, parse_with_env};

/// A cheap Argon2id hash (tests only; real hashes come from `meshgate hash-key`).
fn phc(secret: &str) -> String {
    Argon2::new(
        Argon2Algorithm::Argon2id,
        Version::V0x13,
        Params::new(64, 1, 1, None).unwrap(),
    )
    .hash_password(secret.as_bytes())
    .unwrap()
    .to_string()
}

fn base(extra: &str) -> String {
    format!(
        r#"
listeners: [{{ name: main, address: "127.0.0.1:0" }}]
auth:
  jwt:
    - name: corp
      algorithms: [HS256]
      keys: [{{ kid: k1, alg: HS256, secret: "0123456789abcdef0123456789abcdef" }}]
      forward_claims: {{ email: x-user-email }}
  introspection:
    - {{ name: oauth, endpoint: "http://127.0.0.1:9/introspect", client_id: gw, client_secret: s }}
consumers:
  - username: alice
    id: c-1
    groups: [admins]
    credentials:
      - api_key: {{ id: alice-1, hash: "{hash}" }}
      - basic: {{ username: alice, password_hash: "{hash}" }}
      - jwt: {{ provider: corp, subject: alice@corp }}
      - oauth2: {{ provider: oauth, subject: app-1 }}
      - mtls: {{ spiffe_id: "spiffe://mesh.local/ns/a/sa/alice" }}
  - username: guest
{extra}
"#,
        hash = phc("alice-1.secret")
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

#[test]
fn a_full_auth_config_compiles_and_indexes_credentials() {
    let text = base(
        r#"routes:
  - name: api
    match: { paths: ["/api/*"] }
    respond: { status: 200 }
    auth:
      methods: [api_key, basic, mtls, { jwt: corp }, { introspection: oauth }]
      anonymous: guest
      acl: { allow: [admins], deny: [banned] }
      scopes: [read]
  - name: open
    match: { paths: ["/open"] }
    respond: { status: 200 }"#,
    );
    let config = parse_with_env(&text, Format::Yaml, "t", &|_| None).unwrap();
    let compiled = crate::compile(&config).unwrap();
    let auth = &compiled.auth;
    assert_eq!(&*auth.api_keys["alice-1"].consumer.id, "c-1");
    assert_eq!(&*auth.basic["alice"].consumer.username, "alice");
    assert_eq!(
        &*auth.jwt_subjects["corp"]["alice@corp"].consumer.username,
        "alice"
    );
    assert_eq!(&*auth.oauth2_subjects["oauth"]["app-1"].id, "app-1");
    assert!(
        auth.mtls
            .by_spiffe_id
            .contains_key("spiffe://mesh.local/ns/a/sa/alice")
    );
    assert!(auth.identity_headers.iter().any(|h| h == "x-user-email"));
    assert!(auth.identity_headers.iter().any(|h| h == "x-consumer-id"));
    let api = &compiled.routes[0].auth;
    let policy = api.policy.as_ref().unwrap();
    assert_eq!(policy.methods.len(), 5);
    assert_eq!(&*policy.anonymous.as_ref().unwrap().username, "guest");
    assert!(compiled.routes[1].auth.policy.is_none());
    assert!(std::sync::Arc::ptr_eq(
        &api.shared,
        &compiled.routes[1].auth.shared
    ));
    // Each compile gets a larger serial (the node uses it to order generations).
    let again = crate::compile(&config).unwrap();
    assert!(again.auth.serial > compiled.auth.serial);
}

#[test]
fn each_bad_auth_config_reports_its_field_path() {
    let route = |auth: &str| {
        base(&format!(
            "routes:\n  - {{ match: {{ paths: [\"/x\"] }}, respond: {{}}, auth: {auth} }}"
        ))
    };
    let cases: Vec<(String, &str)> = vec![
        (route("{ methods: [] }"), "routes[0].auth.methods"),
        (route("{ methods: [{ jwt: nope }] }"), "routes[0].auth.methods[0].jwt"),
        (route("{ methods: [{ introspection: nope }] }"), "routes[0].auth.methods[0].introspection"),
        (route("{ methods: [api_key, api_key] }"), "routes[0].auth.methods[1]"),
        (route("{ methods: [api_key], anonymous: nobody }"), "routes[0].auth.anonymous"),
        (route("{ methods: [api_key], scopes: [\"a b\"] }"), "routes[0].auth.scopes[0]"),
        (route("{ methods: [api_key], acl: { allow: [\"\"] } }"), "routes[0].auth.acl.allow[0]"),
        (route("{ methods: [password] }"), "routes[0].auth.methods[0]"),
        (
            "auth: { jwt: [{ name: x, algorithms: [none], keys: [{ alg: HS256, secret: '0123456789abcdef0123456789abcdef' }] }] }".into(),
            "auth.jwt[0].algorithms[0]",
        ),
        ("auth: { jwt: [{ name: x, algorithms: [RS256] }] }".into(), "auth.jwt[0]"),
        (
            "auth: { jwt: [{ name: x, algorithms: [HS256], keys: [{ alg: HS256, secret: short }] }] }".into(),
            "auth.jwt[0].keys[0].secret",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], keys: [{ alg: RS256, pem: nonsense }] }] }".into(),
            "auth.jwt[0].keys[0].pem",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], keys: [{ alg: HS256, secret: '0123456789abcdef0123456789abcdef' }] }] }".into(),
            "auth.jwt[0].keys[0].alg",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'idp/jwks' } }] }".into(),
            "auth.jwt[0].jwks.url",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'http://i/j' }, leeway: 1h }] }".into(),
            "auth.jwt[0].leeway",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'http://i/j' }, max_token_size: 100000 }] }".into(),
            "auth.jwt[0].max_token_size",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'http://i/j' }, forward_claims: { sub: x-consumer-id } }] }".into(),
            "auth.jwt[0].forward_claims.sub",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'http://i/j' }, token: { bearer: false } }] }".into(),
            "auth.jwt[0].token",
        ),
        (
            "auth: { introspection: [{ name: o, endpoint: 'http://i/x', client_id: '', client_secret: s }] }".into(),
            "auth.introspection[0].client_id",
        ),
        (
            "auth: { introspection: [{ name: o, endpoint: 'http://i/x', client_id: c }] }".into(),
            "auth.introspection[0]",
        ),
        (
            "auth: { introspection: [{ name: o, endpoint: 'https://i/x', client_id: c, client_secret: s, client_secret_file: /f }] }".into(),
            "auth.introspection[0]",
        ),
        (
            "auth: { introspection: [{ name: o, endpoint: 'https://i/x', client_id: c, client_secret_file: '' }] }".into(),
            "auth.introspection[0].client_secret_file",
        ),
        (
            "auth: { introspection: [{ name: o, endpoint: 'http://i/x', tls: {}, client_id: c, client_secret: s }] }".into(),
            "auth.introspection[0].tls",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'https://i/j', tls: { server_name: 'a b' } } }] }".into(),
            "auth.jwt[0].jwks.tls.server_name",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'https://i/j', tls: { client_certificate: { cert: c.pem, key: '' } } } }] }".into(),
            "auth.jwt[0].jwks.tls.client_certificate.key",
        ),
        (
            "auth: { jwt: [{ name: x, algorithms: [RS256], jwks: { url: 'ftp://i/j' } }] }".into(),
            "auth.jwt[0].jwks.url",
        ),
        ("auth: { secret_hashing: { max_concurrent: 0 } }".into(), "auth.secret_hashing.max_concurrent"),
        ("auth: { realm: 'a\"b' }".into(), "auth.realm"),
        ("auth: { api_key: { header: 'x y' } }".into(), "auth.api_key.header"),
        ("consumers: [{ username: a }, { username: a }]".into(), "consumers[1].username"),
        ("consumers: [{ username: ' a' }]".into(), "consumers[0].username"),
        (
            "consumers: [{ username: a, credentials: [{ api_key: { id: 'a.b', hash: x } }] }]".into(),
            "consumers[0].credentials[0].api_key.id",
        ),
        (
            "consumers: [{ username: a, credentials: [{ api_key: { id: k, hash: 'plain' } }] }]".into(),
            "consumers[0].credentials[0].api_key.hash",
        ),
        (
            "consumers: [{ username: a, credentials: [{ api_key: { id: k, hash: '$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA' } }] }]".into(),
            "consumers[0].credentials[0].api_key.hash",
        ),
        (
            "consumers: [{ username: a, credentials: [{ basic: { username: 'a:b', password_hash: x } }] }]".into(),
            "consumers[0].credentials[0].basic.username",
        ),
        (
            "consumers: [{ username: a, credentials: [{ jwt: { provider: nope, subject: s } }] }]".into(),
            "consumers[0].credentials[0].jwt.provider",
        ),
        (
            "consumers: [{ username: a, credentials: [{ mtls: { subject: 'CN=a', san: b } }] }]".into(),
            "consumers[0].credentials[0].mtls",
        ),
        (
            "consumers: [{ username: a, credentials: [{ mtls: { spiffe_id: 'http://x' } }] }]".into(),
            "consumers[0].credentials[0].mtls.spiffe_id",
        ),
    ];
    for (text, path) in cases {
        let found = problems(&text);
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}:"))),
            "expected a problem at {path}, got {found:#?}\nin:\n{text}"
        );
    }
}

#[test]
fn https_identity_providers_with_tls_settings_compile() {
    let text = r#"
listeners: [{ name: main, address: "127.0.0.1:0" }]
auth:
  jwt:
    - name: idp
      algorithms: [RS256]
      jwks:
        url: "https://idp.example/jwks"
        tls: { ca: /etc/idp-ca.pem, server_name: idp.internal }
  introspection:
    - name: o
      endpoint: "https://idp.example/introspect"
      client_id: gw
      client_secret_file: /run/secrets/introspection
    - name: p
      endpoint: "https://idp.example/introspect"
      client_id: gw
      client_secret: "${SECRET}"
"#;
    let config = parse_with_env(text, Format::Yaml, "t", &|v| {
        (v == "SECRET").then(|| "from-env".to_string())
    })
    .unwrap();
    let compiled = crate::compile(&config).unwrap();
    let jwks = compiled.auth.jwt["idp"].jwks.as_ref().unwrap();
    assert_eq!(jwks.field, "auth.jwt[0].jwks");
    let tls = jwks.tls.as_ref().unwrap();
    assert_eq!(tls.ca.as_deref(), Some("/etc/idp-ca.pem"));
    assert_eq!(tls.server_name.as_deref(), Some("idp.internal"));
    let o = &compiled.auth.introspection["o"];
    assert_eq!(o.field, "auth.introspection[0]");
    assert!(o.tls.is_none());
    assert_eq!(
        o.client_secret,
        super::ClientSecret::File("/run/secrets/introspection".into())
    );
    assert_eq!(
        compiled.auth.introspection["p"].client_secret,
        super::ClientSecret::Value("from-env".into())
    );
}

#[test]
fn expensive_argon2_parameters_are_refused() {
    let heavy = Argon2::new(
        Argon2Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, None).unwrap(),
    );
    let text = heavy.hash_password(b"x.y").unwrap().to_string();
    assert!(super::validate::check_phc(&text).is_ok());
    let huge = text.replace("m=8,", "m=4194304,");
    let err = super::validate::check_phc(&huge).unwrap_err();
    assert!(err.contains("exceed"), "{err}");
}
