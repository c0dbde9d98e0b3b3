//! The third identity source: Consul Connect's CA (through the Consul double). A sidecar gets
//! its leaf and private key from `/v1/agent/connect/ca/leaf/:service`, serves mTLS that callers
//! certified by the same Consul CA reach (authorized by Consul's SPIFFE ids), picks up the
//! agent's renewed leaf and a root rotation, keeps its certificate while the agent fails, and
//! reports a wrong token clearly.

use http::StatusCode;
use meshgate_pki::{CertifiedLeaf, SpiffeId, TrustBundle};
use support::consul_double::{ConsulDouble, ConsulDoubleConfig};
use support::tls::mesh_get;
use support::{Backend, TestNode};

const TOKEN: &str = "orders-acl-token";

async fn consul() -> ConsulDouble {
    ConsulDouble::start_with(ConsulDoubleConfig {
        acl_token: Some(TOKEN.into()),
        ..ConsulDoubleConfig::default()
    })
    .await
}

async fn sidecar(double: &ConsulDouble, app: &Backend, token: Option<&str>) -> String {
    let td = double.connect_trust_domain().await;
    let token = token.map_or_else(String::new, |t| format!(", token: \"{t}\""));
    format!(
        r#"
mode: sidecar
mesh:
  trust_domain: {td}
  service: orders
  identity:
    consul: {{ address: "{url}"{token} }}
  authorization:
    default: deny
    rules:
      - {{ source: "{frontend}", action: allow }}
      - {{ source: "spiffe://{td}/ns/default/dc/dc1/svc/*", action: deny }}
listeners:
  - {{ name: inbound, address: "127.0.0.1:0", mesh: inbound }}
routes:
  - {{ listeners: [inbound], proxy: {{ upstream: local-app }} }}
upstreams:
  - {{ name: local-app, targets: [{{ address: "{app}" }}] }}
"#,
        url = double.url(),
        frontend = double.connect_spiffe_id("frontend").await,
        app = app.addr(),
    )
}

/// A caller certified by the same Consul cluster (another agent's leaf).
async fn caller(double: &ConsulDouble, service: &str) -> CertifiedLeaf {
    let (cert, key) = double.connect_issue_leaf(service).await;
    CertifiedLeaf::from_pem(&cert, &key).unwrap()
}

async fn bundle(double: &ConsulDouble) -> TrustBundle {
    TrustBundle::from_pem(&double.connect_roots_pem().await).unwrap()
}

async fn orders_id(double: &ConsulDouble) -> SpiffeId {
    SpiffeId::parse(&double.connect_spiffe_id("orders").await).unwrap()
}

async fn call(double: &ConsulDouble, node: &TestNode, leaf: CertifiedLeaf) -> StatusCode {
    let (status, _) = mesh_get(
        node.addr("inbound"),
        Some(leaf),
        &bundle(double).await,
        orders_id(double).await,
        "/hello",
    )
    .await
    .unwrap();
    status
}

/// The serial of the node's current certificate.
fn node_serial(node: &TestNode) -> String {
    node.handle()
        .view()
        .load()
        .mesh
        .as_ref()
        .unwrap()
        .identity
        .cert
        .current()
        .info()
        .serial
        .clone()
}

/// The serial of the leaf the agent caches for orders.
async fn agent_serial(double: &ConsulDouble) -> String {
    let pem = double.connect_cached_leaf("orders").await.unwrap();
    meshgate_pki::inspect(&pem).unwrap().serial
}

async fn mesh_status(node: &TestNode) -> serde_json::Value {
    support::TestClient::new(support::Proto::Http1, node.admin())
        .get("/mesh")
        .await
        .json()
}

#[tokio::test]
async fn a_consul_identity_serves_mtls_and_authorizes_consul_spiffe_ids() {
    let double = consul().await;
    let app = Backend::start("orders-app").await;
    let node = TestNode::start(&sidecar(&double, &app, Some(TOKEN)).await).await;

    let status = mesh_status(&node).await;
    assert_eq!(
        status["identity"],
        "spiffe://7f42f496-fbc7-8692-05ed-334aa5340c1e.consul/ns/default/dc/dc1/svc/orders"
    );
    assert_eq!(node_serial(&node), agent_serial(&double).await);

    assert_eq!(
        call(&double, &node, caller(&double, "frontend").await).await,
        200
    );
    let (status, body) = mesh_get(
        node.addr("inbound"),
        Some(caller(&double, "billing").await),
        &bundle(&double).await,
        orders_id(&double).await,
        "/hello",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/dc/dc1/svc/billing may not call spiffe://")
            && message.ends_with("/dc/dc1/svc/orders"),
        "{message}"
    );
    assert_eq!(
        app.requests(),
        1,
        "only the authorized call reached the app"
    );

    // A caller from another Consul cluster does not get through the handshake.
    let other = ConsulDouble::start_with(ConsulDoubleConfig {
        cluster_id: "0badc0de-0000-0000-0000-000000000000".into(),
        ..ConsulDoubleConfig::default()
    })
    .await;
    let foreign = mesh_get(
        node.addr("inbound"),
        Some(caller(&other, "frontend").await),
        &bundle(&double).await,
        orders_id(&double).await,
        "/hello",
    )
    .await;
    assert!(foreign.is_err(), "{foreign:?}");
}

#[tokio::test]
async fn renewal_picks_up_the_agents_new_leaf_and_a_rotated_root() {
    let double = consul().await;
    let app = Backend::start("orders-app").await;
    let node = TestNode::start(&sidecar(&double, &app, Some(TOKEN)).await).await;
    let first = node_serial(&node);
    let old_root_caller = caller(&double, "frontend").await;

    // Before its renewal point the agent answers its cached leaf: nothing to swap, no error.
    node.handle().rotate_mesh_certificate().await.unwrap();
    assert_eq!(node_serial(&node), first);
    let status = mesh_status(&node).await;
    assert_eq!(status["renewals"], 0);
    assert_eq!(status["last_renewal_error"], serde_json::Value::Null);

    // The agent renewed its leaf: the next renewal installs it.
    double.connect_renew_leaf("orders").await;
    node.handle().rotate_mesh_certificate().await.unwrap();
    let second = node_serial(&node);
    assert_ne!(second, first);
    assert_eq!(second, agent_serial(&double).await);
    assert_eq!(mesh_status(&node).await["renewals"], 1);
    assert_eq!(call(&double, &node, old_root_caller.clone()).await, 200);

    // A root rotation: the agent re-issues under the new root, with the cross-signed
    // intermediate, so callers that trust either root keep working.
    double.connect_rotate_root().await;
    node.handle().rotate_mesh_certificate().await.unwrap();
    let third = node_serial(&node);
    assert_ne!(third, second);
    assert_eq!(third, agent_serial(&double).await);
    assert_eq!(mesh_status(&node).await["renewals"], 2);
    assert_eq!(call(&double, &node, old_root_caller).await, 200);
    assert_eq!(
        call(&double, &node, caller(&double, "frontend").await).await,
        200
    );
    assert_eq!(app.requests(), 3);
}

#[tokio::test]
async fn while_the_agent_fails_the_current_certificate_is_kept_and_served() {
    let double = consul().await;
    let app = Backend::start("orders-app").await;
    let node = TestNode::start(&sidecar(&double, &app, Some(TOKEN)).await).await;
    let first = node_serial(&node);
    let frontend = caller(&double, "frontend").await;

    double
        .connect_set_leaf_fault(Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            "No cluster leader",
        )))
        .await;
    double.connect_renew_leaf("orders").await;
    let error = node
        .handle()
        .rotate_mesh_certificate()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("mesh.identity.consul") && error.contains("No cluster leader"),
        "{error}"
    );
    assert_eq!(node_serial(&node), first);
    let status = mesh_status(&node).await;
    assert!(
        status["last_renewal_error"]
            .as_str()
            .unwrap()
            .contains("No cluster leader"),
        "{status}"
    );
    assert_eq!(call(&double, &node, frontend.clone()).await, 200);

    // The agent is gone altogether: still the same certificate, still serving.
    double.set_down(true).await;
    let error = node
        .handle()
        .rotate_mesh_certificate()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot reach"), "{error}");
    assert_eq!(node_serial(&node), first);
    assert_eq!(call(&double, &node, frontend.clone()).await, 200);

    // Back and healthy: the renewed leaf is picked up (by this call or the backoff retry).
    double.set_down(false).await;
    double.connect_set_leaf_fault(None).await;
    node.handle().rotate_mesh_certificate().await.unwrap();
    assert_eq!(node_serial(&node), agent_serial(&double).await);
    assert_ne!(node_serial(&node), first);
    let status = mesh_status(&node).await;
    assert_eq!(status["renewals"], 1);
    assert_eq!(status["last_renewal_error"], serde_json::Value::Null);
    assert_eq!(call(&double, &node, frontend).await, 200);
}

#[tokio::test]
async fn a_wrong_token_or_trust_domain_is_a_clear_startup_error() {
    let double = consul().await;
    let app = Backend::start("orders-app").await;

    let wrong = TestNode::try_start(&sidecar(&double, &app, Some("not-the-token")).await)
        .await
        .err()
        .unwrap();
    assert!(
        wrong.contains("mesh.identity.consul")
            && wrong.contains("403")
            && wrong.contains("ACL not found")
            && wrong.contains("mesh.identity.consul.token"),
        "{wrong}"
    );

    let anonymous = TestNode::try_start(&sidecar(&double, &app, None).await)
        .await
        .err()
        .unwrap();
    assert!(
        anonymous.contains("Permission denied") && anonymous.contains("service:write"),
        "{anonymous}"
    );

    let td = double.connect_trust_domain().await;
    let elsewhere = sidecar(&double, &app, Some(TOKEN)).await.replace(
        &format!("trust_domain: {td}"),
        "trust_domain: mesh.example.com",
    );
    let mismatch = TestNode::try_start(&elsewhere).await.err().unwrap();
    assert!(
        mismatch.contains("set mesh.trust_domain") && mismatch.contains(&td),
        "{mismatch}"
    );
}
