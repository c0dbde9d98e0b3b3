//! Shared unit-test support: test CAs and leaf requests, and a loopback TLS harness that runs
//! a real handshake plus one request/response exchange over 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::{CaOptions, CertificateAuthority, LeafRequest, SpiffeId};

/// Upper bound on one harness run, so a bug shows up as a failure instead of a hung test.
pub(crate) const HARNESS_BOUND: Duration = Duration::from_secs(20);

pub(crate) fn test_ca(trust_domain: &str, with_intermediate: bool) -> CertificateAuthority {
    let options = CaOptions {
        with_intermediate,
        ..CaOptions::default()
    };
    CertificateAuthority::new(trust_domain, &options).expect("test CA")
}

pub(crate) fn test_id(trust_domain: &str, namespace: &str, service: &str) -> SpiffeId {
    SpiffeId::service(trust_domain, namespace, service).expect("test SPIFFE ID")
}

pub(crate) fn test_leaf_request(trust_domain: &str, namespace: &str, service: &str) -> LeafRequest {
    LeafRequest::new(test_id(trust_domain, namespace, service))
}

/// What one side saw of a completed exchange.
#[derive(Debug)]
pub(crate) struct SideView {
    pub(crate) peer_chain: Vec<CertificateDer<'static>>,
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) version: Option<rustls::ProtocolVersion>,
}

fn view(conn: &rustls::CommonState) -> SideView {
    SideView {
        peer_chain: conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
    }
}

/// Both sides' results: `Err` carries the error text of whichever step failed.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) server: Result<SideView, String>,
    pub(crate) client: Result<SideView, String>,
}

/// Handshake over loopback TCP, then client sends `ping`, server answers `pong`.
pub(crate) async fn exchange(server: ServerConfig, client: ClientConfig) -> Exchange {
    tokio::time::timeout(HARNESS_BOUND, exchange_unbounded(server, client))
        .await
        .expect("TLS exchange did not finish")
}

async fn exchange_unbounded(server: ServerConfig, client: ClientConfig) -> Exchange {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let seen = view(tls.get_ref().1);
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
        assert_eq!(&ping, b"ping");
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(seen)
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connector = TlsConnector::from(Arc::new(client));
        let mut tls = connector
            .connect(server_name(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let seen = view(tls.get_ref().1);
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut pong = [0u8; 4];
        tls.read_exact(&mut pong).await.map_err(|e| e.to_string())?;
        assert_eq!(&pong, b"pong");
        Ok::<_, String>(seen)
    };
    // The client finishes (or fails and drops its socket) first, which unblocks the server.
    let client = client_side.await;
    let server = server_side.await.expect("server task panicked");
    Exchange { server, client }
}

/// Sent as SNI only: the SPIFFE verifier checks the URI SAN, not this name.
pub(crate) fn server_name() -> ServerName<'static> {
    ServerName::try_from("mesh.invalid").expect("static DNS name")
}
