//! The gauges and counters other subsystems feed: auth rejections, the circuit breaker,
//! endpoint health, certificate expiry.

use support::prometheus::Scrape;
use support::{Proto, TestNode, eventually};

async fn scrape_when(node: &TestNode, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let admin = node.admin();
    eventually(what, || async {
        let s = Scrape::fetch(admin).await;
        done(&s).then_some(s)
    })
    .await
}

#[tokio::test]
async fn auth_rejections_breaker_state_and_certificate_expiry_are_exported() {
    let ca = support::tls::MeshCa::new("mesh.test");
    let refusing = support::net::RefusingPort::new();
    let node = TestNode::start(&format!(
        r#"
mesh:
  trust_domain: mesh.test
  service: gateway
  identity: {{ local_ca: {{ dir: "{dir}" }} }}
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - name: guarded
    match: {{ paths: ["/guarded"] }}
    respond: {{ body: "secret" }}
    auth: {{ methods: [api_key] }}
  - name: broken
    match: {{ paths: ["/broken"] }}
    proxy: {{ upstream: dead }}
upstreams:
  - name: dead
    targets: [{{ address: "{dead}" }}]
    circuit_breaker: {{ consecutive_failures: 2, open_for: 60s }}
    outlier_detection: {{ consecutive_failures: 100 }}
"#,
        dir = ca.path().display(),
        dead = refusing.addr,
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    for _ in 0..3 {
        assert_eq!(c.get("/guarded").await.status, 401);
    }
    // Connect failures (retried once by default) trip the breaker within a few requests.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(c.get("/broken").await.status.as_u16());
    }
    assert_eq!(statuses[0], 502, "{statuses:?}");
    assert_eq!(
        statuses.last(),
        Some(&503),
        "the breaker opened: {statuses:?}"
    );

    let s = scrape_when(&node, "auth rejections counted", |s| {
        s.sum("meshgate_auth_rejections_total", &[("route", "guarded")]) >= 3.0
    })
    .await;
    assert_eq!(
        s.value(
            "meshgate_upstream_circuit_breakers_open",
            &[("upstream", "dead")]
        ),
        1.0
    );
    let expiry = s.value(
        "meshgate_certificate_expiry_seconds",
        &[(
            "certificate",
            "mesh:spiffe://mesh.test/ns/default/svc/gateway",
        )],
    );
    assert!(
        expiry > 23.0 * 3600.0 && expiry <= 24.0 * 3600.0 + 120.0,
        "{expiry}"
    );
}
