//! One active health probe of one endpoint: a TCP connect, or an HTTP/1.1 request whose
//! status must be one of the expected ones. Bounded by the check's timeout; never pooled.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use meshgate_config::resilience::{HealthCheckSpec, HealthProbe};
use tokio::net::TcpStream;

/// The User-Agent of HTTP probes, so backends can tell them from traffic (and not log them).
const PROBE_USER_AGENT: &str = concat!("meshgate-health-check/", env!("CARGO_PKG_VERSION"));

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid probe request: {0}")]
    Request(#[from] http::Error),
    #[error("unexpected status {0}")]
    Status(u16),
}

/// Probe `address` once. `host` is the Host header unless the check sets its own.
pub async fn probe(
    address: SocketAddr,
    host: &HeaderValue,
    spec: &HealthCheckSpec,
) -> Result<(), ProbeFailure> {
    tokio::time::timeout(spec.timeout, run(address, host, &spec.probe))
        .await
        .map_err(|_| ProbeFailure::Timeout(spec.timeout))?
}

async fn run(
    address: SocketAddr,
    default_host: &HeaderValue,
    probe: &HealthProbe,
) -> Result<(), ProbeFailure> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(ProbeFailure::Connect)?;
    let HealthProbe::Http {
        method,
        path,
        host,
        expected_statuses,
    } = probe
    else {
        return Ok(());
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(conn);
    let request = Request::builder()
        .method(method.clone())
        .uri(path.parse::<Uri>().map_err(http::Error::from)?)
        .header(header::HOST, host.as_ref().unwrap_or(default_host))
        .header(header::USER_AGENT, PROBE_USER_AGENT)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await;
    connection.abort();
    let status = response?.status().as_u16();
    if expected_statuses.contains(&status) {
        Ok(())
    } else {
        Err(ProbeFailure::Status(status))
    }
}
