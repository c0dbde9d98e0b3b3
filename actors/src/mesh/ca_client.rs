//! The sidecar side of the CA service: generate a key locally, send only the CSR over HTTPS
//! (authenticated by a bootstrap token the first time, by the current certificate after), and
//! join the signed chain with the local key.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use meshgate_pki::{
    ALPN_HTTP_1_1, CertifiedLeaf, ExpectedServer, KeyAlgorithm, PendingLeaf, SpiffeId,
    SwappableCert, TlsOptions, TrustBundle, anonymous_client_config, client_config,
};
use rustls::pki_types::ServerName;

use super::IdentityError;

/// The path of the signing endpoint on the CA service.
pub const SIGN_PATH: &str = "/v1/ca/sign";
/// Largest answer accepted from the CA service.
const MAX_RESPONSE: usize = 1024 * 1024;

pub struct SignRequest<'a> {
    pub url: &'a str,
    pub bundle: &'a TrustBundle,
    pub trust_domain: &'a str,
    pub identity: &'a SpiffeId,
    pub current: Option<&'a Arc<SwappableCert>>,
    pub token: Option<&'a str>,
}

fn ca_error(message: impl Into<String>) -> IdentityError {
    IdentityError::CaService(message.into())
}

pub async fn request_certificate(r: SignRequest<'_>) -> Result<CertifiedLeaf, IdentityError> {
    let pending = PendingLeaf::generate(r.identity, KeyAlgorithm::default())?;
    let options = TlsOptions {
        alpn: vec![ALPN_HTTP_1_1.to_vec()],
        allow_tls12: false,
    };
    // The CA service proves it is part of the mesh: any identity of our trust domain.
    let expected = ExpectedServer::TrustDomain(r.trust_domain.to_string());
    let tls = match r.current {
        Some(cert) => client_config(cert.clone(), r.bundle, expected, &options)?,
        None => anonymous_client_config(r.bundle, expected, &options)?,
    };
    let uri: Uri = r
        .url
        .parse()
        .map_err(|e| ca_error(format!("invalid url {:?}: {e}", r.url)))?;
    let host = uri
        .host()
        .ok_or_else(|| ca_error(format!("url {:?} has no host", r.url)))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ca_error(format!("cannot connect to {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.clone())
        .map_err(|e| ca_error(format!("invalid server name {host:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| ca_error(format!("TLS handshake with the CA service failed: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ca_error(e.to_string()))?;
    tokio::spawn(connection);
    let body = serde_json::json!({ "csr": pending.csr_pem(), "token": r.token });
    let path = format!("{}{SIGN_PATH}", uri.path().trim_end_matches('/'));
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| ca_error(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ca_error(format!("request failed: {e}")))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| ca_error(format!("reading the answer: {e}")))?
        .to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| ca_error(format!("answered {status} with a non-JSON body")))?;
    if status != StatusCode::OK {
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or("no reason given");
        return Err(ca_error(format!("refused ({status}): {message}")));
    }
    let chain = answer["chain"]
        .as_str()
        .ok_or_else(|| ca_error("answer without a chain"))?;
    Ok(pending.complete(chain)?)
}
