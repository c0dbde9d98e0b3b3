//! Slow clients: a slowloris connection (headers trickled) and a slow POST (body trickled) are
//! cut off at their limits while normal clients keep being served. These tests necessarily wait
//! for the configured timeouts, which are set short (1 s).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use support::{BOTH, Backend};

use super::{BodyProbe, BodySeen, PROXY_ALL, start, yaml};

const SHORT: &str =
    "security:\n  slow_clients: { header_timeout: 1s, min_body_rate: 1KB, body_rate_window: 1s }\n";

/// Write `bytes` one at a time every `gap` until the server closes; returns when it did.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> Option<Instant> {
    for b in bytes {
        if stream.write_all(&[*b]).await.is_err() {
            return Some(Instant::now());
        }
        // Peek for the close between bytes; a closed socket reads 0 (or an error).
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(gap, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => return Some(Instant::now()), // a response (408/400) then close
            Err(_) => {}
        }
    }
    None
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let backend = Backend::start("b").await;
    let node = start(&yaml(SHORT, "", PROXY_ALL, Some(backend.addr()))).await;
    let addr = node.addr("main");
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = b"GET /hello HTTP/1.1\r\nhost: x\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        trickle(&mut s, head, Duration::from_millis(100)).await
    });
    let silent = tokio::spawn(async move {
        // Connects and sends nothing at all (no byte for the protocol sniffer either).
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        Instant::now()
    });
    let stalled_h2 = tokio::spawn(async move {
        // An HTTP/2 preface and SETTINGS, then no request ever.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
                Ok(Ok(_)) => continue, // the server's SETTINGS, its ACK, a GOAWAY
                Err(_) => return None,
            }
        }
    });
    // Normal clients, both protocols, keep getting answers meanwhile.
    for _ in 0..5 {
        for proto in BOTH {
            assert_eq!(node.client(proto, "main").get("/hello").await.status, 200);
        }
    }
    let cut = slow
        .await
        .unwrap()
        .expect("the slowloris connection was never closed");
    let waited = cut - started;
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}, before the timeout"
    );
    assert!(
        waited < Duration::from_secs(4),
        "closed only after {waited:?}"
    );
    let silent_cut = silent.await.unwrap() - started;
    assert!(
        silent_cut < Duration::from_secs(4),
        "a silent connection stayed {silent_cut:?}"
    );
    let h2_cut = stalled_h2
        .await
        .unwrap()
        .expect("a stalled HTTP/2 connection stayed open")
        - started;
    assert!(
        h2_cut >= Duration::from_millis(900),
        "HTTP/2 closed after {h2_cut:?}"
    );
    assert!(
        h2_cut < Duration::from_secs(4),
        "HTTP/2 closed after {h2_cut:?}"
    );
}

#[tokio::test]
async fn a_slow_post_is_cut_off_with_408_and_never_completes_upstream() {
    let mut probe = BodyProbe::start().await;
    let node = start(&yaml(SHORT, "", PROXY_ALL, Some(probe.addr))).await;
    let addr = node.addr("main");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // 10 bytes every 200 ms = 50 B/s, far below the 1 KB/s minimum.
    let mut response = Vec::new();
    for _ in 0..50 {
        if s.write_all(&[b'p'; 10]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                response.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "got {text:?} after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "cut only after {waited:?}");
    assert!(matches!(probe.next().await, BodySeen::Broken(_)));
    // A normal POST right after is fine.
    let c = node.client(support::Proto::Http1, "main");
    let req = c
        .request(http::Method::POST, "/upload")
        .body(support::client::body(vec![b'q'; 5000]))
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status, 200);
    assert_eq!(probe.next().await, BodySeen::Complete(5000));
}
