//! TLS towards upstreams: re-encryption to a TLS backend, and the mesh path — gateway →
//! sidecar A → mTLS → sidecar B → service B — with identities checked at every hop.

use support::tls::{IssuedFiles, MeshCa, TestCa};
use support::{Backend, Proto, TestNode};

/// A meshgate node playing a TLS backend: one HTTPS listener answering `body`.
async fn tls_backend(cert: &IssuedFiles, body: &str) -> TestNode {
    TestNode::start(&format!(
        r#"
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls: {{ certificates: [{{ cert: "{}", key: "{}" }}] }}
routes:
  - {{ respond: {{ body: "{body}" }} }}
"#,
        cert.cert.display(),
        cert.key.display()
    ))
    .await
}

#[tokio::test]
async fn re_encrypts_to_a_tls_upstream_and_refuses_an_untrusted_one() {
    let ca = TestCa::new("backend CA");
    let backend = tls_backend(&ca.server(&["backend.test"]), "over tls").await;
    let other_ca = TestCa::new("someone else");
    let gateway = TestNode::start(&format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/good"] }}, proxy: {{ upstream: good }} }}
  - {{ match: {{ paths: ["/untrusted"] }}, proxy: {{ upstream: untrusted }} }}
  - {{ match: {{ paths: ["/wrong-name"] }}, proxy: {{ upstream: wrong-name }} }}
upstreams:
  - name: good
    targets: [{{ address: "{addr}" }}]
    tls: {{ ca: "{ca}", server_name: backend.test }}
  - name: untrusted
    targets: [{{ address: "{addr}" }}]
    tls: {{ ca: "{other}", server_name: backend.test }}
  - name: wrong-name
    targets: [{{ address: "{addr}" }}]
    tls: {{ ca: "{ca}", server_name: elsewhere.test }}
"#,
        addr = backend.addr("https"),
        ca = ca.ca_path().display(),
        other = other_ca.ca_path().display(),
    ))
    .await;
    let c = gateway.client(Proto::Http1, "main");
    let r = c.get("/good").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "over tls");
    for path in ["/untrusted", "/wrong-name"] {
        let r = c.get(path).await;
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(
            r.json()["error"]["message"],
            "upstream TLS handshake failed"
        );
    }
}

fn sidecar(ca: &MeshCa, service: &str, allow: &[&str], app: &Backend, outbound: &str) -> String {
    let rules: Vec<String> = allow
        .iter()
        .map(|s| {
            format!(
                "      - {{ source: \"spiffe://{}/ns/default/svc/{s}\", action: allow }}\n",
                ca.trust_domain
            )
        })
        .collect();
    format!(
        r#"
mode: sidecar
mesh:
  trust_domain: {td}
  service: {service}
  identity: {{ local_ca: {{ dir: "{dir}" }} }}
  authorization:
    default: deny
    rules:
{rules}
listeners:
  - {{ name: inbound, address: "127.0.0.1:0", mesh: inbound }}
  - {{ name: outbound, address: "127.0.0.1:0" }}
routes:
  - {{ listeners: [inbound], proxy: {{ upstream: local-app }} }}
{outbound}
upstreams:
  - {{ name: local-app, targets: [{{ address: "{app}" }}] }}
"#,
        td = ca.trust_domain,
        dir = ca.path().display(),
        rules = rules.concat(),
        app = app.addr(),
    )
}

#[tokio::test]
async fn gateway_to_sidecar_a_to_sidecar_b_over_mtls_with_identities_checked() {
    let ca = MeshCa::new("mesh.test");
    let app_b = Backend::start("service-b").await;
    let sidecar_b = TestNode::start(&sidecar(&ca, "b", &["a"], &app_b, "")).await;
    let b_inbound = sidecar_b.addr("inbound");

    let app_a = Backend::start("service-a").await;
    let a_config = sidecar(
        &ca,
        "a",
        &["gateway"],
        &app_a,
        "  - { listeners: [outbound], proxy: { upstream: service-b } }",
    )
    .replace(
        "upstreams:\n",
        &format!(
            "upstreams:\n  - {{ name: service-b, targets: [{{ address: \"{b_inbound}\" }}], mesh: {{ service: b }} }}\n"
        ),
    );
    let sidecar_a = TestNode::start(&a_config).await;
    let a_inbound = sidecar_a.addr("inbound");
    let a_outbound = sidecar_a.addr("outbound");

    let gateway = TestNode::start(&format!(
        r#"
mesh:
  trust_domain: {td}
  service: gateway
  identity: {{ local_ca: {{ dir: "{dir}" }} }}
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/a/*"] }}, proxy: {{ upstream: service-a, strip_prefix: /a }} }}
  - {{ match: {{ paths: ["/b-direct/*"] }}, proxy: {{ upstream: service-b, strip_prefix: /b-direct }} }}
  - {{ match: {{ paths: ["/b-as-a/*"] }}, proxy: {{ upstream: b-claimed-as-a, strip_prefix: /b-as-a }} }}
upstreams:
  - {{ name: service-a, targets: [{{ address: "{a_inbound}" }}], mesh: {{ service: a }} }}
  - {{ name: service-b, targets: [{{ address: "{b_inbound}" }}], mesh: {{ service: b }} }}
  - {{ name: b-claimed-as-a, targets: [{{ address: "{b_inbound}" }}], mesh: {{ service: a }} }}
"#,
        td = ca.trust_domain,
        dir = ca.path().display(),
    ))
    .await;
    let c = gateway.client(Proto::Http1, "public");

    // edge → gateway → mTLS → sidecar A → service A → sidecar A outbound → mTLS → sidecar B
    // → service B, and back.
    let r = c.get(&format!("/a/call/{a_outbound}/hello")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "service-a -> hello from service-b");

    // B only accepts A: the gateway calling B directly is refused by B's sidecar.
    let r = c.get("/b-direct/hello").await;
    assert_eq!(r.status, 403);
    assert!(
        r.text()
            .contains("spiffe://mesh.test/ns/default/svc/gateway may not call")
    );

    // An endpoint that is not who the upstream says: the handshake fails (502), never a
    // plaintext fallback.
    let r = c.get("/b-as-a/hello").await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json()["error"]["message"],
        "upstream TLS handshake failed"
    );
    assert_eq!(
        app_b.requests(),
        1,
        "only the authorized chain reached service B"
    );
}
