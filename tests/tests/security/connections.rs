//! The per-client-IP connection limit: connections over it are closed at once, and a closed
//! connection gives its place back.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{raw_on, start, yaml};

const ROUTE: &str = "  - { match: { paths: [\"/*\"] }, respond: { status: 200, body: \"ok\" } }\n";

async fn served(stream: &mut TcpStream) -> bool {
    raw_on(
        stream,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .is_some_and(|(status, _)| status == 200)
}

/// One request on a kept-alive connection: true when answered 200 (the connection stays open).
async fn served_keep_alive(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        match tokio::time::timeout(support::harness::PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    got.starts_with(b"HTTP/1.1 200")
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_are_closed_at_once() {
    let node = start(&yaml(
        "security:\n  max_connections_per_ip: 3\n",
        "",
        ROUTE,
        None,
    ))
    .await;
    let addr = node.addr("main");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Answered = admitted and counted.
        assert!(served_keep_alive(&mut s).await);
        held.push(s);
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        !served(&mut extra).await,
        "the fourth connection must be refused"
    );
    assert_eq!(node.handle().security_stats().connections_refused, 1);
    // The held ones are served; closing one frees a place.
    let mut first = held.remove(0);
    assert!(served(&mut first).await);
    drop(first);
    support::eventually("a freed place", || async {
        let mut again = TcpStream::connect(addr).await.unwrap();
        served(&mut again).await.then_some(())
    })
    .await;
    for mut s in held {
        assert!(served(&mut s).await);
    }
}

#[tokio::test]
async fn zero_means_unlimited_and_the_limit_is_per_listener() {
    let yaml = "security:\n  max_connections_per_ip: 2\nlisteners:\n  - { name: main, address: \"127.0.0.1:0\" }\n  - name: open\n    address: \"127.0.0.1:0\"\n    security: { max_connections_per_ip: 0 }\nroutes:\n  - { match: { paths: [\"/*\"] }, respond: { status: 200 } }\n";
    let node = start(yaml).await;
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(TcpStream::connect(node.addr("open")).await.unwrap());
    }
    for s in &mut open {
        assert!(served(s).await);
    }
    let mut a = TcpStream::connect(node.addr("main")).await.unwrap();
    let mut b = TcpStream::connect(node.addr("main")).await.unwrap();
    assert!(served(&mut a).await && served(&mut b).await);
}
