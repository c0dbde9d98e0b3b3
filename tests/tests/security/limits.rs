//! Request limits and their status codes: 431 (header count, header bytes), 414 (request
//! target), 400 (query parameters), 413 (declared length, and a streamed body cut mid-way with
//! the upstream request aborted).

use bytes::Bytes;
use http::Method;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use support::client::{body, empty};
use support::{BOTH, Backend, Proto};

use super::{BodyProbe, BodySeen, PROXY_ALL, raw_exchange, start, yaml};

const LIMITS: &str = "security:\n  limits: { max_headers: 20, max_header_bytes: 2KB, max_uri_length: 512, max_query_params: 5, max_body_size: 1KB }\n";

#[tokio::test]
async fn head_limits_answer_431_414_and_400_over_both_protocols() {
    let backend = Backend::start("b").await;
    let node = start(&yaml(LIMITS, "", PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        assert_eq!(c.get("/echo").await.status, 200, "{proto:?}");

        let many: Vec<(String, String)> =
            (0..25).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let pairs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = c.get_with("/echo", &pairs).await;
        assert_eq!(r.status, 431, "{proto:?} header count");
        assert_eq!(
            r.json()["error"]["message"],
            "too many request header fields"
        );

        let big = "a".repeat(3000);
        let r = c.get_with("/echo", &[("x-big", &big)]).await;
        assert_eq!(r.status, 431, "{proto:?} header bytes");
        assert_eq!(
            r.json()["error"]["message"],
            "request header fields too large"
        );

        let r = c.get(&format!("/echo?{}", "q".repeat(600))).await;
        assert_eq!(r.status, 414, "{proto:?} target length");

        let r = c.get("/echo?a=1&b=2&c=3&d=4&e=5&f=6").await;
        assert_eq!(r.status, 400, "{proto:?} query parameters");
        assert_eq!(r.json()["error"]["message"], "too many query parameters");
        assert_eq!(c.get("/echo?a=1&b=2&c=3&d=4&e=5").await.status, 200);
    }
}

#[tokio::test]
async fn hyper_backstops_keep_the_status_codes_far_beyond_the_limits() {
    let node = start(&yaml(
        LIMITS,
        "",
        "  - { match: { paths: [\"/*\"] }, respond: { status: 200 } }\n",
        None,
    ))
    .await;
    let addr = node.addr("main");
    // 400 KiB of headers: beyond hyper's own buffer (the header allowance plus 128 KiB for the
    // request line), which answers 431 itself.
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(400 * 1024)
    );
    let (status, _) = raw_exchange(addr, huge.as_bytes()).await.unwrap();
    assert_eq!(status, 431);
    let many: String = (0..500).map(|i| format!("x-{i}: v\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    let (status, _) = raw_exchange(addr, req.as_bytes()).await.unwrap();
    assert_eq!(status, 431);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let backend = Backend::start("b").await;
    let node = start(&yaml(LIMITS, "", PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let req = c
            .request(Method::POST, "/upload")
            .body(body(vec![b'x'; 2048]))
            .unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status, 413, "{proto:?}");
        assert_eq!(r.json()["error"]["message"], "request body too large");
        let req = c
            .request(Method::POST, "/upload")
            .body(body(vec![b'x'; 1000]))
            .unwrap();
        assert_eq!(c.send(req).await.unwrap().status, 200, "{proto:?}");
    }
    assert_eq!(
        backend.requests(),
        2,
        "refused bodies never reach the backend"
    );
}

fn streamed(total: usize, chunk: usize) -> support::client::ClientBody {
    let frames = futures_util::stream::unfold(total, move |left| async move {
        (left > 0).then(|| {
            let n = left.min(chunk);
            (Ok(Frame::data(Bytes::from(vec![b'y'; n]))), left - n)
        })
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// Send a small marker body and collect what the backend saw until it arrives: every body
/// before it was cut (the aborted request either reached the backend broken, or not at all
/// when the abort came before anything was flushed).
async fn nothing_complete_before_marker(
    probe: &mut BodyProbe,
    c: &support::TestClient,
    what: &str,
) {
    let req = c
        .request(Method::POST, "/marker")
        .body(body(vec![b'm'; 777]))
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status, 200);
    loop {
        match probe.next().await {
            BodySeen::Complete(777) => return,
            BodySeen::Complete(n) => {
                panic!("{what}: the upstream saw a complete body of {n} bytes")
            }
            BodySeen::Broken(n) => assert!(n <= 1024 + 512, "{what}: {n} bytes passed the limit"),
        }
    }
}

#[tokio::test]
async fn a_streamed_body_is_cut_mid_way_and_the_upstream_request_aborted() {
    let mut probe = BodyProbe::start().await;
    let node = start(&yaml(LIMITS, "", PROXY_ALL, Some(probe.addr))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        // Under the limit, streamed without a length: passes whole.
        let req = c
            .request(Method::POST, "/ok")
            .body(streamed(900, 300))
            .unwrap();
        assert_eq!(c.send(req).await.unwrap().status, 200, "{proto:?}");
        assert_eq!(probe.next().await, BodySeen::Complete(900), "{proto:?}");
        // Over it: the client hears 413, the upstream never gets the whole body.
        let req = c
            .request(Method::POST, "/big")
            .body(streamed(64 * 1024, 512))
            .unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status, 413, "{proto:?}");
        assert_eq!(r.json()["error"]["message"], "request body too large");
        nothing_complete_before_marker(&mut probe, &c, &format!("{proto:?}")).await;
    }
    // Chunked over raw HTTP/1.1: 4 KiB in 512-byte chunks, no final chunk needed.
    let mut req = b"POST /raw HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'z'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    let (status, body) = super::raw_exchange(node.addr("main"), &req).await.unwrap();
    assert_eq!(status, 413, "{body}");
    let c = node.client(Proto::Http1, "main");
    nothing_complete_before_marker(&mut probe, &c, "raw chunked").await;
    let stats = node.handle().security_stats();
    assert!(stats.bodies_cut >= 3, "{stats:?}");
}

#[tokio::test]
async fn empty_bodies_and_plain_gets_pass_under_default_limits() {
    let backend = Backend::start("b").await;
    let node = start(&yaml("", "", PROXY_ALL, Some(backend.addr()))).await;
    for proto in [Proto::Http1, Proto::Http2] {
        let c = node.client(proto, "main");
        let r = c
            .send(c.request(Method::GET, "/echo").body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
}
