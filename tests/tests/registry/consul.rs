//! Gateways following Consul (the double): instances registered by meshgate Registrars leave
//! and rejoin the rotation with their health; scale up and down arrive within one blocking
//! round; an agent that is down leaves the last known endpoints serving, marked stale; an
//! empty answer empties the pool.

use std::net::IpAddr;
use std::time::Duration;

use support::consul_double::{ConsulDouble, Instance};
use support::{Backend, Proto, TestNode};

use crate::{admin_json, answered, await_rotation, await_state, gateway_config, tally, upstream};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The node-level Consul connection of a gateway. A long `wait` (the default is 60 s): an
/// update that arrives within the test's patience proves the agent woke the blocking query.
/// The rate limit is loosened so that registration churn does not pace the test.
pub fn consul_discovery(consul: &ConsulDouble, wait: &str) -> String {
    format!(
        "  consul: {{ address: \"{}\", wait: {wait}, rate_limit: {{ burst: 5, interval: 100ms }} }}",
        consul.url()
    )
}

fn web_gateway(consul: &ConsulDouble) -> String {
    gateway_config(
        &consul_discovery(consul, "60s"),
        &[("web", "    discovery: { consul: { service: web } }")],
    )
}

/// A small meshgate node that registers `app` as an instance of `web` with a 3 s TTL check
/// following the app's `/health`.
fn registrar_config(consul: &ConsulDouble, app: &Backend) -> String {
    format!(
        r#"
discovery:
  consul: {{ address: "{}" }}
registration:
  backend: consul
  service: web
  id: {}
  address: 127.0.0.1
  port: {}
  ttl: 3s
  health_check: {{ url: "http://{}/health", timeout: 1s }}
"#,
        consul.url(),
        app.name(),
        app.addr().port(),
        app.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_instances_follow_their_health_on_every_gateway() {
    let consul = ConsulDouble::start().await;
    let apps = [
        Backend::start("web-1").await,
        Backend::start("web-2").await,
        Backend::start("web-3").await,
    ];
    let mut registrars = Vec::new();
    for app in &apps {
        registrars.push(TestNode::start(&registrar_config(&consul, app)).await);
    }
    let gateways = [
        TestNode::start(&web_gateway(&consul)).await,
        TestNode::start(&web_gateway(&consul)).await,
    ];
    let all = [&apps[0], &apps[1], &apps[2]];
    for gateway in &gateways {
        await_rotation(&upstream(gateway, "web"), &all).await;
        let counts = tally(gateway, "/hello", 30).await;
        assert_eq!(answered(&counts), ["web-1", "web-2", "web-3"], "{counts:?}");
    }

    // web-2's health fails: its registrar's next heartbeat is critical, the agent's blocking
    // queries return, and both gateways drop it.
    apps[1].set_healthy(false);
    for gateway in &gateways {
        await_rotation(&upstream(gateway, "web"), &[&apps[0], &apps[2]]).await;
        let counts = tally(gateway, "/hello", 20).await;
        assert_eq!(answered(&counts), ["web-1", "web-3"], "{counts:?}");
    }

    apps[1].set_healthy(true);
    for gateway in &gateways {
        await_rotation(&upstream(gateway, "web"), &all).await;
        let counts = tally(gateway, "/hello", 30).await;
        assert_eq!(answered(&counts), ["web-1", "web-2", "web-3"], "{counts:?}");
    }

    // A registrar that shuts down deregisters: its instance leaves at once.
    let last = registrars.pop().unwrap();
    last.shutdown(Duration::from_secs(5)).await;
    for gateway in &gateways {
        await_rotation(&upstream(gateway, "web"), &[&apps[0], &apps[1]]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_and_down_and_an_agent_outage() {
    let consul = ConsulDouble::start().await;
    let apps = [
        Backend::start("web-1").await,
        Backend::start("web-2").await,
        Backend::start("web-3").await,
        Backend::start("web-4").await,
    ];
    for app in &apps[..2] {
        consul.register_instance(instance(app)).await;
    }
    let gateway = TestNode::start(&web_gateway(&consul)).await;
    let web = upstream(&gateway, "web");
    await_rotation(&web, &[&apps[0], &apps[1]]).await;

    // Scale up: one blocking round (the query is woken by the change, not its 60 s wait).
    consul.register_instance(instance(&apps[2])).await;
    await_rotation(&web, &[&apps[0], &apps[1], &apps[2]]).await;
    let counts = tally(&gateway, "/hello", 30).await;
    assert_eq!(answered(&counts), ["web-1", "web-2", "web-3"], "{counts:?}");
    let kept = web.load().endpoints.clone();

    // Scale down.
    assert!(consul.deregister("web-1").await);
    await_rotation(&web, &[&apps[1], &apps[2]]).await;
    let counts = tally(&gateway, "/hello", 20).await;
    assert_eq!(answered(&counts), ["web-2", "web-3"], "{counts:?}");
    let after = web.load().endpoints.clone();
    assert!(
        after
            .iter()
            .all(|e| kept.iter().any(|k| std::sync::Arc::ptr_eq(k, e))),
        "instances that stayed kept their endpoint (connection pool, stats, health)"
    );

    // The agent goes away: the last known endpoints keep serving, marked stale.
    consul.set_down(true).await;
    await_state(&web, "stale", |s| s.stale).await;
    assert_eq!(crate::rotation(&web.load()).len(), 2);
    let counts = tally(&gateway, "/hello", 20).await;
    assert_eq!(answered(&counts), ["web-2", "web-3"], "{counts:?}");
    let listed = admin_json(&gateway, "/upstreams").await;
    let shown = &listed["upstreams"][0];
    assert_eq!(shown["stale"], true, "{shown}");
    assert_eq!(shown["discovery"]["backend"], "consul");
    assert!(shown["discovery"]["stale_since"].is_string(), "{shown}");
    assert!(
        !shown["discovery"]["error"].as_str().unwrap().is_empty(),
        "{shown}"
    );
    let health = admin_json(&gateway, "/upstreams/web/health").await;
    assert_eq!(health["stale"], true, "{health}");

    // Changes made while it was down arrive with the first answer after it is back.
    consul.register_instance(instance(&apps[3])).await;
    consul.set_down(false).await;
    await_state(&web, "fresh again", |s| !s.stale).await;
    await_rotation(&web, &[&apps[1], &apps[2], &apps[3]]).await;
    let health = admin_json(&gateway, "/upstreams/web/health").await;
    assert_eq!(health["stale"], false, "{health}");
    assert!(health["discovery"]["stale_since"].is_null(), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_empties_the_pool() {
    let consul = ConsulDouble::start().await;
    let app = Backend::start("web-1").await;
    consul.register_instance(instance(&app)).await;
    let gateway = TestNode::start(&web_gateway(&consul)).await;
    let web = upstream(&gateway, "web");
    await_rotation(&web, &[&app]).await;
    assert_eq!(tally(&gateway, "/hello", 2).await["web-1"], 2);

    // A healthy agent says "no instance": that is the truth, not a failure to keep stale.
    assert!(consul.deregister("web-1").await);
    await_state(&web, "no endpoints", |s| s.endpoints.is_empty()).await;
    assert!(!web.load().stale);
    let r = gateway.client(Proto::Http1, "main").get("/hello").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.json()["error"]["message"],
        "no upstream endpoint available"
    );

    consul.register_instance(instance(&app)).await;
    await_rotation(&web, &[&app]).await;
    assert_eq!(tally(&gateway, "/hello", 2).await["web-1"], 2);
}

/// `app` as an instance of `web` placed in the catalog directly (another agent's), passing.
pub fn instance(app: &Backend) -> Instance {
    Instance::new("web", app.name(), LOCALHOST, app.addr().port())
}
