//! Limits keyed by client IP count the address the gateway trusts: a spoofed `X-Forwarded-For`
//! from an untrusted peer changes nothing, and behind a load balancer speaking the PROXY
//! protocol each real client has its own budget.

use support::net::{proxy_v2, raw_exchange};
use support::{Proto, TestNode};

use super::{client_from, count, node_yaml, ok_route, statuses};

const PER_IP: &str = "rate_limiting:\n  policies:\n    - { name: per-ip, key: client_ip, limits: [{ requests: 2, per: 1h }] }\n";

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_buy_a_new_budget() {
    // Only 192.0.2.0/24 may name clients; the test's peer (127.0.0.6) is not in it.
    let section =
        format!("{PER_IP}security:\n  client_ip: {{ trusted_proxies: [\"192.0.2.0/24\"] }}\n");
    let node = TestNode::start(&node_yaml(&section, "", &ok_route("r", "/r", "[per-ip]"))).await;
    let c = client_from(&node, Proto::Http1, "127.0.0.6");
    let mut seen = Vec::new();
    for i in 0..4 {
        let spoofed = format!("198.51.100.{i}");
        let forwarded = format!("for={spoofed}");
        seen.extend(
            statuses(
                &c,
                "/r",
                &[("x-forwarded-for", &spoofed), ("forwarded", &forwarded)],
                1,
            )
            .await,
        );
    }
    assert_eq!(seen, [200, 200, 429, 429], "one budget for the real peer");

    // A trusted proxy in front does name the client: the same peer, trusted, gives each
    // forwarded address its own budget.
    let section =
        format!("{PER_IP}security:\n  client_ip: {{ trusted_proxies: [\"127.0.0.0/8\"] }}\n");
    let node = TestNode::start(&node_yaml(&section, "", &ok_route("r", "/r", "[per-ip]"))).await;
    let c = client_from(&node, Proto::Http1, "127.0.0.6");
    let a = [("x-forwarded-for", "198.51.100.1")];
    let b = [("x-forwarded-for", "198.51.100.2")];
    assert_eq!(statuses(&c, "/r", &a, 3).await, [200, 200, 429]);
    assert_eq!(statuses(&c, "/r", &b, 3).await, [200, 200, 429]);
}

#[tokio::test]
async fn proxy_protocol_v2_client_addresses_are_what_limits_count() {
    let yaml = node_yaml(PER_IP, "", &ok_route("r", "/r", "[per-ip]")).replace(
        "{ name: main, address: \"127.0.0.1:0\" }",
        "{ name: main, address: \"127.0.0.1:0\", proxy_protocol: true }",
    );
    let node = TestNode::start(&yaml).await;
    let addr = node.addr("main");
    let request = b"GET /r HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let from = |ip: [u8; 4]| {
        let mut bytes = proxy_v2(ip, 40000, [10, 0, 0, 1], 443);
        bytes.extend_from_slice(request);
        bytes
    };
    // Every connection comes from the same socket peer (the balancer, 127.0.0.1); the
    // PROXY header names two different clients.
    let mut first = Vec::new();
    let mut second = Vec::new();
    for _ in 0..3 {
        first.push(
            raw_exchange(addr, &from([203, 0, 113, 1]))
                .await
                .map(|r| r.0),
        );
        second.push(
            raw_exchange(addr, &from([203, 0, 113, 2]))
                .await
                .map(|r| r.0),
        );
    }
    let codes = |v: &[Option<u16>]| v.iter().map(|s| s.unwrap_or(0)).collect::<Vec<_>>();
    assert_eq!(codes(&first), [200, 200, 429], "client 203.0.113.1");
    assert_eq!(codes(&second), [200, 200, 429], "client 203.0.113.2");
    assert_eq!(count(&codes(&first), 200) + count(&codes(&second), 200), 4);
}
