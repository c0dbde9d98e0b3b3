//! End-to-end tests of edge security (issue 7): client IP through trusted proxies and the PROXY
//! protocol, IP allow/deny lists, per-IP connection limits, request limits with their status
//! codes over HTTP/1.1 and HTTP/2, slow clients, the WAF's detection and false-positive rates on
//! payload corpora, bot rules, and the protocol input the edge must not trust (Host, upgrades,
//! underscores, escaped paths, bodies without a length, malformed HTTP/2 frames).
#![allow(clippy::unwrap_used)]

mod bots;
mod client_ip;
mod connections;
mod h2_frames;
mod ip_rules;
mod limits;
mod protocol;
mod slow_clients;
mod waf;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::TestNode;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A node with one listener `main` (extra YAML for it after `address`), a `security:` block and
/// routes. `{backend}` in `routes` is replaced by the address of an upstream named `backend`.
pub fn yaml(
    security: &str,
    listener_extra: &str,
    routes: &str,
    backend: Option<SocketAddr>,
) -> String {
    let upstream = backend
        .map(|a| {
            format!("upstreams:\n  - {{ name: backend, targets: [{{ address: \"{a}\" }}] }}\n")
        })
        .unwrap_or_default();
    format!(
        "listeners:\n  - name: main\n    address: \"127.0.0.1:0\"\n{listener_extra}\n{security}\n{upstream}routes:\n{routes}\n"
    )
}

/// A route proxying everything to `backend`.
pub const PROXY_ALL: &str =
    "  - { name: all, match: { paths: [\"/*\"] }, proxy: { upstream: backend } }\n";

pub async fn start(yaml: &str) -> TestNode {
    TestNode::start(yaml).await
}

pub use support::net::{raw_exchange, raw_on};

/// What a probe backend saw of one request body.
#[derive(Debug, PartialEq, Eq)]
pub enum BodySeen {
    Complete(usize),
    Broken(usize),
}

/// A backend that reads every request body to its end and reports whether it completed.
pub struct BodyProbe {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<BodySeen>,
}

impl BodyProbe {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let mut body = req.into_body();
                            let mut n = 0;
                            let seen = loop {
                                match body.frame().await {
                                    None => break BodySeen::Complete(n),
                                    Some(Ok(f)) => n += f.data_ref().map_or(0, Bytes::len),
                                    Some(Err(_)) => break BodySeen::Broken(n),
                                }
                            };
                            let _ = tx.send(seen);
                            Ok::<_, std::convert::Infallible>(Response::new(
                                http_body_util::Full::new(Bytes::from_static(b"done")),
                            ))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    /// The next body's fate (bounded by the harness patience).
    pub async fn next(&mut self) -> BodySeen {
        tokio::time::timeout(support::harness::PATIENCE, self.seen.recv())
            .await
            .expect("the backend saw no request")
            .expect("probe stopped")
    }

    /// No body reached the backend within `wait` (used only after the gateway already answered).
    pub async fn nothing_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.seen.recv()).await.is_err()
    }
}
