//! Real handshakes over loopback TCP (tokio-rustls) between configs built by this module.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::ClientConfig;
use rustls::client::Resumption;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client};

use super::verifier::SpiffeServerVerifier;
use super::*;
use crate::test_support::{HARNESS_BOUND, exchange, server_name, test_ca, test_id};
use crate::{
    CertificateAuthority, CertifiedLeaf, KeyAlgorithm, LeafRequest, PendingLeaf, Validity, inspect,
    peer_spiffe_id,
};

const TD: &str = "tls.test";

fn leaf(ca: &CertificateAuthority, service: &str) -> CertifiedLeaf {
    ca.issue(&LeafRequest::new(test_id(TD, "default", service)))
        .unwrap()
}

fn expired_leaf(ca: &CertificateAuthority, service: &str) -> CertifiedLeaf {
    let mut request = LeafRequest::new(test_id(TD, "default", service));
    request.validity = Validity {
        lifetime: Duration::from_secs(3600),
        issued_at: Some(SystemTime::now() - Duration::from_secs(48 * 3600)),
        ..Validity::default()
    };
    let leaf = ca.issue(&request).unwrap();
    assert!(leaf.info().is_expired(SystemTime::now()));
    leaf
}

fn swappable(leaf: CertifiedLeaf) -> Arc<SwappableCert> {
    Arc::new(SwappableCert::new(leaf))
}

fn server(leaf: CertifiedLeaf, ca: &CertificateAuthority) -> ServerConfig {
    server_config(swappable(leaf), &ca.trust_bundle(), &TlsOptions::default()).unwrap()
}

fn client(leaf: CertifiedLeaf, ca: &CertificateAuthority, expected: &str) -> ClientConfig {
    let expected = ExpectedServer::Id(test_id(TD, "default", expected));
    client_config(
        swappable(leaf),
        &ca.trust_bundle(),
        expected,
        &TlsOptions::default(),
    )
    .unwrap()
}

/// The error text of a side that must have failed.
fn failure<T: std::fmt::Debug>(side: &Result<T, String>) -> &str {
    match side {
        Ok(view) => panic!("expected a failure, got {view:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn mtls_handshake_each_side_sees_the_others_spiffe_id() {
    let ca = crate::test_support::test_ca(TD, true);
    let outcome = exchange(
        server(leaf(&ca, "orders"), &ca),
        client(leaf(&ca, "web"), &ca, "orders"),
    )
    .await;

    let server_view = outcome.server.unwrap();
    let client_view = outcome.client.unwrap();
    assert_eq!(
        peer_spiffe_id(&server_view.peer_chain).unwrap(),
        test_id(TD, "default", "web")
    );
    assert_eq!(
        peer_spiffe_id(&client_view.peer_chain).unwrap(),
        test_id(TD, "default", "orders")
    );
    assert_eq!(
        client_view.peer_chain.len(),
        2,
        "server sent leaf + intermediate"
    );
    assert_eq!(client_view.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(client_view.alpn.as_deref(), Some(ALPN_H2));
}

#[tokio::test]
async fn expired_client_leaf_is_rejected_by_the_server() {
    let ca = test_ca(TD, false);
    let outcome = exchange(
        server(leaf(&ca, "orders"), &ca),
        client(expired_leaf(&ca, "web"), &ca, "orders"),
    )
    .await;
    assert!(
        failure(&outcome.server).contains("expired"),
        "{:?}",
        outcome.server
    );
    failure(&outcome.client);
}

#[tokio::test]
async fn expired_server_leaf_is_rejected_by_the_client() {
    let ca = test_ca(TD, false);
    let outcome = exchange(
        server(expired_leaf(&ca, "orders"), &ca),
        client(leaf(&ca, "web"), &ca, "orders"),
    )
    .await;
    assert!(
        failure(&outcome.client).contains("expired"),
        "{:?}",
        outcome.client
    );
    failure(&outcome.server);
}

#[tokio::test]
async fn client_leaf_from_another_ca_is_rejected() {
    let ca = test_ca(TD, false);
    let stranger = test_ca(TD, false);
    let outcome = exchange(
        server(leaf(&ca, "orders"), &ca),
        client(leaf(&stranger, "web"), &ca, "orders"),
    )
    .await;
    // Same trust domain, same issuer name, different key: webpki reports the bad signature.
    assert!(
        failure(&outcome.server).contains("BadSignature"),
        "{:?}",
        outcome.server
    );
    failure(&outcome.client);
}

#[tokio::test]
async fn server_leaf_from_another_ca_is_rejected() {
    let ca = test_ca(TD, true);
    let stranger = test_ca(TD, true);
    let outcome = exchange(
        server(leaf(&stranger, "orders"), &ca),
        client(leaf(&ca, "web"), &ca, "orders"),
    )
    .await;
    assert!(
        failure(&outcome.client).contains("BadSignature"),
        "{:?}",
        outcome.client
    );
    failure(&outcome.server);
}

#[tokio::test]
async fn missing_client_certificate_is_rejected() {
    let ca = test_ca(TD, false);
    let provider = crypto_provider();
    let verifier = SpiffeServerVerifier::new(
        ca.trust_bundle().root_store().unwrap(),
        ExpectedServer::Id(test_id(TD, "default", "orders")),
        provider.signature_verification_algorithms,
    );
    let anonymous = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let outcome = exchange(server(leaf(&ca, "orders"), &ca), anonymous).await;
    assert!(
        failure(&outcome.server).contains("no certificates"),
        "{:?}",
        outcome.server
    );
    failure(&outcome.client);
}

#[tokio::test]
async fn wrong_server_spiffe_id_is_rejected() {
    let ca = test_ca(TD, false);
    // The client wants svc "billing" but reaches svc "orders" (valid chain, wrong identity).
    let outcome = exchange(
        server(leaf(&ca, "orders"), &ca),
        client(leaf(&ca, "web"), &ca, "billing"),
    )
    .await;
    let error = failure(&outcome.client);
    // rustls prints the verifier's error with Debug.
    assert!(error.contains("UnexpectedPeer"), "{error}");
    assert!(
        error.contains(r#"expected: "spiffe://tls.test/ns/default/svc/billing""#),
        "{error}"
    );
    assert!(
        error.contains(r#"actual: "spiffe://tls.test/ns/default/svc/orders""#),
        "{error}"
    );
    failure(&outcome.server);
}

#[tokio::test]
async fn trust_domain_expectation_accepts_any_service_in_it() {
    let ca = test_ca(TD, false);
    let bundle = ca.trust_bundle();
    let any = ExpectedServer::TrustDomain(TD.into());
    let client = client_config(
        swappable(leaf(&ca, "web")),
        &bundle,
        any,
        &TlsOptions::default(),
    )
    .unwrap();
    let outcome = exchange(server(leaf(&ca, "orders"), &ca), client).await;
    outcome.server.unwrap();
    outcome.client.unwrap();

    let other = ExpectedServer::TrustDomain("other.test".into());
    assert!(other.check(&test_id(TD, "default", "orders")).is_err());
}

#[test]
fn service_expectation_accepts_both_service_shapes() {
    let expected = ExpectedServer::Service {
        trust_domain: TD.into(),
        namespace: "default".into(),
        service: "orders".into(),
    };
    let ok = |id: &str| expected.check(&SpiffeId::parse(id).unwrap()).is_ok();
    assert!(ok("spiffe://tls.test/ns/default/svc/orders"));
    assert!(ok("spiffe://tls.test/ns/default/dc/dc1/svc/orders"));
    assert!(ok("spiffe://tls.test/ns/default/dc/dc2/svc/orders"));
    assert!(!ok("spiffe://tls.test/ns/default/dc/dc1/svc/billing"));
    assert!(!ok("spiffe://tls.test/ns/shop/svc/orders"));
    assert!(!ok("spiffe://other.test/ns/default/svc/orders"));
    assert!(!ok("spiffe://tls.test/orders"));
}

#[tokio::test]
async fn tls12_client_is_refused_by_a_tls13_only_server() {
    let ca = test_ca(TD, false);
    let tls12_only = |ca: &CertificateAuthority| {
        let provider = crypto_provider();
        let verifier = SpiffeServerVerifier::new(
            ca.trust_bundle().root_store().unwrap(),
            ExpectedServer::Id(test_id(TD, "default", "orders")),
            provider.signature_verification_algorithms,
        );
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(swappable(leaf(ca, "web")))
    };
    let outcome = exchange(server(leaf(&ca, "orders"), &ca), tls12_only(&ca)).await;
    assert!(
        failure(&outcome.server)
            .to_lowercase()
            .contains("incompatible"),
        "{:?}",
        outcome.server
    );
    failure(&outcome.client);

    // With allow_tls12 the same client gets in, over TLS 1.2.
    let lenient = TlsOptions {
        allow_tls12: true,
        ..TlsOptions::default()
    };
    let server12 =
        server_config(swappable(leaf(&ca, "orders")), &ca.trust_bundle(), &lenient).unwrap();
    let outcome = exchange(server12, tls12_only(&ca)).await;
    assert_eq!(
        outcome.client.unwrap().version,
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let server_view = outcome.server.unwrap();
    assert_eq!(
        peer_spiffe_id(&server_view.peer_chain).unwrap(),
        test_id(TD, "default", "web")
    );
}

#[tokio::test]
async fn alpn_negotiates_what_the_client_offers() {
    let ca = test_ca(TD, false);
    type Protocols = &'static [&'static [u8]];
    let cases: [(Protocols, Option<&[u8]>); 3] = [
        (&[ALPN_H2, ALPN_HTTP_1_1], Some(ALPN_H2)),
        (&[ALPN_HTTP_1_1], Some(ALPN_HTTP_1_1)),
        (&[], None),
    ];
    for (offered, negotiated) in cases {
        let options = TlsOptions {
            alpn: offered.iter().map(|p| p.to_vec()).collect(),
            ..TlsOptions::default()
        };
        let expected = ExpectedServer::Id(test_id(TD, "default", "orders"));
        let client = client_config(
            swappable(leaf(&ca, "web")),
            &ca.trust_bundle(),
            expected,
            &options,
        )
        .unwrap();
        let outcome = exchange(server(leaf(&ca, "orders"), &ca), client).await;
        assert_eq!(outcome.client.unwrap().alpn.as_deref(), negotiated);
        assert_eq!(outcome.server.unwrap().alpn.as_deref(), negotiated);
    }
}

#[tokio::test]
async fn csr_issued_leaf_works_in_a_handshake() {
    let ca = test_ca(TD, true);
    let id = test_id(TD, "default", "web");
    let pending = PendingLeaf::generate(&id, KeyAlgorithm::EcdsaP384).unwrap();
    let chain = ca
        .sign_csr(pending.csr_pem(), &id, &Validity::default())
        .unwrap();
    let web = pending.complete(&chain.to_pem()).unwrap();
    let outcome = exchange(server(leaf(&ca, "orders"), &ca), client(web, &ca, "orders")).await;
    assert_eq!(
        peer_spiffe_id(&outcome.server.unwrap().peer_chain).unwrap(),
        id
    );
    outcome.client.unwrap();
}

async fn connect(
    config: &Arc<ClientConfig>,
    addr: std::net::SocketAddr,
) -> client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::clone(config))
        .connect(server_name(), tcp)
        .await
        .unwrap()
}

async fn round_trip(tls: &mut client::TlsStream<TcpStream>, message: &[u8]) {
    tls.write_all(message).await.unwrap();
    let mut echoed = vec![0u8; message.len()];
    tls.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, message);
}

fn peer_serial(tls: &client::TlsStream<TcpStream>) -> String {
    let chain = tls.get_ref().1.peer_certificates().unwrap();
    inspect(&crate::pem_text::certs_to_pem(&chain[..1]))
        .unwrap()
        .serial
}

#[tokio::test]
async fn hot_swap_changes_new_handshakes_and_keeps_open_connections() {
    tokio::time::timeout(HARNESS_BOUND, hot_swap())
        .await
        .expect("hot swap test finished");
}

async fn hot_swap() {
    let ca = test_ca(TD, true);
    let v1 = leaf(&ca, "orders");
    let v2 = leaf(&ca, "orders");
    assert_ne!(v1.info().serial, v2.info().serial);
    let cert = swappable(v1.clone());
    let config = server_config(
        Arc::clone(&cert),
        &ca.trust_bundle(),
        &TlsOptions::default(),
    )
    .unwrap();

    // An echo server for exactly two connections; each echo loop ends at the client's close.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let server = tokio::spawn(async move {
        let mut connections = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            connections.push(tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = [0u8; 256];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => tls.write_all(&buf[..n]).await.unwrap(),
                    }
                }
            }));
        }
        for connection in connections {
            connection.await.unwrap();
        }
    });

    let mut client = client(leaf(&ca, "web"), &ca, "orders");
    // A resumed session carries the old server certificate; force full handshakes so the
    // second connection shows what a brand-new peer would get.
    client.resumption = Resumption::disabled();
    let client = Arc::new(client);

    let mut first = connect(&client, addr).await;
    round_trip(&mut first, b"before swap").await;
    assert_eq!(peer_serial(&first), v1.info().serial);

    cert.store(v2.clone());
    assert_eq!(cert.current().info().serial, v2.info().serial);
    assert_eq!(cert.not_after(), v2.not_after());

    round_trip(&mut first, b"after swap, old connection").await;
    let mut second = connect(&client, addr).await;
    round_trip(&mut second, b"after swap, new connection").await;
    assert_eq!(peer_serial(&second), v2.info().serial);
    assert_eq!(peer_serial(&first), v1.info().serial);
    round_trip(&mut first, b"old connection still fine").await;

    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    server.await.unwrap();
}
