//! Access control and identity headers: ACL groups, anonymous fallback, several methods on one
//! route, client-sent identity headers stripped on every route, mTLS without a certificate.

use support::idp::cheap_phc;
use support::{BOTH, Backend, Proto};

use super::{echo_route, node_yaml, start};

fn consumers() -> String {
    format!(
        r#"consumers:
  - username: admin
    groups: [admins, staff]
    credentials: [{{ api_key: {{ id: admin, hash: "{}" }} }}]
  - username: intern
    groups: [staff, interns]
    credentials: [{{ api_key: {{ id: intern, hash: "{}" }} }}]
  - username: guest
    id: anonymous
    groups: [public]"#,
        cheap_phc("admin.0123456789abcdef"),
        cheap_phc("intern.0123456789abcdef"),
    )
}

const ADMIN: (&str, &str) = ("x-api-key", "admin.0123456789abcdef");
const INTERN: (&str, &str) = ("x-api-key", "intern.0123456789abcdef");

#[tokio::test]
async fn acl_groups_allow_and_deny() {
    let routes = [
        echo_route(
            "staff",
            "/staff",
            "{ methods: [api_key], acl: { allow: [staff], deny: [interns] } }",
        ),
        echo_route(
            "admins",
            "/admins",
            "{ methods: [api_key], acl: { allow: [admins] } }",
        ),
    ]
    .concat();
    let node = start(&node_yaml("", &consumers(), &routes)).await;
    let c = node.client(Proto::Http1, "main");
    let cases = [
        ("/staff", ADMIN, 200),
        ("/staff", INTERN, 403),
        ("/admins", ADMIN, 200),
        ("/admins", INTERN, 403),
    ];
    for (path, key, status) in cases {
        let r = c.get_with(path, &[key]).await;
        assert_eq!(r.status, status, "{path} {key:?}");
        if status == 403 {
            assert_eq!(
                r.json()["error"]["message"],
                "consumer is not allowed on this route"
            );
        }
    }
}

#[tokio::test]
async fn anonymous_applies_only_without_credentials() {
    let route = echo_route(
        "catalog",
        "/catalog",
        "{ methods: [api_key, basic], anonymous: guest }",
    );
    let node = start(&node_yaml("", &consumers(), &route)).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c.get("/catalog").await;
        assert_eq!(r.status, 200);
        let h = &r.json()["headers"];
        assert_eq!(h["x-consumer-id"], "anonymous");
        assert_eq!(h["x-consumer-username"], "guest");
        assert_eq!(h["x-anonymous-consumer"], "true");
        assert!(h.get("x-credential-identifier").is_none());
        let r = c.get_with("/catalog", &[ADMIN]).await;
        assert_eq!(r.json()["headers"]["x-consumer-username"], "admin");
        assert!(r.json()["headers"].get("x-anonymous-consumer").is_none());
        // A presented but wrong credential is an error, not an anonymous visit.
        let r = c
            .get_with("/catalog", &[("x-api-key", "admin.wrong-secret-0000")])
            .await;
        assert_eq!(r.status, 401);
        let challenges: Vec<&str> = r
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            challenges,
            [
                "ApiKey realm=\"meshgate\"",
                "Basic realm=\"meshgate\", charset=\"UTF-8\""
            ]
        );
    }
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let backend = Backend::start("b").await;
    let routes = format!(
        r#"  - name: open
    match: {{ paths: ["/open/*"] }}
    proxy: {{ upstream: b, strip_prefix: /open }}
  - name: keyed
    match: {{ paths: ["/keyed/*"] }}
    proxy: {{ upstream: b, strip_prefix: /keyed }}
    auth: {{ methods: [api_key] }}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}"#,
        backend.addr()
    );
    let node = start(&node_yaml("", &consumers(), &routes)).await;
    let spoofed = [
        ("x-consumer-id", "admin"),
        ("x-consumer-username", "admin"),
        ("x-credential-identifier", "admin"),
        ("x-authenticated-scope", "everything"),
        ("x-anonymous-consumer", "false"),
    ];
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c.get_with("/open/echo", &spoofed).await;
        assert_eq!(r.status, 200);
        let h = &r.json()["headers"];
        for (name, _) in spoofed {
            assert!(
                h.get(name).is_none(),
                "{proto:?}: {name} reached the upstream: {h}"
            );
        }
        let mut with_key = spoofed.to_vec();
        with_key.push(INTERN);
        let r = c.get_with("/keyed/echo", &with_key).await;
        let h = &r.json()["headers"];
        assert_eq!(h["x-consumer-username"], "intern", "{proto:?}");
        assert_eq!(h["x-credential-identifier"], "intern");
        assert!(h.get("x-authenticated-scope").is_none());
        assert!(h.get("x-anonymous-consumer").is_none());
        assert!(h.get("x-api-key").is_none());
    }
}

#[tokio::test]
async fn mtls_without_a_client_certificate_is_401_without_a_challenge() {
    let consumers = "consumers:\n  - username: web\n    credentials: [{ mtls: { spiffe_id: \"spiffe://mesh.local/ns/shop/sa/web\" } }]";
    let node = start(&node_yaml(
        "",
        consumers,
        &echo_route("mesh", "/mesh", "{ methods: [mtls] }"),
    ))
    .await;
    let r = node.client(Proto::Http1, "main").get("/mesh").await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_none());
}

#[tokio::test]
async fn verified_client_certificates_map_to_consumers() {
    use support::tls::{TestCa, TlsClientOptions, https_get};
    let ca = TestCa::new("edge CA");
    let clients = TestCa::new("client CA");
    let server = ca.server(&["gateway.test"]);
    let yaml = format!(
        r#"listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates: [{{ cert: "{}", key: "{}" }}]
      client_auth: {{ ca: "{}", required: false }}
consumers:
  - username: billing
    groups: [internal]
    credentials: [{{ mtls: {{ san: billing.internal }} }}]
routes:
{}"#,
        server.cert.display(),
        server.key.display(),
        clients.ca_path().display(),
        echo_route(
            "mesh",
            "/mesh",
            "{ methods: [mtls], acl: { allow: [internal] } }"
        ),
    );
    let node = start(&yaml).await;
    let addr = node.addr("https");
    let with_cert = |name: &str| TlsClientOptions {
        client_cert: Some(clients.client(name)),
        ..TlsClientOptions::trusting(&ca)
    };
    let r = https_get(
        addr,
        "gateway.test",
        "/mesh",
        &with_cert("billing.internal"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["headers"]["x-consumer-username"], "billing");
    assert_eq!(
        seen["headers"]["x-credential-identifier"],
        "billing.internal"
    );
    // A valid certificate for another name maps to no consumer; no certificate is absent.
    let r = https_get(
        addr,
        "gateway.test",
        "/mesh",
        &with_cert("mallory.internal"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    let r = https_get(
        addr,
        "gateway.test",
        "/mesh",
        &TlsClientOptions::trusting(&ca),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
}
