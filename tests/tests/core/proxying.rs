//! Proxying behaviour: headers both ways, upstream failures mapped to status codes,
//! aborted streams, WebSocket upgrades and gRPC-style trailers.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{BOTH, Backend, Proto, TestNode};
use tokio_tungstenite::tungstenite::Message;

fn one_upstream(addr: &str, extra_route: &str, upstream_extra: &str) -> String {
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
{extra_route}
  - name: all
    match: {{ paths: ["/*"] }}
    proxy: {{ upstream: b, timeout: 2s }}
upstreams:
  - name: b
    targets: [{{ address: "{addr}" }}]
{upstream_extra}
"#
    )
}

#[tokio::test]
async fn forwarding_headers_request_id_and_hop_by_hop() {
    let backend = Backend::start("b1").await;
    let node = TestNode::start(&one_upstream(&backend.addr().to_string(), "", "")).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c
            .get_with(
                "/echo/x",
                &[
                    ("x-forwarded-for", "203.0.113.7"),
                    ("x-drop-me", "secret"),
                    ("x-keep", "1"),
                ],
            )
            .await;
        assert_eq!(r.status, 200);
        let seen = r.json();
        let h = &seen["headers"];
        // The client is not a trusted proxy: its own X-Forwarded-For is dropped, the real peer
        // is sent (docs/security.md; a trusted proxy's chain is kept, tests/tests/security).
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{proto:?}");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(
            h["x-forwarded-host"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        let via = h["via"].as_str().unwrap();
        assert_eq!(
            via,
            if proto == Proto::Http1 {
                "1.1 meshgate"
            } else {
                "2 meshgate"
            }
        );
        assert_eq!(h["x-keep"], "1");
        // The id the backend saw is the one the client got back, and it was generated.
        let rid = r.header("x-request-id").unwrap();
        assert_eq!(h["x-request-id"], rid);
        assert_eq!(rid.len(), 36);
        assert_eq!(r.header("via"), Some("1.1 meshgate"));
    }
    // A header named in Connection is hop-by-hop and must not reach the backend (HTTP/1.1).
    let c = node.client(Proto::Http1, "main");
    let r = c
        .get_with(
            "/echo/y",
            &[("connection", "x-drop-me"), ("x-drop-me", "secret")],
        )
        .await;
    assert!(r.json()["headers"].get("x-drop-me").is_none());
}

#[tokio::test]
async fn upstream_failures_map_to_502_504_503() {
    let refusing = support::net::RefusingPort::new();
    let dead = refusing.addr;
    let slow = Backend::start("slow").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/dead/*"] }}, proxy: {{ upstream: dead }} }}
  - {{ match: {{ paths: ["/slow/*"] }}, proxy: {{ upstream: slow, timeout: 300ms }} }}
  - {{ match: {{ paths: ["/fast/*"] }}, proxy: {{ upstream: slow, strip_prefix: /fast }} }}
upstreams:
  - {{ name: dead, targets: [{{ address: "{dead}" }}] }}
  - {{ name: slow, targets: [{{ address: "{}" }}] }}
"#,
        slow.addr()
    );
    let node = TestNode::start(&yaml).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c.get("/dead/x").await;
        assert_eq!(r.status, 502, "{proto:?}");
        assert_eq!(
            r.json()["error"]["message"],
            "upstream refused the connection"
        );
        assert_eq!(
            r.json()["error"]["request_id"],
            r.header("x-request-id").unwrap()
        );
        let r = c.get("/slow/5000").await;
        assert_eq!(r.status, 504, "{proto:?}");
        assert_eq!(r.json()["error"]["message"], "upstream timed out");
        // The timed-out connection is closed, not pooled: the next request needs a new one,
        // which is then kept for the one after.
        let after_timeout = slow.accepts();
        assert_eq!(c.get("/fast/hello").await.status, 200);
        assert_eq!(c.get("/fast/hello").await.status, 200);
        assert_eq!(slow.accepts(), after_timeout + 1, "{proto:?}");
    }
}

#[tokio::test]
async fn a_backend_reset_mid_body_aborts_the_client_stream() {
    let backend = Backend::start("b1").await;
    let node = TestNode::start(&one_upstream(&backend.addr().to_string(), "", "")).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let result = c
            .send(
                c.request(http::Method::GET, "/reset")
                    .body(support::client::empty())
                    .unwrap(),
            )
            .await;
        assert!(
            result.is_err(),
            "{proto:?}: a truncated body must not look complete: {result:?}"
        );
        // The gateway keeps serving.
        assert_eq!(c.get("/hello").await.status, 200);
    }
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let backend = Backend::start("b1").await;
    let node = TestNode::start(&one_upstream(&backend.addr().to_string(), "", "")).await;
    let stream = tokio::net::TcpStream::connect(node.addr("main"))
        .await
        .unwrap();
    let url = format!("ws://{}/ws", node.addr("main"));
    let (mut ws, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "through", "meshgate"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn grpc_style_trailers_survive_an_h2_hop() {
    let backend = Backend::start("grpc").await;
    let node = TestNode::start(&one_upstream(
        &backend.addr().to_string(),
        "",
        "    protocol: http2",
    ))
    .await;
    let c = node.client(Proto::Http2, "main");
    let r = c
        .get_with(
            "/trailers",
            &[("te", "trailers"), ("content-type", "application/grpc")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"\0\0\0\0\x05hello");
    let trailers = r.trailers.as_ref().expect("trailers forwarded");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert_eq!(r.header("content-type"), Some("application/grpc"));
}

#[tokio::test]
async fn upstream_keep_alive_reuses_connections() {
    let backend = Backend::start("b1").await;
    let node = TestNode::start(&one_upstream(&backend.addr().to_string(), "", "")).await;
    let c = node.client(Proto::Http1, "main");
    for _ in 0..50 {
        assert_eq!(c.get("/hello").await.status, 200);
    }
    assert_eq!(backend.requests(), 50);
    assert_eq!(
        backend.accepts(),
        1,
        "sequential requests share one upstream connection"
    );
}
