//! Mock backends for proxy tests: one real hyper server per backend on 127.0.0.1:0, speaking
//! HTTP/1.1 and h2c, whose behaviour is chosen by the request path:
//!
//! | path | answer |
//! | --- | --- |
//! | `/hello` (and anything unlisted) | `200 hello from <name>` |
//! | `/echo…` | JSON: backend, method, path, query, headers, body length |
//! | `/slow/<ms>` | waits, then `200 slow` |
//! | `/status/<n>` | status `n` |
//! | `/reset` | headers and 1 KiB of a declared 1 MiB body, then the connection breaks |
//! | `/stream/<bytes>` | a streamed body of that many bytes, in 64 KiB chunks |
//! | `/upload` | consumes the body as it streams, answers its length (400 and counted when the body breaks) |
//! | `/trailers` | a body followed by `grpc-status: 0` and `grpc-message: ok` trailers |
//! | `/ws` | WebSocket echo |
//! | `/health` | 200, or 503 after `set_healthy(false)` |
//! | `/call/<host:port>/<path>` | calls `http://<host:port>/<path>` and answers `<name> -> <its body>` (an app that calls another service) |
//!
//! Counters let tests assert what reached the backend (accepted connections, requests).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = BoxBody<Bytes, BoxError>;

/// What reached a backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    accepts: AtomicUsize,
    requests: AtomicUsize,
    open: AtomicUsize,
    changed: tokio::sync::Notify,
    unhealthy: std::sync::atomic::AtomicBool,
    /// `/upload` requests whose body broke before its end (the sender aborted it).
    broken_uploads: AtomicUsize,
}

/// A running mock backend.
pub struct Backend {
    name: String,
    addr: SocketAddr,
    stats: Arc<BackendStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Start a backend named `name` on a free loopback port.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(name, listener, Duration::ZERO)
    }

    /// Start again on a specific address (a backend that comes back after a crash).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve_on(name, listener, Duration::ZERO)
    }

    /// A backend that takes `delay` to answer every request (a slow instance).
    pub async fn start_with_delay(name: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(name, listener, delay)
    }

    fn serve_on(name: &str, listener: TcpListener, delay: Duration) -> Self {
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(BackendStats::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            name.to_string(),
            listener,
            stats.clone(),
            stopped,
            delay,
        ));
        Self {
            name: name.to_string(),
            addr,
            stats,
            stop,
            task,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.stats.accepts.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Wait (bounded by the harness patience) until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.stats.changed.notified();
                if self.requests() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(crate::harness::PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} saw {} requests, expected {n}",
                    self.name,
                    self.requests()
                )
            });
    }

    /// `/upload` requests whose body broke before its end: aborted by the sender.
    pub fn broken_uploads(&self) -> usize {
        self.stats.broken_uploads.load(Ordering::SeqCst)
    }

    /// Wait (bounded by the harness patience) until at least `n` uploads broke.
    pub async fn wait_for_broken_uploads(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.stats.changed.notified();
                if self.broken_uploads() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(crate::harness::PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} saw {} broken uploads, expected {n}",
                    self.name,
                    self.broken_uploads()
                )
            });
    }

    /// What `/health` answers: 200 when healthy (the default), 503 when not.
    pub fn set_healthy(&self, healthy: bool) {
        self.stats.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    /// Stop listening and close every connection (a crashed process).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    name: String,
    listener: TcpListener,
    stats: Arc<BackendStats>,
    mut stopped: watch::Receiver<bool>,
    delay: Duration,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        stats.accepts.fetch_add(1, Ordering::SeqCst);
        stats.open.fetch_add(1, Ordering::SeqCst);
        let name = name.clone();
        let stats = stats.clone();
        let mut stop = stopped.clone();
        connections.spawn(async move {
            let service_stats = stats.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                service_stats.requests.fetch_add(1, Ordering::SeqCst);
                service_stats.changed.notify_waiters();
                let name = name.clone();
                let unhealthy = service_stats.unhealthy.load(Ordering::SeqCst);
                let service_stats = service_stats.clone();
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if req.uri().path() == "/health" {
                        let status = if unhealthy {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        };
                        return Ok::<_, Infallible>(full(status, "health"));
                    }
                    Ok::<_, Infallible>(respond(&name, req, &service_stats).await)
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
            stats.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    // Dropping the set aborts every connection: peers see resets, as with a dead process.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<TestBody> {
    let body = http_body_util::Full::new(body.into())
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

async fn respond(name: &str, req: Request<Incoming>, stats: &BackendStats) -> Response<TestBody> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["echo", ..] => echo(name, req).await,
        ["slow", ms] => {
            let ms: u64 = ms.parse().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(StatusCode::OK, "slow")
        }
        ["status", code] => {
            let code = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok());
            full(
                code.unwrap_or(StatusCode::BAD_REQUEST),
                format!("status from {name}"),
            )
        }
        ["reset"] => reset_mid_body(),
        ["stream", bytes] => stream(bytes.parse().unwrap_or(0)),
        ["upload"] => {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => total += frame.data_ref().map_or(0, |d| d.len()),
                    Err(_) => {
                        stats.broken_uploads.fetch_add(1, Ordering::SeqCst);
                        stats.changed.notify_waiters();
                        return full(StatusCode::BAD_REQUEST, "upload broke");
                    }
                }
            }
            full(StatusCode::OK, total.to_string())
        }
        ["trailers"] => trailers(),
        ["call", target, rest @ ..] => call(name, target, &rest.join("/")).await,
        ["ws"] => websocket(req),
        _ => {
            let mut response = full(StatusCode::OK, format!("hello from {name}"));
            response
                .headers_mut()
                .insert("x-backend", HeaderValue::from_str(name).unwrap());
            response
        }
    }
}

async fn echo(name: &str, req: Request<Incoming>) -> Response<TestBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            )
        })
        .collect();
    let doc = serde_json::json!({
        "backend": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = full(StatusCode::OK, doc.to_string());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn call(name: &str, target: &str, path: &str) -> Response<TestBody> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let Ok(uri) = format!("http://{target}/{path}").parse::<http::Uri>() else {
        return full(StatusCode::BAD_REQUEST, "bad call target");
    };
    match client.get(uri).await {
        Ok(response) => {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            full(
                status,
                format!("{name} -> {}", String::from_utf8_lossy(&body)),
            )
        }
        Err(e) => full(
            StatusCode::BAD_GATEWAY,
            format!("{name} could not call {target}: {e}"),
        ),
    }
}

fn reset_mid_body() -> Response<TestBody> {
    // The pause lets the head and the first chunk reach the peer before the connection dies.
    let frames = futures_util::stream::unfold(0, |step| async move {
        match step {
            0 => Some((Ok(Frame::data(Bytes::from(vec![b'x'; 1024]))), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Err::<Frame<Bytes>, BoxError>("backend died mid-body".into()),
                    2,
                ))
            }
            _ => None,
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1048576"));
    response
}

fn stream(total: usize) -> Response<TestBody> {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'a'; CHUNK]);
    let frames = futures_util::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK);
            Some((Ok::<_, BoxError>(Frame::data(chunk.slice(..n))), left - n))
        }
    });
    Response::new(BodyExt::boxed(StreamBody::new(frames)))
}

fn trailers() -> Response<TestBody> {
    let mut trailer_map = HeaderMap::new();
    trailer_map.insert("grpc-status", HeaderValue::from_static("0"));
    trailer_map.insert("grpc-message", HeaderValue::from_static("ok"));
    let frames = futures_util::stream::iter(vec![
        Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"\0\0\0\0\x05hello"))),
        Ok(Frame::trailers(trailer_map)),
    ]);
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

fn websocket(mut req: Request<Incoming>) -> Response<TestBody> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "not a websocket request");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                break;
            }
            if ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = full(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).unwrap(),
    );
    response
}
