//! Routing through a live node: match kinds, rewrites, direct responses and 404s.

use support::{BOTH, Backend, TestNode};

async fn node_with_backend() -> (TestNode, Backend) {
    let backend = Backend::start("b1").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - name: exact
    match: {{ paths: ["/health"] }}
    respond: {{ status: 200, body: "exact" }}
  - name: user
    match: {{ paths: ["/users/{{id}}"] }}
    proxy: {{ upstream: b, rewrite: "/echo/v2/users/{{id}}" }}
  - name: api
    match: {{ paths: ["/api/*"] }}
    proxy: {{ upstream: b, strip_prefix: /api, add_prefix: /echo }}
  - name: host
    match: {{ hosts: ["*.tenant.test"], paths: ["/*"] }}
    respond: {{ status: 200, body: "tenant" }}
  - name: canary
    match: {{ paths: ["/api/*"], headers: [{{ name: x-canary, exact: "1" }}] }}
    respond: {{ status: 200, body: "canary" }}
  - name: debug
    match: {{ paths: ["/api/*"], query: [{{ name: debug, present: true }}] }}
    respond: {{ status: 200, body: "debug" }}
  - name: post-only
    match: {{ paths: ["/submit"], methods: [POST] }}
    respond: {{ status: 201, body: "created" }}
  - name: echo
    match: {{ paths: ["/echo-self/*"] }}
    respond: {{ echo: true }}
upstreams:
  - name: b
    targets: [{{ address: "{}" }}]
"#,
        backend.addr()
    );
    (TestNode::start(&yaml).await, backend)
}

#[tokio::test]
async fn each_match_kind_routes_over_both_protocols() {
    let (node, _backend) = node_with_backend().await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        assert_eq!(c.get("/health").await.text(), "exact", "{proto:?}");
        let user = c.get("/users/42").await.json();
        assert_eq!(user["path"], "/echo/v2/users/42", "{proto:?}");
        let api = c.get("/api/items?page=2").await.json();
        assert_eq!(api["path"], "/echo/items");
        assert_eq!(api["query"], "page=2");
        assert_eq!(
            c.get_with("/api/x", &[("x-canary", "1")]).await.text(),
            "canary"
        );
        assert_eq!(c.get("/api/x?debug").await.text(), "debug");
        let tenant = c.get_with("/anything", &[("host", "a.tenant.test")]).await;
        // h2 carries the host in :authority, which the client sets from the URL; only h1
        // lets a test override it with a Host header.
        if proto == support::Proto::Http1 {
            assert_eq!(tenant.text(), "tenant");
        }
        let post = c
            .send(
                c.request(http::Method::POST, "/submit")
                    .body(support::client::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(post.status, 201);
        assert_eq!(
            c.get("/submit").await.status,
            404,
            "GET must not match a POST route"
        );
    }
}

#[tokio::test]
async fn echo_returns_the_request_with_captured_details() {
    let (node, _backend) = node_with_backend().await;
    let c = node.client(support::Proto::Http1, "main");
    let r = c
        .send(
            c.request(http::Method::PUT, "/echo-self/a?b=1")
                .header("x-test", "yes")
                .body(support::client::body("payload"))
                .unwrap(),
        )
        .await
        .unwrap();
    let echo = r.json();
    assert_eq!(echo["route"], "echo");
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/echo-self/a");
    assert_eq!(echo["query"], "b=1");
    assert_eq!(echo["headers"]["x-test"], "yes");
    assert_eq!(echo["body"], "payload");
    assert_eq!(echo["request_id"], r.header("x-request-id").unwrap());
}

#[tokio::test]
async fn no_route_is_a_json_404_with_the_request_id() {
    let (node, _backend) = node_with_backend().await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c
            .get_with("/nowhere", &[("x-request-id", "trace-me-123")])
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-request-id"), Some("trace-me-123"));
        assert_eq!(
            r.json(),
            serde_json::json!({"error": {"code": 404, "message": "no route matched", "request_id": "trace-me-123"}})
        );
    }
}

#[tokio::test]
async fn dot_segments_cannot_escape_a_prefix_and_bad_paths_are_400() {
    let (node, _backend) = node_with_backend().await;
    let c = node.client(support::Proto::Http1, "main");
    // /api/../health normalises to /health: the exact route answers, not the api prefix.
    assert_eq!(c.get("/api/../health").await.text(), "exact");
    assert_eq!(c.get("/api/%2e%2e/health").await.text(), "exact");
    let r = c.get("/api/a%00b").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], 400);
}
