//! The mesh: sidecars with SPIFFE identities, mTLS on inbound listeners, authorization by
//! caller identity, the CA service issuing from CSRs, and certificate rotation under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::tls::{MeshCa, mesh_get};
use support::{Backend, TestNode};

fn sidecar(ca: &MeshCa, service: &str, app: &Backend, identity: &str, extra_mesh: &str) -> String {
    format!(
        r#"
mode: sidecar
mesh:
  trust_domain: {td}
  service: {service}
  identity: {identity}
  authorization:
    default: deny
    rules:
      - {{ source: "spiffe://{td}/ns/default/svc/frontend", action: allow }}
      - {{ source: "spiffe://{td}/ns/default/svc/*", action: deny }}
{extra_mesh}
listeners:
  - {{ name: inbound, address: "127.0.0.1:0", mesh: inbound }}
routes:
  - {{ listeners: [inbound], proxy: {{ upstream: local-app }} }}
upstreams:
  - {{ name: local-app, targets: [{{ address: "{app}" }}] }}
"#,
        td = ca.trust_domain,
        app = app.addr(),
        extra_mesh = extra_mesh,
    )
}

fn local_ca(ca: &MeshCa) -> String {
    format!("{{ local_ca: {{ dir: \"{}\" }} }}", ca.path().display())
}

#[tokio::test]
async fn inbound_requires_mtls_and_authorizes_callers_by_spiffe_id() {
    let ca = MeshCa::new("mesh.test");
    let app = Backend::start("orders-app").await;
    let node = TestNode::start(&sidecar(&ca, "orders", &app, &local_ca(&ca), "")).await;
    let addr = node.addr("inbound");
    let orders = ca.id("orders");

    let (status, body) = mesh_get(
        addr,
        Some(ca.leaf("frontend")),
        &ca.bundle(),
        orders.clone(),
        "/hello",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello from orders-app");

    let (status, body) = mesh_get(
        addr,
        Some(ca.leaf("billing")),
        &ca.bundle(),
        orders.clone(),
        "/hello",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], 403);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spiffe://mesh.test/ns/default/svc/billing may not call"),
        "{error}"
    );

    // No certificate, another CA's certificate, an expired certificate: no handshake at all.
    let no_cert = mesh_get(addr, None, &ca.bundle(), orders.clone(), "/hello").await;
    assert!(no_cert.is_err(), "{no_cert:?}");
    let other = MeshCa::new("mesh.test");
    let foreign = mesh_get(
        addr,
        Some(other.leaf("frontend")),
        &ca.bundle(),
        orders.clone(),
        "/hello",
    )
    .await;
    assert!(foreign.is_err(), "{foreign:?}");
    let expired = mesh_get(
        addr,
        Some(ca.expired_leaf("frontend")),
        &ca.bundle(),
        orders.clone(),
        "/hello",
    )
    .await;
    assert!(expired.is_err(), "{expired:?}");

    // The client insists on the server's identity: expecting another service fails.
    let wrong_server = mesh_get(
        addr,
        Some(ca.leaf("frontend")),
        &ca.bundle(),
        ca.id("payments"),
        "/hello",
    )
    .await;
    assert!(wrong_server.is_err(), "{wrong_server:?}");
    assert_eq!(
        app.requests(),
        1,
        "only the authorized call reached the app"
    );
}

#[tokio::test]
async fn a_sidecar_gets_its_certificate_from_the_ca_service_by_csr() {
    let ca = MeshCa::new("mesh.test");
    let ca_app = Backend::start("ca-node-app").await;
    let ca_extra = format!(
        "  ca_server:\n    address: \"127.0.0.1:0\"\n    ca_dir: \"{}\"\n    bootstrap_tokens:\n      - {{ token: \"orders-bootstrap-token-0001\", service: orders }}\n",
        ca.path().display()
    );
    let ca_node = TestNode::start(&sidecar(
        &ca,
        "meshgate-ca",
        &ca_app,
        &local_ca(&ca),
        &ca_extra,
    ))
    .await;
    let ca_url = format!(
        "https://127.0.0.1:{}",
        ca_node.handle().ca_addr().unwrap().port()
    );

    let via_csr = |token: &str| {
        format!(
            "{{ ca_service: {{ url: \"{ca_url}\", trust_bundle: \"{}\", bootstrap_token: \"{token}\" }} }}",
            ca.bundle_path().display()
        )
    };
    // A token bound to another service, or an unknown one, gets nothing.
    let app = Backend::start("orders-app").await;
    let wrong = TestNode::try_start(&sidecar(
        &ca,
        "payments",
        &app,
        &via_csr("orders-bootstrap-token-0001"),
        "",
    ))
    .await;
    assert!(wrong.is_err(), "a token for orders must not yield payments");
    let err = wrong.err().unwrap();
    assert!(err.contains("mesh.identity.ca_service"), "{err}");
    let unknown = TestNode::try_start(&sidecar(
        &ca,
        "orders",
        &app,
        &via_csr("not-a-real-token-000000"),
        "",
    ))
    .await;
    assert!(unknown.err().unwrap().contains("unknown bootstrap token"));

    let orders = TestNode::start(&sidecar(
        &ca,
        "orders",
        &app,
        &via_csr("orders-bootstrap-token-0001"),
        "",
    ))
    .await;
    let (status, _) = mesh_get(
        orders.addr("inbound"),
        Some(ca.leaf("frontend")),
        &ca.bundle(),
        ca.id("orders"),
        "/hello",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // Renewal authenticates with the current certificate: it works even once the token is gone.
    let without_tokens = sidecar(
        &ca,
        "meshgate-ca",
        &ca_app,
        &local_ca(&ca),
        &format!(
            "  ca_server:\n    address: \"127.0.0.1:{}\"\n    ca_dir: \"{}\"\n",
            ca_node.handle().ca_addr().unwrap().port(),
            ca.path().display()
        ),
    );
    assert_eq!(ca_node.rewrite_config(&without_tokens).await.result, Ok(()));
    let before = mesh_status(&orders).await;
    orders.handle().rotate_mesh_certificate().await.unwrap();
    let after = mesh_status(&orders).await;
    assert_eq!(after["renewals"], 1);
    assert_eq!(
        after["identity"],
        "spiffe://mesh.test/ns/default/svc/orders"
    );
    assert!(
        after["seconds_to_expiry"].as_i64().unwrap()
            >= before["seconds_to_expiry"].as_i64().unwrap()
    );
}

async fn mesh_status(node: &TestNode) -> serde_json::Value {
    support::TestClient::new(support::Proto::Http1, node.admin())
        .get("/mesh")
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request() {
    let ca = MeshCa::new("mesh.test");
    let app = Backend::start("orders-app").await;
    let node = TestNode::start(&sidecar(&ca, "orders", &app, &local_ca(&ca), "")).await;
    let addr = node.addr("inbound");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (stop, ok, bundle, leaf, id) = (
            stop.clone(),
            ok.clone(),
            ca.bundle(),
            ca.leaf("frontend"),
            ca.id("orders"),
        );
        // Fresh connections: every request does a new handshake.
        clients.spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match mesh_get(addr, Some(leaf.clone()), &bundle, id.clone(), "/hello").await {
                    Ok((status, _)) if status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{other:?}")),
                }
            }
            failures
        });
    }
    let mut serials = std::collections::HashSet::new();
    for _ in 0..5 {
        node.handle().rotate_mesh_certificate().await.unwrap();
        serials.insert(
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
                .clone(),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    while let Some(done) = clients.join_next().await {
        failures.extend(done.unwrap());
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        serials.len(),
        5,
        "each rotation installed a new certificate"
    );
}

/// One mTLS request to a mesh inbound listener that also reports which certificate the
/// listener served (its serial), as a calling sidecar would see it.
async fn served_certificate(
    addr: std::net::SocketAddr,
    leaf: meshgate_pki::CertifiedLeaf,
    bundle: &meshgate_pki::TrustBundle,
    expected: meshgate_pki::SpiffeId,
) -> Result<(String, http::StatusCode), String> {
    use http_body_util::BodyExt;
    let options = meshgate_pki::TlsOptions {
        alpn: vec![b"http/1.1".to_vec()],
        allow_tls12: false,
    };
    let config = meshgate_pki::client_config(
        Arc::new(meshgate_pki::SwappableCert::new(leaf)),
        bundle,
        meshgate_pki::ExpectedServer::Id(expected),
        &options,
    )
    .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("mesh.local").unwrap(),
            tcp,
        )
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let served = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no server certificate")?;
    let serial = meshgate_pki::CertInfo::from_der(served)
        .map_err(|e| e.to_string())?
        .serial;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = http::Request::get("/hello")
        .header("host", "mesh.local")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((serial, status))
}

/// A one-minute certificate on a clock the test controls: renewal comes 36–42 s after each
/// issue (60–70% of the lifetime counted from issue, not from the back-dated notBefore), never
/// in a loop, and clients under load see each new certificate without a failed request.
#[tokio::test(start_paused = true)]
async fn a_one_minute_certificate_renews_on_schedule_and_clients_see_each_one() {
    use std::time::Duration;
    let ca = MeshCa::new("mesh.test");
    let app = Backend::start("orders-app").await;
    let node = TestNode::start(&sidecar(
        &ca,
        "orders",
        &app,
        &local_ca(&ca),
        "  lifetime: 1m\n",
    ))
    .await;
    // Real loopback I/O would let the paused clock jump to the next timer whenever the runtime
    // waits on the kernel; a running blocking task holds auto-advance off (tokio::time::pause,
    // "Preventing auto-advance"), so time moves only by `advance` below.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let hold_clock = tokio::task::spawn_blocking(move || held.recv());
    let addr = node.addr("inbound");
    let identity = node
        .handle()
        .view()
        .load()
        .mesh
        .as_ref()
        .unwrap()
        .identity
        .clone();
    let (leaf, bundle, id) = (ca.leaf("frontend"), ca.bundle(), ca.id("orders"));

    let started = tokio::time::Instant::now();
    let mut renewed_at = Vec::new();
    let mut installed = vec![identity.cert.current().info().serial.clone()];
    let mut seen: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    let mut requests = 0;
    // Five virtual minutes in one-second steps; each step, a few clients handshake afresh.
    for _ in 0..300 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let round: Vec<_> = (0..4)
            .map(|_| served_certificate(addr, leaf.clone(), &bundle, id.clone()))
            .collect();
        for outcome in futures_util::future::join_all(round).await {
            requests += 1;
            match outcome {
                Ok((serial, status)) if status == 200 => {
                    if seen.last() != Some(&serial) {
                        seen.push(serial);
                    }
                }
                other => failures.push(format!("{other:?}")),
            }
        }
        if identity.renewals() as usize > renewed_at.len() {
            renewed_at.push(started.elapsed());
            installed.push(identity.cert.current().info().serial.clone());
        }
    }
    drop(release);
    let _ = hold_clock.await;
    assert!(
        failures.is_empty(),
        "{} of {requests}: {failures:?}",
        failures.len()
    );
    assert_eq!(
        identity.renewals() as usize,
        renewed_at.len(),
        "one renewal at a time, never a burst: {renewed_at:?}"
    );
    assert!(
        (7..=9).contains(&renewed_at.len()),
        "300 s of a 1-minute certificate renewed every 36–42 s: {renewed_at:?}"
    );
    let mut previous = Duration::ZERO;
    for at in &renewed_at {
        let gap = at.saturating_sub(previous).as_secs_f64();
        // One-second steps: a renewal is noticed up to a second late.
        assert!(
            (35.0..=44.0).contains(&gap),
            "renewed {gap}s apart: {renewed_at:?}"
        );
        previous = *at;
    }
    assert_eq!(
        seen, installed,
        "clients were served every certificate, in order"
    );
}

/// A reload is applied whole or not at all: this one starts the CA service, points the
/// upstream elsewhere and adds a listener whose address is taken. The bind fails, so the old
/// tree keeps serving exactly as before: the old upstream answers and no CA service listens.
#[tokio::test]
async fn a_reload_that_cannot_bind_a_listener_changes_nothing() {
    let ca = MeshCa::new("mesh.test");
    let old_app = Backend::start("old-app").await;
    let new_app = Backend::start("new-app").await;
    let node = TestNode::start(&sidecar(&ca, "orders", &old_app, &local_ca(&ca), "")).await;
    let inbound = node.addr("inbound");
    let bundle = ca.bundle();
    let get = || {
        mesh_get(
            inbound,
            Some(ca.leaf("frontend")),
            &bundle,
            ca.id("orders"),
            "/hello",
        )
    };
    assert_eq!(get().await.unwrap().1, &b"hello from old-app"[..]);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ca_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ca_server = format!(
        "  ca_server:\n    address: \"127.0.0.1:{ca_port}\"\n    ca_dir: \"{}\"\n",
        ca.path().display()
    );
    let inbound_line = "  - { name: inbound, address: \"127.0.0.1:0\", mesh: inbound }\n";
    let changed = sidecar(&ca, "orders", &new_app, &local_ca(&ca), &ca_server).replace(
        inbound_line,
        &format!(
            "{inbound_line}  - {{ name: second, address: \"{}\" }}\n",
            taken.local_addr().unwrap()
        ),
    );
    let event = node.rewrite_config(&changed).await;
    let error = event.result.unwrap_err();
    assert!(error.contains("listeners.second: cannot bind"), "{error}");
    assert_eq!(event.generation, 1);

    assert_eq!(get().await.unwrap().1, &b"hello from old-app"[..]);
    assert_eq!(new_app.requests(), 0);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", ca_port))
            .await
            .is_err(),
        "the CA service of the rejected config was started"
    );
    assert!(node.handle().ca_addr().is_none());
    let children = node.handle().children().await;
    assert!(
        !children
            .iter()
            .any(|(key, _)| *key == meshgate_actors::ChildKey::CaListener),
        "{children:?}"
    );
}
