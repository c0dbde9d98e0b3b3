//! The client address: spoofed `X-Forwarded-For` from an untrusted peer is ignored and dropped,
//! a trusted proxy's is honoured; PROXY protocol v1 and v2 name the client; the resolved address
//! is what the upstream receives and what IP rules see.

use support::net::proxy_v2;
use support::{BOTH, Backend};

use super::{PROXY_ALL, raw_exchange, start, yaml};

fn xff(json: &serde_json::Value) -> String {
    json["headers"]["x-forwarded-for"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let backend = Backend::start("b").await;
    // The only trusted proxy is not us (127.0.0.1), and an IP rule denies the spoofed address.
    let security = "security:\n  client_ip: { trusted_proxies: [\"192.0.2.0/24\"] }\n  ip_rules: { deny: [\"203.0.113.0/24\"] }\n";
    let node = start(&yaml(security, "", PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c
            .get_with(
                "/echo",
                &[
                    ("x-forwarded-for", "203.0.113.9"),
                    ("forwarded", "for=203.0.113.9"),
                ],
            )
            .await;
        assert_eq!(
            r.status, 200,
            "{proto:?}: the spoofed address must not be what rules see"
        );
        let json = r.json();
        assert_eq!(
            xff(&json),
            "127.0.0.1",
            "{proto:?}: only the real peer goes upstream"
        );
        assert!(json["headers"].get("forwarded").is_none(), "{proto:?}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let backend = Backend::start("b").await;
    let security = "security:\n  client_ip: { trusted_proxies: [\"127.0.0.0/8\", \"10.0.0.0/8\"] }\n  ip_rules: { deny: [\"203.0.113.66\"] }\n";
    let node = start(&yaml(security, "", PROXY_ALL, Some(backend.addr()))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c
            .get_with(
                "/echo",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")],
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            xff(&r.json()),
            "198.51.100.7, 10.1.2.3, 127.0.0.1",
            "{proto:?}: the client's own prefix is dropped, the trusted chain kept"
        );
        let r = c
            .get_with("/echo", &[("x-forwarded-for", "203.0.113.66, 10.1.2.3")])
            .await;
        assert_eq!(
            r.status, 403,
            "{proto:?}: rules apply to the resolved client"
        );
    }
}

#[tokio::test]
async fn forwarded_rfc_7239_is_read_when_chosen() {
    let backend = Backend::start("b").await;
    let security =
        "security:\n  client_ip: { trusted_proxies: [\"127.0.0.1\"], header: forwarded }\n";
    let node = start(&yaml(security, "", PROXY_ALL, Some(backend.addr()))).await;
    let c = node.client(support::Proto::Http1, "main");
    let r = c
        .get_with(
            "/echo",
            &[("forwarded", "for=\"[2001:db8::7]:1234\";proto=https")],
        )
        .await;
    assert_eq!(xff(&r.json()), "2001:db8::7, 127.0.0.1");
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_name_the_client() {
    let backend = Backend::start("b").await;
    let node = start(&yaml(
        "",
        "    proxy_protocol: true\n",
        PROXY_ALL,
        Some(backend.addr()),
    ))
    .await;
    let addr = node.addr("main");
    let request = b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

    let mut v1 = b"PROXY TCP4 198.51.100.20 10.0.0.1 40000 443\r\n".to_vec();
    v1.extend_from_slice(request);
    let (status, body) = raw_exchange(addr, &v1).await.unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // A chunked echo body: take the JSON between the chunk-size lines.
        let start = body.find('{').unwrap();
        let end = body.rfind('}').unwrap();
        serde_json::from_str(&body[start..=end]).unwrap()
    });
    assert_eq!(xff(&json), "198.51.100.20");

    let mut v6 = b"PROXY TCP6 2001:db8::20 2001:db8::1 40000 443\r\n".to_vec();
    v6.extend_from_slice(request);
    let (_, body) = raw_exchange(addr, &v6).await.unwrap();
    assert!(
        body.contains("\"x-forwarded-for\":\"2001:db8::20\""),
        "{body}"
    );

    let mut v2 = proxy_v2([192, 0, 2, 44], 40001, [10, 0, 0, 1], 443);
    v2.extend_from_slice(request);
    let (_, body) = raw_exchange(addr, &v2).await.unwrap();
    assert!(
        body.contains("\"x-forwarded-for\":\"192.0.2.44\""),
        "{body}"
    );

    // Without the header the connection is closed unanswered: a client cannot skip it.
    assert_eq!(raw_exchange(addr, request).await, None);
    assert!(node.handle().security_stats().proxy_protocol_failures >= 1);
}

#[tokio::test]
async fn proxy_protocol_clients_meet_ip_rules() {
    let backend = Backend::start("b").await;
    let security = "security:\n  ip_rules: { deny: [\"198.51.100.0/24\"] }\n";
    let node = start(&yaml(
        security,
        "    proxy_protocol: true\n",
        PROXY_ALL,
        Some(backend.addr()),
    ))
    .await;
    let mut req = b"PROXY TCP4 198.51.100.20 10.0.0.1 40000 443\r\n".to_vec();
    req.extend_from_slice(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let (status, _) = raw_exchange(node.addr("main"), &req).await.unwrap();
    assert_eq!(status, 403);
}
