//! How meshgate reaches identity providers (JWKS endpoints, introspection endpoints): one
//! [`IdpTransport`] behind every call, bounded in time and body size. Plain HTTP over hyper
//! today; an https connector (hyper-util's `Client` over a rustls `Connect`) plugs in here
//! without touching the callers.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a call to an identity provider failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("response body larger than {0} bytes or broken")]
    Body(usize),
    #[error("unsupported URL scheme (only http:// until the TLS client exists)")]
    Scheme,
}

pub type IdpFuture = Pin<Box<dyn Future<Output = Result<Response<Incoming>, IdpError>> + Send>>;

/// Sends one request to an identity provider.
pub trait IdpTransport: Send + Sync + 'static {
    fn send(&self, req: Request<Full<Bytes>>) -> IdpFuture;
}

/// Plain HTTP/1.1 with pooled keep-alive connections.
pub struct PlainHttp {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl PlainHttp {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Default for PlainHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl IdpTransport for PlainHttp {
    fn send(&self, req: Request<Full<Bytes>>) -> IdpFuture {
        if req.uri().scheme_str() != Some("http") {
            return Box::pin(async { Err(IdpError::Scheme) });
        }
        let call = self.client.request(req);
        Box::pin(async move { call.await.map_err(|e| IdpError::Request(e.to_string())) })
    }
}

/// Send `req` and read a 200 response's body, all within `timeout` and `limit` bytes.
pub async fn fetch(
    transport: &dyn IdpTransport,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    limit: usize,
) -> Result<Bytes, IdpError> {
    let exchange = async {
        let response = transport.send(req).await?;
        if response.status() != StatusCode::OK {
            return Err(IdpError::Status(response.status()));
        }
        Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|_| IdpError::Body(limit))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| IdpError::Timeout(timeout))?
}
