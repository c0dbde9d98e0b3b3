//! Test clients: one per HTTP version, so each proxy test runs over HTTP/1.1 and h2c.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ClientBody = BoxBody<Bytes, BoxError>;

/// Which protocol a test client speaks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

/// Both protocols, for `for proto in BOTH { … }`.
pub const BOTH: [Proto; 2] = [Proto::Http1, Proto::Http2];

/// A fully read response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled client bound to one gateway address.
#[derive(Clone)]
pub struct TestClient {
    pub proto: Proto,
    base: String,
    inner: Client<HttpConnector, ClientBody>,
}

impl TestClient {
    pub fn new(proto: Proto, addr: SocketAddr) -> Self {
        Self::from_ip(proto, addr, None)
    }

    /// A client whose connections come from `local` (any 127.0.0.0/8 address on loopback), so
    /// that tests can be several clients by IP.
    pub fn from_ip(proto: Proto, addr: SocketAddr, local: Option<std::net::IpAddr>) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        if proto == Proto::Http2 {
            builder.http2_only(true);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(local);
        Self {
            proto,
            base: format!("http://{addr}"),
            inner: builder.build(connector),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder().method(method).uri(self.url(path))
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.request(Method::GET, path).body(empty()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("GET {path} over {:?} failed: {e}", self.proto))
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut builder = self.request(Method::GET, path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.send(builder.body(empty()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("GET {path} over {:?} failed: {e}", self.proto))
    }

    /// Send and read the whole response (body and trailers).
    pub async fn send(&self, req: Request<ClientBody>) -> Result<TestResponse, BoxError> {
        let response = self.inner.request(req).await?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }

    /// Send and return the response with its body still streaming.
    pub async fn send_streaming(
        &self,
        req: Request<ClientBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, BoxError> {
        Ok(self.inner.request(req).await?)
    }
}

pub fn empty() -> ClientBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

pub fn body(data: impl Into<Bytes>) -> ClientBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}
