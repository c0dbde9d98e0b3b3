//! IP allow and deny lists, IPv4 and IPv6, global and per route.

use support::{BOTH, Proto, TestClient};

use super::{start, yaml};

const ROUTES: &str = r#"  - name: open
    match: { paths: ["/open"] }
    respond: { status: 200, body: "open" }
  - name: office
    match: { paths: ["/office"] }
    respond: { status: 200, body: "office" }
    security: { ip_rules: { allow: ["10.0.0.0/8", "2001:db8::/32"] } }
"#;

#[tokio::test]
async fn deny_wins_and_allow_lists_admit_only_their_members_v4() {
    let node = start(&yaml("", "", ROUTES, None)).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        assert_eq!(c.get("/open").await.status, 200);
        let r = c.get("/office").await;
        assert_eq!(
            r.status, 403,
            "{proto:?}: 127.0.0.1 is not in the allow list"
        );
        assert_eq!(r.json()["error"]["message"], "client IP is not allowed");
    }
    let denied = start(&yaml(
        "security:\n  ip_rules: { deny: [\"127.0.0.0/8\"] }\n",
        "",
        ROUTES,
        None,
    ))
    .await;
    let c = denied.client(Proto::Http1, "main");
    assert_eq!(c.get("/open").await.status, 403);
    assert_eq!(
        c.get("/nowhere").await.status,
        403,
        "unrouted requests meet the rules too"
    );
}

#[tokio::test]
async fn ipv6_clients_are_matched_by_ipv6_rules() {
    // Skip quietly only when this machine has no IPv6 loopback at all.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no ::1 on this machine; IPv6 rules are covered by the config unit tests");
        return;
    }
    let routes = r#"  - name: v6only
    match: { paths: ["/v6"] }
    respond: { status: 200, body: "v6" }
    security: { ip_rules: { allow: ["::1/128"] } }
  - name: nov6
    match: { paths: ["/nov6"] }
    respond: { status: 200, body: "nov6" }
    security: { ip_rules: { deny: ["::/0"] } }
"#;
    let yaml = format!(
        "listeners:\n  - {{ name: main, address: \"127.0.0.1:0\" }}\n  - {{ name: six, address: \"[::1]:0\" }}\nroutes:\n{routes}"
    );
    let node = start(&yaml).await;
    let six = TestClient::new(Proto::Http1, node.addr("six"));
    let four = node.client(Proto::Http1, "main");
    assert_eq!(six.get("/v6").await.status, 200);
    assert_eq!(four.get("/v6").await.status, 403);
    assert_eq!(six.get("/nov6").await.status, 403);
    assert_eq!(four.get("/nov6").await.status, 200);
}
