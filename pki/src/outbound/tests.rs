use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::edge::{EdgeTlsOptions, edge_server_config};

fn self_signed(names: &[&str], expired: bool) -> (String, EdgeCertificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    if expired {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(10);
        params.not_after = now - time::Duration::days(1);
    }
    let cert = params.self_signed(&key).unwrap();
    let edge = EdgeCertificate::from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        vec![],
    )
    .unwrap();
    (cert.pem(), edge)
}

/// One handshake against a server presenting `served`, trusting `trusted_pem`, asking for
/// `name`; the client's error, if any.
async fn handshake(served: &EdgeCertificate, trusted_pem: &str, name: &str) -> Option<String> {
    let options = EdgeTlsOptions {
        allow_tls12: false,
        alpn: vec![],
        client_roots: None,
        client_cert_required: false,
    };
    let server = edge_server_config(std::slice::from_ref(served), &options).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let accepting = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let roots = crate::certificates_from_pem(trusted_pem.as_bytes()).unwrap();
    let client = outbound_client_config(OutboundTrust::Bundle(&roots), None, vec![]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let result = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await;
    accepting.abort();
    match result {
        Ok(_) => None,
        Err(e) => Some(handshake_failure(&e).map_or_else(|| e.to_string(), |f| f.to_string())),
    }
}

#[tokio::test]
async fn a_trusted_server_with_the_right_name_connects() {
    let (pem, served) = self_signed(&["idp.test"], false);
    assert_eq!(handshake(&served, &pem, "idp.test").await, None);
}

#[tokio::test]
async fn failures_say_which_setting_to_fix() {
    let (pem, served) = self_signed(&["idp.test"], false);
    let (other_pem, _) = self_signed(&["other.test"], false);
    let wrong_ca = handshake(&served, &other_pem, "idp.test").await.unwrap();
    assert!(
        wrong_ca.contains("not signed by a trusted CA"),
        "{wrong_ca}"
    );
    // A CA of the same name with another key (a regenerated CA).
    let (same_name_pem, _) = self_signed(&["idp.test"], false);
    let regenerated = handshake(&served, &same_name_pem, "idp.test")
        .await
        .unwrap();
    assert!(
        regenerated.contains("not signed by a trusted CA"),
        "{regenerated}"
    );
    let wrong_name = handshake(&served, &pem, "elsewhere.test").await.unwrap();
    assert!(wrong_name.contains("set server_name"), "{wrong_name}");
    let (expired_pem, expired) = self_signed(&["idp.test"], true);
    let old = handshake(&expired, &expired_pem, "idp.test").await.unwrap();
    assert!(old.contains("has expired"), "{old}");
}

#[test]
fn errors_outside_tls_are_not_classified() {
    let e = std::io::Error::other("connection refused");
    assert_eq!(handshake_failure(&e), None);
}
