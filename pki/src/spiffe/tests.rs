//! Tables of SPIFFE IDs the parser must accept and reject, with the rule each one breaks.

use super::*;

#[test]
fn accepts_valid_ids() {
    let cases = [
        ("spiffe://example.org", "example.org", ""),
        (
            "spiffe://example.org/ns/default/svc/orders",
            "example.org",
            "/ns/default/svc/orders",
        ),
        ("spiffe://a-b_c.9/x", "a-b_c.9", "/x"),
        (
            "spiffe://td/Path.With-Mixed_Case/..x/.y",
            "td",
            "/Path.With-Mixed_Case/..x/.y",
        ),
        ("spiffe://td/a/b/c/d/e/f", "td", "/a/b/c/d/e/f"),
    ];
    for (input, trust_domain, path) in cases {
        let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(id.trust_domain(), trust_domain, "{input}");
        assert_eq!(id.path(), path, "{input}");
        assert_eq!(id.to_string(), input);
    }
}

#[test]
fn rejects_invalid_ids_with_the_broken_rule() {
    let long_path = format!("spiffe://td/{}", "a".repeat(2048));
    let long_td = format!("spiffe://{}", "a".repeat(256));
    let cases: [(&str, &str); 22] = [
        ("", "scheme"),
        ("example.org/ns/a", "scheme"),
        ("http://example.org/ns/a", "scheme"),
        ("SPIFFE://example.org/ns/a", "scheme"),
        ("spiffe:/example.org", "scheme"),
        ("spiffe://", "trust domain is missing"),
        ("spiffe:///path", "trust domain is missing"),
        ("spiffe://Example.org/a", "lowercase"),
        ("spiffe://exa mple.org/a", "lowercase"),
        ("spiffe://example.org:8443/a", "port"),
        ("spiffe://user@example.org/a", "userinfo"),
        ("spiffe://example.org/a?x=1", "query"),
        ("spiffe://example.org/a#frag", "fragment"),
        ("spiffe://example.org/", "trailing slash"),
        ("spiffe://example.org/a/", "trailing slash"),
        ("spiffe://example.org//a", "empty segments"),
        ("spiffe://example.org/a//b", "empty segments"),
        ("spiffe://example.org/./a", "dot segments"),
        ("spiffe://example.org/a/..", "dot segments"),
        ("spiffe://example.org/a%20b", "percent"),
        ("spiffe://example.org/a b", "path segment characters"),
        ("spiffe://example.org/caf\u{e9}", "path segment characters"),
    ];
    for (input, reason) in cases
        .iter()
        .copied()
        .chain([(long_path.as_str(), "2048"), (long_td.as_str(), "255")])
    {
        match SpiffeId::parse(input) {
            Ok(id) => panic!("{input:?} parsed as {id}"),
            Err(e) => assert!(e.to_string().contains(reason), "{input:?}: {e}"),
        }
    }
}

#[test]
fn service_constructor_builds_the_meshgate_shape() {
    let id = SpiffeId::service("mesh.local", "payments", "ledger").unwrap();
    assert_eq!(id.as_str(), "spiffe://mesh.local/ns/payments/svc/ledger");
    assert_eq!(id.namespace(), Some("payments"));
    assert_eq!(id.service_name(), Some("ledger"));
    assert_eq!(id.trust_domain(), "mesh.local");
    assert!(
        SpiffeId::service("mesh.local", "a/b", "c").is_err(),
        "namespace with a slash"
    );
    assert!(
        SpiffeId::service("mesh.local", "a", "svc/c").is_err(),
        "service with a slash"
    );
    assert!(
        SpiffeId::service("mesh.local", "", "c").is_err(),
        "empty namespace"
    );
    assert!(
        SpiffeId::service("Mesh", "a", "c").is_err(),
        "uppercase trust domain"
    );
}

#[test]
fn non_meshgate_paths_have_no_namespace() {
    for input in [
        "spiffe://td",
        "spiffe://td/ns/a",
        "spiffe://td/ns/a/svc/b/extra",
        "spiffe://td/x/a/svc/b",
        "spiffe://td/ns/a/dc/b/svc",
        "spiffe://td/ns/a/dc/b/svc/c/extra",
        "spiffe://td/ns/a/xx/b/svc/c",
        "spiffe://td/ap/p/ns/a/dc/b/svc/c",
    ] {
        let id: SpiffeId = input.parse().unwrap();
        assert_eq!(id.namespace(), None, "{input}");
        assert_eq!(id.service_name(), None, "{input}");
    }
}

#[test]
fn consul_connect_service_ids_name_namespace_datacenter_and_service() {
    let id: SpiffeId =
        "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web"
            .parse()
            .unwrap();
    assert_eq!(
        id.trust_domain(),
        "11111111-2222-3333-4444-555555555555.consul"
    );
    assert_eq!(id.namespace(), Some("default"));
    assert_eq!(id.datacenter(), Some("dc1"));
    assert_eq!(id.service_name(), Some("web"));

    let meshgate = SpiffeId::service("mesh.local", "shop", "orders").unwrap();
    assert_eq!(meshgate.datacenter(), None);
    assert_eq!(meshgate.service_name(), Some("orders"));
}
