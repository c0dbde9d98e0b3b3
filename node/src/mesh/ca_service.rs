//! The CA service: HTTPS `POST /v1/ca/sign` with `{"csr": PEM, "token": …}`. A sidecar's first
//! request is authenticated by a bootstrap token bound to one service; renewals by the
//! sidecar's current mesh certificate (verified in the TLS handshake), which may only renew its
//! own identity. The CA signs only the CSR's public key, never sees private keys, and never
//! hands any out.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use meshgate_actors::mesh::CaAuthority;
use meshgate_actors::mesh::ca_client::SIGN_PATH;
use meshgate_actors::{AcceptedConnection, ConnectionHandler, NodeView};
use meshgate_pki::{PkiError, SpiffeId, Validity, peer_spiffe_id};
use rustls::pki_types::CertificateDer;

use crate::error::error_response;
use crate::proxy::body::ProxyBody;
use crate::server::request_id;

/// A CSR is a few hundred bytes; anything much larger is not one.
const MAX_REQUEST: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct CaService {
    view: Arc<NodeView>,
}

impl CaService {
    pub fn new(view: Arc<NodeView>) -> Arc<Self> {
        Arc::new(Self { view })
    }
}

impl ConnectionHandler for CaService {
    fn serve(&self, conn: AcceptedConnection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let authority = self.view.load().mesh.as_ref().and_then(|m| m.ca.clone());
        Box::pin(async move {
            let Some(authority) = authority else { return };
            let acceptor = tokio_rustls::TlsAcceptor::from(authority.tls.clone());
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn.stream)).await {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                };
            let peer: Option<Vec<CertificateDer<'static>>> = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
            let peer = Arc::new(peer);
            let service = service_fn(move |req: Request<Incoming>| {
                let authority = authority.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(handle(&authority, peer.as_deref(), req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = conn.graceful.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        })
    }
}

async fn handle(
    authority: &CaAuthority,
    peer: Option<&[CertificateDer<'static>]>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let request_id = request_id::take_or_generate(req.headers());
    if req.uri().path() != SIGN_PATH {
        return error_response(StatusCode::NOT_FOUND, "no such endpoint", &request_id);
    }
    if req.method() != Method::POST {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "use POST", &request_id);
    }
    match sign(authority, peer, req).await {
        Ok(body) => {
            let mut response = Response::new(ProxyBody::full(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err((status, message)) => error_response(status, &message, &request_id),
    }
}

#[derive(serde::Deserialize)]
struct SignBody {
    csr: String,
    #[serde(default)]
    token: Option<String>,
}

async fn sign(
    authority: &CaAuthority,
    peer: Option<&[CertificateDer<'static>]>,
    req: Request<Incoming>,
) -> Result<Bytes, (StatusCode, String)> {
    let bytes = Limited::new(req.into_body(), MAX_REQUEST)
        .collect()
        .await
        .map_err(|_| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request too large".to_string(),
            )
        })?
        .to_bytes();
    let body: SignBody = serde_json::from_slice(&bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("expected {{\"csr\": PEM, \"token\": …}}: {e}"),
        )
    })?;
    let allowed = allowed_identity(authority, peer, body.token.as_deref())?;
    let chain = authority
        .ca
        .sign_csr(
            &body.csr,
            &allowed,
            &Validity::with_lifetime(authority.lifetime),
        )
        .map_err(|e| match e {
            PkiError::CsrRejected { .. } => (StatusCode::FORBIDDEN, e.to_string()),
            other => (StatusCode::BAD_REQUEST, other.to_string()),
        })?;
    tracing::info!(identity = %allowed, "mesh CA signed a certificate");
    let answer = serde_json::json!({
        "chain": chain.to_pem(),
        "bundle": authority.ca.trust_bundle().to_pem(),
    });
    Ok(Bytes::from(answer.to_string()))
}

/// The identity the caller may obtain: its own (renewal, proven by its certificate) or the
/// one its bootstrap token is bound to.
fn allowed_identity(
    authority: &CaAuthority,
    peer: Option<&[CertificateDer<'static>]>,
    token: Option<&str>,
) -> Result<SpiffeId, (StatusCode, String)> {
    if let Some(chain) = peer {
        return peer_spiffe_id(chain).map_err(|e| (StatusCode::FORBIDDEN, e.to_string()));
    }
    let Some(token) = token else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "present your current mesh certificate or a bootstrap token".into(),
        ));
    };
    let bound = authority
        .tokens
        .iter()
        .find(|t| constant_time_eq(t.token.as_bytes(), token.as_bytes()))
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                "unknown bootstrap token".to_string(),
            )
        })?;
    SpiffeId::service(
        authority.ca.trust_domain(),
        &bound.namespace,
        &bound.service,
    )
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Compare secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"short", b"longer"));
    }
}
