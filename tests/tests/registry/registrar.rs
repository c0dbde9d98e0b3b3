//! The Registrar against the Consul double and a real etcd.

use std::time::Duration;

use support::consul_double::ConsulDouble;
use support::{Backend, TestNode};

fn registrar_config(consul: &ConsulDouble, app: &Backend) -> String {
    format!(
        r#"
discovery:
  consul: {{ address: "{}" }}
registration:
  backend: consul
  service: web
  id: web-1
  address: 127.0.0.1
  port: {}
  tags: [v1]
  meta: {{ version: v1 }}
  ttl: 3s
  health_check: {{ url: "http://{}/health", timeout: 1s }}
"#,
        consul.url(),
        app.addr().port(),
        app.addr()
    )
}

async fn wait_for_check(consul: &ConsulDouble, check_id: &str, status: &str) {
    let mut index = consul.subscribe();
    tokio::time::timeout(support::harness::PATIENCE, async {
        loop {
            if consul
                .check(check_id)
                .await
                .is_some_and(|c| c.status == status)
            {
                return;
            }
            index.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("check {check_id} never became {status}"));
}

#[tokio::test]
async fn heartbeats_follow_local_health_and_shutdown_deregisters() {
    let consul = ConsulDouble::start().await;
    let app = Backend::start("web-app").await;
    let node = TestNode::start(&registrar_config(&consul, &app)).await;

    wait_for_check(&consul, "service:web-1", "passing").await;
    assert_eq!(consul.service_ids().await, vec!["web-1".to_string()]);

    app.set_healthy(false);
    wait_for_check(&consul, "service:web-1", "critical").await;
    let check = consul.check("service:web-1").await.unwrap();
    assert!(check.output.contains("503"), "{check:?}");

    app.set_healthy(true);
    wait_for_check(&consul, "service:web-1", "passing").await;

    node.shutdown(Duration::from_secs(5)).await;
    assert!(
        consul.service_ids().await.is_empty(),
        "deregistered on shutdown"
    );
}

#[tokio::test]
async fn an_agent_that_forgot_the_service_gets_it_registered_again() {
    let consul = ConsulDouble::start().await;
    let app = Backend::start("web-app").await;
    let _node = TestNode::start(&registrar_config(&consul, &app)).await;
    wait_for_check(&consul, "service:web-1", "passing").await;
    // The agent restarts and loses its local state.
    assert!(consul.deregister("web-1").await);
    assert!(consul.service_ids().await.is_empty());
    let mut index = consul.subscribe();
    tokio::time::timeout(support::harness::PATIENCE, async {
        while consul.service_ids().await.is_empty() {
            index.changed().await.unwrap();
        }
    })
    .await
    .expect("the registrar registers again at its next heartbeat");
    wait_for_check(&consul, "service:web-1", "passing").await;
}
