//! A client that breaks its own request body — a malformed chunk size, a chunk without its
//! CRLF, an upload cut off or reset mid-body — gets 400 (499 when it stopped sending), its
//! connection is closed, its upstream request is aborted, and nothing is charged to the
//! upstream: the circuit stays closed and the endpoint's failure run stays at zero, however
//! many such requests come. Every case runs against an HTTP/1.1 and an HTTP/2 upstream (over
//! HTTP/1.1 hyper passes the body's error on; over HTTP/2 it only resets the upstream stream).

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use support::harness::PATIENCE;
use support::{BOTH, Backend, TestClient, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{admin_json, endpoint_json};

/// Breaker and outlier thresholds: every case sends more broken bodies than this.
const THRESHOLD: usize = 3;

/// `(listener, upstream)`: the same backend behind an HTTP/1.1 and an HTTP/2 upstream.
const UPSTREAMS: [(&str, &str); 2] = [("h1up", "over_h1"), ("h2up", "over_h2")];

fn config(backend: SocketAddr) -> String {
    let upstream = |name: &str, protocol: &str| {
        format!(
            r#"
  - name: {name}
    protocol: {protocol}
    targets: [{{ address: "{backend}" }}]
    outlier_detection: {{ consecutive_failures: {THRESHOLD} }}
    circuit_breaker: {{ consecutive_failures: {THRESHOLD}, failure_rate: 0, open_for: 30s }}"#
        )
    };
    format!(
        r#"
listeners:
  - {{ name: h1up, address: "127.0.0.1:0" }}
  - {{ name: h2up, address: "127.0.0.1:0" }}
routes:
  - {{ listeners: [h1up], match: {{ paths: ["/*"] }}, proxy: {{ upstream: over_h1 }} }}
  - {{ listeners: [h2up], match: {{ paths: ["/*"] }}, proxy: {{ upstream: over_h2 }} }}
upstreams:{}{}
"#,
        upstream("over_h1", "http1"),
        upstream("over_h2", "http2"),
    )
}

/// Chunked bodies whose second chunk is malformed (RFC 9112 §7.1: `chunk-size = 1*HEXDIG`,
/// each chunk ends with CRLF). The first chunk is fine, so the upstream request has begun.
const MALFORMED: [(&str, &str); 5] = [
    ("a non-hex size", "ZZ\r\nhello\r\n0\r\n\r\n"),
    ("a 0x-prefixed size", "0x1\r\na\r\n0\r\n\r\n"),
    ("a size after a space", " 5\r\nhello\r\n0\r\n\r\n"),
    ("a negative size", "-5\r\nhello\r\n0\r\n\r\n"),
    ("a chunk without its CRLF", "5\r\nhelloXX0\r\n\r\n"),
];

/// Open a raw connection and start an upload: the head and the first bytes of the body. Once
/// the backend has seen the forwarded request, the upstream request is under way.
async fn start_upload(
    addr: SocketAddr,
    backend: &Backend,
    framing: &str,
    first: &str,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nhost: x\r\n{framing}\r\n\r\n{first}");
    let seen = backend.requests();
    s.write_all(head.as_bytes()).await.unwrap();
    backend.wait_for_requests(seen + 1).await;
    s
}

/// Read until the gateway closes the connection (bounded): everything it answered.
async fn answer_then_close(s: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    // A reset after the answer is a close too; what was read stays in `answer`.
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut answer))
        .await
        .expect("the gateway kept the connection open after a broken body");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> Option<&str> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)
}

/// Nothing was charged to the upstream, and it still serves.
async fn assert_upstream_untouched(
    node: &TestNode,
    listener: &str,
    upstream: &str,
    backend: &Backend,
) {
    let health = admin_json(node, &format!("/upstreams/{upstream}/health")).await;
    let breaker = &health["circuit_breaker"];
    assert_eq!(breaker["state"], "closed", "{upstream}: {breaker}");
    assert_eq!(breaker["trips"], 0, "{upstream}: {breaker}");
    assert_eq!(breaker["window"]["failed"], 0, "{upstream}: {breaker}");
    let endpoint = endpoint_json(node, upstream, backend.addr()).await;
    assert_eq!(
        endpoint["consecutive_failures"], 0,
        "{upstream}: {endpoint}"
    );
    assert_eq!(endpoint["total_ejections"], 0, "{upstream}: {endpoint}");
    for proto in BOTH {
        let c = node.client(proto, listener);
        let r = c
            .send(
                c.request(http::Method::POST, "/upload")
                    .body(support::client::body("intact"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, "6".into()),
            "{upstream} {proto:?}"
        );
    }
}

#[tokio::test]
async fn malformed_chunked_bodies_are_400_and_never_charged_to_the_upstream() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(backend.addr())).await;
    for (listener, upstream) in UPSTREAMS {
        let addr = node.addr(listener);
        for round in 0..2 {
            for (what, bad) in MALFORMED {
                let broken = backend.broken_uploads();
                let framing = "transfer-encoding: chunked";
                let mut s = start_upload(addr, &backend, framing, "5\r\nhello\r\n").await;
                s.write_all(bad.as_bytes()).await.unwrap();
                let answer = answer_then_close(&mut s).await;
                assert_eq!(
                    status_of(&answer),
                    Some("400"),
                    "{upstream} {what} #{round}: {answer}"
                );
                assert!(
                    answer.contains(r#""message":"request body could not be read""#),
                    "{upstream} {what}: {answer}"
                );
                // The upstream saw its request's body break off: aborted, not completed.
                backend.wait_for_broken_uploads(broken + 1).await;
            }
        }
        assert_upstream_untouched(&node, listener, upstream, &backend).await;
    }
}

#[tokio::test]
async fn uploads_cut_off_mid_body_are_not_charged_to_the_upstream() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(backend.addr())).await;
    let cut_offs = [
        ("a length-framed body", "content-length: 100", "0123456789"),
        (
            "a chunked body",
            "transfer-encoding: chunked",
            "5\r\nhello\r\n",
        ),
    ];
    for (listener, upstream) in UPSTREAMS {
        let addr = node.addr(listener);
        for _ in 0..THRESHOLD {
            for (what, framing, first) in cut_offs {
                let broken = backend.broken_uploads();
                let mut s = start_upload(addr, &backend, framing, first).await;
                // The client stops sending (half-close): the body can never end.
                s.shutdown().await.unwrap();
                let answer = answer_then_close(&mut s).await;
                // nginx's 499 "client closed request": this client still reads.
                assert_eq!(
                    status_of(&answer),
                    Some("499"),
                    "{upstream} {what}: {answer}"
                );
                assert!(
                    answer.contains(r#""message":"client closed the request""#),
                    "{upstream} {what}: {answer}"
                );
                backend.wait_for_broken_uploads(broken + 1).await;
            }
        }
        assert_upstream_untouched(&node, listener, upstream, &backend).await;
    }
}

/// A body that sends a first chunk, then fails when `abort` fires: the client's HTTP/1.1
/// connection is closed mid-body, its HTTP/2 stream reset.
fn aborting_body(abort: tokio::sync::oneshot::Receiver<()>) -> support::client::ClientBody {
    let first = futures_util::stream::once(async { Ok(Frame::data(Bytes::from_static(b"hello"))) });
    let then_fail = futures_util::stream::once(async move {
        let _ = abort.await;
        Err::<Frame<Bytes>, support::client::BoxError>("client gave up".into())
    });
    BodyExt::boxed(StreamBody::new(first.chain(then_fail)))
}

#[tokio::test]
async fn uploads_the_client_aborts_are_not_charged_to_the_upstream() {
    let backend = Backend::start("b").await;
    let node = TestNode::start(&config(backend.addr())).await;
    for (listener, upstream) in UPSTREAMS {
        for proto in BOTH {
            for _ in 0..THRESHOLD + 1 {
                let (seen, broken) = (backend.requests(), backend.broken_uploads());
                let (abort, aborted) = tokio::sync::oneshot::channel();
                // A fresh client each time: an aborted HTTP/1.1 connection is not reused.
                let c = TestClient::new(proto, node.addr(listener));
                let request = c
                    .request(http::Method::POST, "/upload")
                    .body(aborting_body(aborted))
                    .unwrap();
                // The client gives up once the upstream request is under way.
                let give_up = async {
                    backend.wait_for_requests(seen + 1).await;
                    let _ = abort.send(());
                };
                let (sent, ()) = tokio::join!(c.send(request), give_up);
                assert!(
                    sent.is_err(),
                    "{upstream} {proto:?}: the client aborted: {sent:?}"
                );
                backend.wait_for_broken_uploads(broken + 1).await;
            }
        }
        assert_upstream_untouched(&node, listener, upstream, &backend).await;
    }
}
