//! Input the edge must not trust, over HTTP/1.1 and HTTP/2: one authority for routing and
//! forwarding (Host rules), `Upgrade: h2c`, header names with underscores, reserved percent
//! escapes in the forwarded path, GET bodies without a length, `OPTIONS *`, long targets, and
//! defaults that let a gateway behind a load balancer serve its users. A backend that echoes
//! what it received shows what was forwarded; raw sockets send what clients refuse to.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{BOTH, Backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{PROXY_ALL, raw_exchange, start, yaml};

/// A request sent over a fresh HTTP/2 connection as given: any `:authority`, any `host` fields.
async fn h2_send(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn h2_get(uri: &str, hosts: &[&str]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().uri(uri);
    for h in hosts {
        b = b.header("host", *h);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A route for `internal.example` that only 10.0.0.0/8 may use, and everything else proxied
/// to the echo backend with the client's Host preserved.
fn host_rule_routes() -> &'static str {
    "  - { name: internal, match: { hosts: [internal.example], paths: [\"/*\"] }, respond: { status: 200, body: internal }, security: { ip_rules: { allow: [10.0.0.0/8] } } }\n  - { name: all, match: { paths: [\"/*\"] }, proxy: { upstream: backend, preserve_host: true } }\n"
}

#[tokio::test]
async fn routing_and_forwarding_use_one_authority_and_a_disagreeing_host_is_refused() {
    let backend = Backend::start("b").await;
    let node = start(&yaml("", "", host_rule_routes(), Some(backend.addr()))).await;
    let addr = node.addr("main");

    // HTTP/1.1 absolute form: the target says public, the Host says internal.
    let (status, body) = raw_exchange(
        addr,
        b"GET http://public.example/echo HTTP/1.1\r\nhost: internal.example\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not match"), "{body}");
    // When they agree, the backend gets that one authority.
    let (status, body) = raw_exchange(
        addr,
        b"GET http://Public.Example/echo HTTP/1.1\r\nhost: public.example\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let seen = json(&body);
    assert_eq!(seen["headers"]["host"], "Public.Example");
    assert_eq!(seen["headers"]["x-forwarded-host"], "Public.Example");

    // HTTP/2: `:authority` public, a `host` field internal.
    let (status, body) = h2_send(
        addr,
        h2_get("http://public.example/echo", &["internal.example"]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = h2_send(addr, h2_get("http://public.example/echo", &[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["headers"]["host"], "public.example");
    // The internal host's rule still holds for whoever names it consistently.
    let (status, _) = h2_send(addr, h2_get("http://internal.example/echo", &[])).await;
    assert_eq!(status, 403);
    let (status, _) = raw_exchange(
        addr,
        b"GET /echo HTTP/1.1\r\nhost: internal.example\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(
        backend.requests(),
        2,
        "refused requests never reach the backend"
    );
}

#[tokio::test]
async fn invalid_host_fields_get_400_over_both_protocols() {
    let backend = Backend::start("b").await;
    let node = start(&yaml("", "", PROXY_ALL, Some(backend.addr()))).await;
    let addr = node.addr("main");
    for (what, head) in [
        ("missing", "GET /echo HTTP/1.1\r\n"),
        (
            "two",
            "GET /echo HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\n",
        ),
        ("space", "GET /echo HTTP/1.1\r\nhost: a b\r\n"),
        (
            "list",
            "GET /echo HTTP/1.1\r\nhost: internal.example, localhost\r\n",
        ),
        ("userinfo", "GET /echo HTTP/1.1\r\nhost: user@a.example\r\n"),
        ("port", "GET /echo HTTP/1.1\r\nhost: a.example:70000\r\n"),
    ] {
        let req = format!("{head}connection: close\r\n\r\n");
        let (status, body) = raw_exchange(addr, req.as_bytes()).await.unwrap();
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains("Host header field"), "{what}: {body}");
    }
    // HTTP/1.0 may omit it; an empty Host is valid.
    for req in [
        "GET /echo HTTP/1.0\r\n\r\n",
        "GET /echo HTTP/1.1\r\nhost:\r\nconnection: close\r\n\r\n",
    ] {
        let (status, body) = raw_exchange(addr, req.as_bytes()).await.unwrap();
        assert_eq!(status, 200, "{req:?}: {body}");
    }
    let uri = format!("http://{addr}/echo");
    for hosts in [
        &["a.example", "b.example"][..],
        &["a b"],
        &["internal.example, localhost"],
    ] {
        let (status, body) = h2_send(addr, h2_get(&uri, hosts)).await;
        assert_eq!(status, 400, "HTTP/2 {hosts:?}: {body}");
    }
    let (status, _) = h2_send(addr, h2_get(&uri, &[&addr.to_string()])).await;
    assert_eq!(status, 200, "a host equal to :authority is fine");
    assert_eq!(backend.requests(), 3);
}

/// A backend that answers 101 to everything and reports the request heads and whatever
/// arrives after its 101 (what a tunnel would carry).
async fn switching_backend() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n",
                    )
                    .await;
                let mut after = Vec::new();
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    after.extend_from_slice(&buf[..n]);
                }
                if !after.is_empty() {
                    let _ = tx.send(format!("TUNNELLED {}", String::from_utf8_lossy(&after)));
                }
            });
        }
    });
    (addr, rx)
}

const H2C_UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n";

#[tokio::test]
async fn h2c_upgrades_are_not_forwarded_and_a_101_is_never_spliced() {
    // An echo backend shows what is left of the upgrade: nothing.
    let backend = Backend::start("b").await;
    let node = start(&yaml("", "", PROXY_ALL, Some(backend.addr()))).await;
    let req = String::from_utf8_lossy(H2C_UPGRADE).replacen(
        "HTTP2-Settings\r\n",
        "HTTP2-Settings, close\r\n",
        1,
    );
    let (status, body) = raw_exchange(node.addr("main"), req.as_bytes())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let headers = &json(&body)["headers"];
    for name in ["upgrade", "connection", "http2-settings"] {
        assert!(
            headers.get(name).is_none(),
            "{name} was forwarded: {headers}"
        );
    }

    // A backend that switches protocols anyway: the client gets 502, not a tunnel.
    let (addr, mut seen) = switching_backend().await;
    let node = start(&yaml("", "", PROXY_ALL, Some(addr))).await;
    let mut client = TcpStream::connect(node.addr("main")).await.unwrap();
    client.write_all(H2C_UPGRADE).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(support::harness::PATIENCE, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    let head = seen.recv().await.unwrap();
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
    // What the client sends next is a new request for the gateway, never tunnel bytes.
    let _ = client
        .write_all(b"GET /second HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let next = tokio::time::timeout(support::harness::PATIENCE, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(next.starts_with("GET /second"), "{next}");
}

#[tokio::test]
async fn only_the_upgrades_a_route_allows_are_forwarded() {
    let backend = Backend::start("b").await;
    let routes = "  - { name: none, match: { paths: [\"/closed/*\"] }, proxy: { upstream: backend, strip_prefix: /closed }, security: { protocol: { upgrades: [] } } }\n  - { name: all, match: { paths: [\"/*\"] }, proxy: { upstream: backend } }\n";
    let node = start(&yaml("", "", routes, Some(backend.addr()))).await;
    let ws = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let mut open = TcpStream::connect(node.addr("main")).await.unwrap();
    open.write_all(ws("/ws").as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(support::harness::PATIENCE, open.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The closed route forwards the same request without its upgrade: the echo shows it.
    let req = ws("/closed/echo").replacen("connection: Upgrade", "connection: Upgrade, close", 1);
    let (status, body) = raw_exchange(node.addr("main"), req.as_bytes())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["headers"].get("upgrade").is_none(), "{body}");
    // And a backend's 101 to it is not relayed.
    let req = ws("/closed/ws").replacen("connection: Upgrade", "connection: Upgrade, close", 1);
    let (status, body) = raw_exchange(node.addr("main"), req.as_bytes())
        .await
        .unwrap();
    assert_eq!(status, 502, "{body}");
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_rejected_or_kept_per_listener() {
    let backend = Backend::start("b").await;
    let spoof = [
        ("x_forwarded_for", "6.6.6.6"),
        ("x_custom", "1"),
        ("x-kept", "1"),
    ];
    let node = start(&yaml("", "", PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let r = node.client(proto, "main").get_with("/echo", &spoof).await;
        assert_eq!(r.status, 200, "{proto:?}");
        let h = &r.json()["headers"];
        assert!(h.get("x_forwarded_for").is_none(), "{proto:?}: {h}");
        assert!(h.get("x_custom").is_none(), "{proto:?}: {h}");
        assert_eq!(h["x-kept"], "1");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }
    let reject = "    security: { protocol: { headers_with_underscores: reject } }";
    let node = start(&yaml("", reject, PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let r = node.client(proto, "main").get_with("/echo", &spoof).await;
        assert_eq!(r.status, 400, "{proto:?}");
        assert_eq!(
            r.json()["error"]["message"],
            "header field name with an underscore"
        );
    }
    let allow = "    security: { protocol: { headers_with_underscores: allow } }";
    let node = start(&yaml("", allow, PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let r = node.client(proto, "main").get_with("/echo", &spoof).await;
        assert_eq!(r.json()["headers"]["x_custom"], "1", "{proto:?}");
    }
}

#[tokio::test]
async fn reserved_escapes_reach_the_backend_as_they_came() {
    let backend = Backend::start("b").await;
    let routes = "  - { name: api, match: { paths: [\"/api/*\"] }, proxy: { upstream: backend, strip_prefix: /api, add_prefix: /echo } }\n  - { name: user, match: { paths: [\"/users/{id}\"] }, proxy: { upstream: backend, rewrite: \"/echo/u/{id}\" } }\n  - { name: admin, match: { paths: [\"/echo/admin/*\"] }, respond: { status: 403, body: admin } }\n  - { name: all, match: { paths: [\"/*\"] }, proxy: { upstream: backend } }\n";
    let node = start(&yaml("", "", routes, Some(backend.addr()))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        for (sent, forwarded) in [
            ("/echo/p/a%2Fb", "/echo/p/a%2Fb"),
            ("/echo/admin%3Bx", "/echo/admin%3Bx"),
            ("/echo/%61%2fb%3f", "/echo/a%2Fb%3F"),
            ("/echo/x/../y%20z", "/echo/y%20z"),
            ("/api/p/a%2Fb", "/echo/p/a%2Fb"),
            ("/users/a%3Bb", "/echo/u/a%3Bb"),
            ("/users/plain", "/echo/u/plain"),
        ] {
            let r = c.get(sent).await;
            assert_eq!(r.status, 200, "{proto:?} {sent}: {}", r.text());
            assert_eq!(r.json()["path"], forwarded, "{proto:?} {sent}");
        }
        // Routing still reads the decoded path: an escaped slash cannot dodge a route.
        assert_eq!(c.get("/echo/admin%2Fpanel").await.status, 403, "{proto:?}");
        // An escaped slash with a dot segment could resolve either way: refused.
        for ambiguous in ["/public%2F..%2Fecho/admin/x", "/echo/a%2Fb/../c"] {
            let r = c.get(ambiguous).await;
            assert_eq!(r.status, 400, "{proto:?} {ambiguous}");
        }
    }
    let reject = "    security: { protocol: { escaped_slashes: reject } }";
    let node = start(&yaml("", reject, PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c.get("/echo/a%2fb").await;
        assert_eq!(r.status, 400, "{proto:?}");
        assert_eq!(
            r.json()["error"]["message"],
            "escaped slash (%2F) in the path"
        );
        assert_eq!(c.get("/echo/a%3Bb").await.status, 200, "{proto:?}");
    }
}

#[tokio::test]
async fn get_bodies_without_a_length_are_forwarded_not_dropped() {
    let backend = Backend::start("b").await;
    let node = start(&yaml("", "", PROXY_ALL, Some(backend.addr()))).await;
    let (status, body) = raw_exchange(
        node.addr("main"),
        b"GET /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["body"], "hello world");
    for proto in BOTH {
        let c = node.client(proto, "main");
        let frames = futures_util::stream::iter(
            [&b"streamed "[..], b"get body"]
                .map(|d| Ok::<_, support::client::BoxError>(Frame::data(Bytes::from_static(d)))),
        );
        let mut req = c.request(Method::GET, "/echo");
        if proto == support::Proto::Http1 {
            // hyper's client, like the gateway's, sends a GET body only when told it is chunked.
            req = req.header("transfer-encoding", "chunked");
        }
        let req = req.body(BodyExt::boxed(StreamBody::new(frames))).unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status, 200, "{proto:?}");
        assert_eq!(r.json()["body"], "streamed get body", "{proto:?}");
    }
}

#[tokio::test]
async fn options_star_is_answered_with_allow() {
    let node = start(&yaml(
        "",
        "",
        "  - { match: { paths: [\"/*\"] }, respond: { status: 204 } }\n",
        None,
    ))
    .await;
    let addr = node.addr("main");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("allow: get, head, post, put, delete, patch, options"),
        "{text}"
    );
    // HTTP/2 (`:path *`) is in h2_frames.rs: the http crate builds no such URI.
}

#[tokio::test]
async fn long_targets_get_414_not_431() {
    let backend = Backend::start("b").await;
    let node = start(&yaml("", "", PROXY_ALL, Some(backend.addr()))).await;
    let addr = node.addr("main");
    for kib in [9, 70, 120] {
        let target = format!("/echo?q={}", "a".repeat(kib * 1024));
        let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let (status, _) = raw_exchange(addr, req.as_bytes()).await.unwrap();
        assert_eq!(status, 414, "HTTP/1.1, {kib} KiB");
    }
    // The http crate builds no URI of 64 KiB or more; up to that, HTTP/2 answers the same.
    for kib in [9, 60] {
        let target = format!("/echo?q={}", "a".repeat(kib * 1024));
        let (status, _) = h2_send(addr, h2_get(&format!("http://{addr}{target}"), &[])).await;
        assert_eq!(status, 414, "HTTP/2, {kib} KiB");
    }
}

#[tokio::test]
async fn an_unknown_http_1_minor_version_is_refused_by_the_parser() {
    // RFC 9110 §2.5 asks for HTTP/1.2 to be read as 1.1; hyper's parser (httparse) accepts
    // only 1.0 and 1.1 and answers 400 itself (docs/security.md).
    let node = start(&yaml(
        "",
        "",
        "  - { match: { paths: [\"/*\"] }, respond: { status: 200 } }\n",
        None,
    ))
    .await;
    let (status, _) = raw_exchange(
        node.addr("main"),
        b"GET / HTTP/1.2\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
}

#[tokio::test]
async fn defaults_serve_many_headers_and_many_connections_from_one_address() {
    let backend = Backend::start("b").await;
    let node = start(&yaml("", "", PROXY_ALL, Some(backend.addr()))).await;
    // nginx and HAProxy serve 60 ordinary header fields; so do we, up to 100.
    let many: Vec<(String, String)> = (0..90).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let pairs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for proto in BOTH {
        let r = node.client(proto, "main").get_with("/echo", &pairs).await;
        assert_eq!(r.status, 200, "{proto:?}");
    }
    // A load balancer or NAT: 150 concurrent connections from one address, all served.
    let addr = node.addr("main");
    let mut held = Vec::new();
    for i in 0..150 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(support::harness::PATIENCE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "connection {i}");
        held.push(s);
    }
}
