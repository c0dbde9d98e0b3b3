//! Who counts as one client: each key kind separates what it should and nothing else, and
//! anonymous traffic is limited per client IP.

use support::idp::cheap_phc;
use support::{Backend, Proto, TestNode};

use super::{client_from, node_yaml, ok_route, statuses};

const ALICE: (&str, &str) = ("x-api-key", "alice.0123456789abcdef");
const ALICE_SPARE: (&str, &str) = ("x-api-key", "alice2.0123456789abcdef");
const BOB: (&str, &str) = ("x-api-key", "bob.0123456789abcdef");

fn consumers() -> String {
    format!(
        r#"consumers:
  - username: alice
    credentials:
      - {{ api_key: {{ id: alice, hash: "{}" }} }}
      - {{ api_key: {{ id: alice2, hash: "{}" }} }}
  - username: bob
    credentials: [{{ api_key: {{ id: bob, hash: "{}" }} }}]
  - username: guest"#,
        cheap_phc(ALICE.1),
        cheap_phc(ALICE_SPARE.1),
        cheap_phc(BOB.1),
    )
}

/// One request per hour per key, for each key kind.
const POLICIES: &str = r#"rate_limiting:
  policies:
    - { name: by-ip, key: client_ip, limits: [{ requests: 1, per: 1h }] }
    - { name: by-header, key: { header: x-tenant }, limits: [{ requests: 1, per: 1h }] }
    - { name: by-path, key: path, limits: [{ requests: 1, per: 1h }] }
    - { name: by-route, key: route, limits: [{ requests: 1, per: 1h }] }
    - { name: by-service, key: service, limits: [{ requests: 1, per: 1h }] }
    - { name: by-consumer, key: consumer, limits: [{ requests: 1, per: 1h }] }
    - { name: by-credential, key: credential, limits: [{ requests: 1, per: 1h }] }
    - { name: by-tenant-and-ip, key: [{ header: x-tenant }, client_ip], limits: [{ requests: 1, per: 1h }] }
"#;

fn authed(name: &str, path: &str, policy: &str) -> String {
    format!(
        "{}    auth: {{ methods: [api_key] }}\n",
        ok_route(name, path, &format!("[{policy}]"))
    )
}

fn proxied(name: &str, path: &str, upstream: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{ paths: [\"{path}\"] }}\n    proxy: {{ upstream: {upstream} }}\n    rate_limit: [by-service]\n"
    )
}

#[tokio::test]
async fn each_key_kind_separates_exactly_its_clients() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let upstreams = format!(
        "upstreams:\n  - {{ name: one, targets: [{{ address: \"{}\" }}] }}\n  - {{ name: two, targets: [{{ address: \"{}\" }}] }}\n{}",
        one.addr(),
        two.addr(),
        consumers()
    );
    let routes = [
        ok_route("ip", "/ip", "[by-ip]"),
        ok_route("header", "/header", "[by-header]"),
        ok_route("path", "/path/*", "[by-path]"),
        ok_route("route-a", "/route-a", "[by-route]"),
        ok_route("route-b", "/route-b", "[by-route]"),
        proxied("svc-one", "/one/hello", "one"),
        proxied("svc-one-again", "/one/again", "one"),
        proxied("svc-two", "/two/hello", "two"),
        authed("consumer", "/consumer", "by-consumer"),
        authed("credential", "/credential", "by-credential"),
        ok_route("composite", "/composite", "[by-tenant-and-ip]"),
    ]
    .concat();
    let node = TestNode::start(&node_yaml(POLICIES, &upstreams, &routes)).await;
    let a = client_from(&node, Proto::Http1, "127.0.0.2");
    let b = client_from(&node, Proto::Http1, "127.0.0.3");

    // client_ip: each address has its own budget.
    assert_eq!(statuses(&a, "/ip", &[], 2).await, [200, 429]);
    assert_eq!(statuses(&b, "/ip", &[], 2).await, [200, 429]);

    // header: per value, whatever the address.
    let acme = [("x-tenant", "acme")];
    assert_eq!(statuses(&a, "/header", &acme, 1).await, [200]);
    assert_eq!(statuses(&b, "/header", &acme, 1).await, [429]);
    assert_eq!(
        statuses(&b, "/header", &[("x-tenant", "globex")], 1).await,
        [200]
    );

    // path: per normalised path; `/path/x/../a` is `/path/a`.
    assert_eq!(statuses(&a, "/path/a", &[], 1).await, [200]);
    assert_eq!(statuses(&b, "/path/x/../a", &[], 1).await, [429]);
    assert_eq!(statuses(&b, "/path/b", &[], 1).await, [200]);

    // route: one budget per route, shared by every client.
    assert_eq!(statuses(&a, "/route-a", &[], 1).await, [200]);
    assert_eq!(statuses(&b, "/route-a", &[], 1).await, [429]);
    assert_eq!(statuses(&b, "/route-b", &[], 1).await, [200]);

    // service: one budget per upstream, across its routes.
    assert_eq!(statuses(&a, "/one/hello", &[], 1).await, [200]);
    assert_eq!(statuses(&b, "/one/again", &[], 1).await, [429]);
    assert_eq!(statuses(&b, "/two/hello", &[], 1).await, [200]);

    // consumer: per consumer, whichever key or address it uses.
    assert_eq!(statuses(&a, "/consumer", &[ALICE], 1).await, [200]);
    assert_eq!(statuses(&b, "/consumer", &[ALICE_SPARE], 1).await, [429]);
    assert_eq!(statuses(&a, "/consumer", &[BOB], 1).await, [200]);

    // credential: per key, even of one consumer.
    assert_eq!(statuses(&a, "/credential", &[ALICE], 1).await, [200]);
    assert_eq!(statuses(&b, "/credential", &[ALICE], 1).await, [429]);
    assert_eq!(statuses(&a, "/credential", &[ALICE_SPARE], 1).await, [200]);

    // composite: tenant and address together.
    assert_eq!(statuses(&a, "/composite", &acme, 2).await, [200, 429]);
    assert_eq!(statuses(&b, "/composite", &acme, 1).await, [200]);
}

#[tokio::test]
async fn anonymous_traffic_is_limited_per_client_ip() {
    let section = r#"rate_limiting:
  policies:
    - { name: open-callers, limits: [{ requests: 2, per: 1h }] }
    - { name: guests, limits: [{ requests: 2, per: 1h }] }
"#;
    let routes = [
        // No auth at all: no consumer, so the default key (consumer) is the address.
        ok_route("open", "/open", "[open-callers]"),
        format!(
            "{}    auth: {{ methods: [api_key], anonymous: guest }}\n",
            ok_route("guests", "/guests", "[guests]")
        ),
    ]
    .concat();
    let node = TestNode::start(&node_yaml(section, &consumers(), &routes)).await;
    let a = client_from(&node, Proto::Http1, "127.0.0.4");
    let b = client_from(&node, Proto::Http1, "127.0.0.5");

    assert_eq!(statuses(&a, "/open", &[], 3).await, [200, 200, 429]);
    assert_eq!(statuses(&b, "/open", &[], 3).await, [200, 200, 429]);

    // The anonymous consumer counts per address too (else every visitor would share one
    // budget) …
    assert_eq!(statuses(&a, "/guests", &[], 3).await, [200, 200, 429]);
    assert_eq!(statuses(&b, "/guests", &[], 1).await, [200]);
    // … while an identified consumer has its own, wherever it calls from.
    assert_eq!(statuses(&a, "/guests", &[BOB], 1).await, [200]);
    assert_eq!(statuses(&b, "/guests", &[BOB], 2).await, [200, 429]);
}
