//! How meshgate reaches identity providers (JWKS endpoints, introspection endpoints): one
//! [`IdpTransport`] behind every call, bounded in time and body size. `https://` providers get
//! an [`HttpsIdp`] built from their `tls:` setting (hyper-util's pooled client over
//! hyper-rustls); plain `http://` ones share one [`PlainHttp`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, ResolveServerName};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate_actors::outbound_tls::{OutboundTls, error_chain};
use meshgate_config::outbound_tls::OutboundTlsConfig;

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
    #[error("unsupported URL scheme {0:?}")]
    Scheme(String),
    /// The TLS setting could not be loaded, or the handshake failed: names the setting.
    #[error("{0}")]
    Tls(String),
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
            let scheme = req.uri().scheme_str().unwrap_or_default().to_string();
            return Box::pin(async { Err(IdpError::Scheme(scheme)) });
        }
        let call = self.client.request(req);
        Box::pin(async move { call.await.map_err(|e| IdpError::Request(error_chain(&e))) })
    }
}

/// HTTPS to one identity provider, verified as its `tls:` setting says.
pub struct HttpsIdp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    tls: OutboundTls,
}

impl HttpsIdp {
    /// Load `tls` (configured at `field`, e.g. `auth.jwt[0].jwks.tls`). HTTP/1.1 only: one
    /// small request now and then needs no multiplexing.
    pub fn load(tls: Option<&OutboundTlsConfig>, field: &str) -> Result<Self, String> {
        let tls = OutboundTls::load(tls, field, vec![b"http/1.1".to_vec()]).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &tls.server_name {
            Some(name) => Arc::new(FixedServerNameResolver::new(name.clone())),
            None => Arc::new(hyper_rustls::DefaultServerNameResolver::default()),
        };
        let connector = HttpsConnector::new(http, tls.client_config.clone(), true, resolver);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            tls,
        })
    }
}

impl IdpTransport for HttpsIdp {
    fn send(&self, req: Request<Full<Bytes>>) -> IdpFuture {
        if req.uri().scheme_str() != Some("https") {
            let scheme = req.uri().scheme_str().unwrap_or_default().to_string();
            return Box::pin(async { Err(IdpError::Scheme(scheme)) });
        }
        let call = self.client.request(req);
        let tls = self.tls.clone();
        Box::pin(async move {
            call.await.map_err(|e| match tls.explain(&e) {
                Some(explained) => IdpError::Tls(explained),
                None => IdpError::Request(error_chain(&e)),
            })
        })
    }
}

/// A provider whose TLS setting could not be loaded: every call fails with that reason, so the
/// provider's requests are refused while everything else keeps serving.
pub struct BrokenTls(pub String);

impl IdpTransport for BrokenTls {
    fn send(&self, _req: Request<Full<Bytes>>) -> IdpFuture {
        let reason = self.0.clone();
        Box::pin(async move { Err(IdpError::Tls(reason)) })
    }
}

/// The transport for a provider at `url` with `tls` (configured at `field`). Problems are
/// logged once here, naming the setting.
pub fn transport_for(
    url: &http::Uri,
    tls: Option<&OutboundTlsConfig>,
    field: &str,
    plain: &Arc<PlainHttp>,
) -> Arc<dyn IdpTransport> {
    if url.scheme_str() != Some("https") {
        tracing::warn!(
            url = %url,
            setting = field,
            "identity provider over plain http://: tokens and keys travel unencrypted; use https:// outside a trusted network"
        );
        return plain.clone();
    }
    match HttpsIdp::load(tls, &format!("{field}.tls")) {
        Ok(https) => Arc::new(https),
        Err(reason) => {
            tracing::error!(url = %url, error = %reason, "identity provider TLS setting unusable; its tokens are refused until it is fixed");
            Arc::new(BrokenTls(reason))
        }
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
