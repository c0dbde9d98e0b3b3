//! Gateways following a real etcd: instances registered by meshgate Registrars under leases
//! leave both gateways' rotation when their health fails (the key is removed) and return when
//! it recovers; an etcd outage leaves the last known endpoints serving, marked stale.

use support::etcd_server::EtcdServer;
use support::{Backend, TestNode};

use crate::{answered, await_rotation, await_state, gateway_config, tally, upstream};

fn etcd_discovery(etcd: &EtcdServer) -> String {
    format!("  etcd: {{ endpoints: [\"{}\"] }}", etcd.endpoint())
}

fn web_gateway(etcd: &EtcdServer) -> String {
    gateway_config(
        &etcd_discovery(etcd),
        &[("web", "    discovery: { etcd: { service: web } }")],
    )
}

/// A node that registers `app` as an instance of `web` under a 2 s lease while the app's
/// `/health` passes.
fn registrar_config(etcd: &EtcdServer, app: &Backend) -> String {
    format!(
        r#"
discovery:
{}
registration:
  backend: etcd
  service: web
  id: {}
  address: 127.0.0.1
  port: {}
  ttl: 2s
  health_check: {{ url: "http://{}/health", timeout: 1s }}
"#,
        etcd_discovery(etcd),
        app.name(),
        app.addr().port(),
        app.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_instances_follow_their_health_on_every_gateway() {
    let mut etcd = EtcdServer::start().await;
    let apps = [
        Backend::start("web-1").await,
        Backend::start("web-2").await,
        Backend::start("web-3").await,
    ];
    let mut registrars = Vec::new();
    for app in &apps {
        registrars.push(TestNode::start(&registrar_config(&etcd, app)).await);
    }
    let gateways = [
        TestNode::start(&web_gateway(&etcd)).await,
        TestNode::start(&web_gateway(&etcd)).await,
    ];
    let all = [&apps[0], &apps[1], &apps[2]];
    for gateway in &gateways {
        await_rotation(&upstream(gateway, "web"), &all).await;
        let counts = tally(gateway, "/hello", 30).await;
        assert_eq!(answered(&counts), ["web-1", "web-2", "web-3"], "{counts:?}");
    }

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

    // etcd goes away: the gateways keep the last known endpoints, marked stale.
    etcd.kill();
    for gateway in &gateways {
        let web = upstream(gateway, "web");
        await_state(&web, "stale", |s| s.stale).await;
        assert_eq!(crate::rotation(&web.load()).len(), 3);
        let counts = tally(gateway, "/hello", 30).await;
        assert_eq!(answered(&counts), ["web-1", "web-2", "web-3"], "{counts:?}");
    }
    etcd.start_again().await;
    for gateway in &gateways {
        await_state(&upstream(gateway, "web"), "fresh again", |s| !s.stale).await;
    }
    drop(registrars);
}
