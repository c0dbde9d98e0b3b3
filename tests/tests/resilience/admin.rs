//! The admin views: `GET /upstreams` lists every upstream with its endpoints, breaker and
//! limits; `GET /upstreams/{name}/health` shows one; unknown names are a JSON 404.

use support::{Backend, Proto, TestClient, TestNode};

use crate::admin_json;

#[tokio::test]
async fn upstreams_show_endpoints_breakers_and_limits() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: one }} }}
upstreams:
  - name: one
    targets: [{{ address: "{}" }}, {{ address: "{}", weight: 3 }}]
    health_check: {{ type: tcp, interval: 1s }}
  - name: two
    targets: [{{ address: "{}" }}]
    circuit_breaker: {{ enabled: false }}
    outlier_detection: {{ enabled: false }}
"#,
        a.addr(),
        b.addr(),
        a.addr()
    );
    let node = TestNode::start(&yaml).await;
    let c = node.client(Proto::Http1, "main");
    for _ in 0..4 {
        assert_eq!(c.get("/hello").await.status, 200);
    }
    let all = admin_json(&node, "/upstreams").await;
    let list = all["upstreams"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let one = &list[0];
    assert_eq!(one["name"], "one");
    assert_eq!(one["health_check"], true);
    assert_eq!(one["outlier_detection"], true);
    assert_eq!(one["panic"], false);
    assert_eq!(one["endpoints_in_rotation"], 2);
    assert_eq!(one["circuit_breaker"]["state"], "closed");
    assert_eq!(one["circuit_breaker"]["trips"], 0);
    assert_eq!(one["limits"]["max_requests"], 1024);
    assert_eq!(one["limits"]["requests"], 0);
    let endpoints = one["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[1]["weight"], 3);
    let requests: u64 = endpoints
        .iter()
        .map(|e| {
            assert_eq!(e["healthy"], true);
            assert_eq!(e["in_rotation"], true);
            assert!(e["ejected"].is_null());
            e["requests"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(requests, 4);
    assert_eq!(list[1]["circuit_breaker"]["enabled"], false);
    assert_eq!(list[1]["outlier_detection"], false);

    let single = admin_json(&node, "/upstreams/two/health").await;
    assert_eq!(single["name"], "two");

    let admin = TestClient::new(Proto::Http1, node.admin());
    let missing = admin.get("/upstreams/nope/health").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["message"], "no such upstream");
    let wrong = admin
        .send(
            admin
                .request(http::Method::POST, "/upstreams")
                .body(support::client::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 405);
}
