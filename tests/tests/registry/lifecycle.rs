//! Discovery watchers in the supervision tree: reloads start, replace and stop them as an
//! upstream's source changes; a crashed watcher or pool is restarted and catches up.

use meshgate_actors::ChildKey;
use support::consul_double::{ConsulDouble, Instance};
use support::{Backend, TestNode};

use crate::consul::{consul_discovery, instance};
use crate::{answered, await_rotation, gateway_config, tally, upstream};

fn config(consul: &ConsulDouble, upstream: &str) -> String {
    gateway_config(&consul_discovery(consul, "60s"), &[("up", upstream)])
}

/// The ids of the node's discovery watchers, by upstream.
async fn watchers(node: &TestNode) -> Vec<(String, String)> {
    node.handle()
        .children()
        .await
        .into_iter()
        .filter_map(|(key, cell)| match key {
            ChildKey::DiscoveryWatcher(name) => Some((name.to_string(), cell.get_id().to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_start_replace_and_stop_watchers() {
    let consul = ConsulDouble::start().await;
    let fixed = Backend::start("fixed").await;
    let web = Backend::start("web-1").await;
    let api = Backend::start("api-1").await;
    consul.register_instance(instance(&web)).await;
    let api_port = api.addr().port();
    consul
        .register_instance(Instance::new("api", "api-1", api.addr().ip(), api_port))
        .await;
    let static_upstream = format!("    targets: [{{ address: \"{}\" }}]", fixed.addr());
    let node = TestNode::start(&config(&consul, &static_upstream)).await;
    let up = upstream(&node, "up");
    await_rotation(&up, &[&fixed]).await;
    assert!(watchers(&node).await.is_empty());

    let event = node
        .rewrite_config(&config(
            &consul,
            "    discovery: { consul: { service: web } }",
        ))
        .await;
    assert_eq!(event.result, Ok(()));
    await_rotation(&up, &[&web]).await;
    let first = watchers(&node).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, "up");
    assert_eq!(answered(&tally(&node, "/hello", 4).await), ["web-1"]);

    let event = node
        .rewrite_config(&config(
            &consul,
            "    discovery: { consul: { service: api } }",
        ))
        .await;
    assert_eq!(event.result, Ok(()));
    await_rotation(&up, &[&api]).await;
    assert!(!up.load().stale);
    let second = watchers(&node).await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0].1, first[0].1, "a new watcher for the new source");

    // A reload that changes nothing about the source keeps the watcher.
    let event = node
        .rewrite_config(&config(
            &consul,
            "    discovery: { consul: { service: api } }\n    connect_timeout: 2s",
        ))
        .await;
    assert_eq!(event.result, Ok(()));
    assert_eq!(watchers(&node).await, second);

    let event = node
        .rewrite_config(&config(&consul, &static_upstream))
        .await;
    assert_eq!(event.result, Ok(()));
    await_rotation(&up, &[&fixed]).await;
    assert!(watchers(&node).await.is_empty());
    assert!(!up.load().stale);
    // The old source's changes no longer reach the pool.
    consul
        .register_instance(instance(&Backend::start("web-2").await))
        .await;
    assert_eq!(answered(&tally(&node, "/hello", 4).await), ["fixed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_watchers_and_pools_are_restarted_and_catch_up() {
    let consul = ConsulDouble::start().await;
    let apps = [
        Backend::start("web-1").await,
        Backend::start("web-2").await,
        Backend::start("web-3").await,
    ];
    consul.register_instance(instance(&apps[0])).await;
    let node = TestNode::start(&config(
        &consul,
        "    discovery: { consul: { service: web } }",
    ))
    .await;
    let up = upstream(&node, "up");
    await_rotation(&up, &[&apps[0]]).await;
    let mut restarts = node.handle().view().restarts();

    let children = node.handle().children().await;
    let (_, watcher) = children
        .iter()
        .find(|(key, _)| matches!(key, ChildKey::DiscoveryWatcher(_)))
        .unwrap();
    watcher.kill();
    tokio::time::timeout(support::harness::PATIENCE, restarts.wait_for(|n| *n >= 1))
        .await
        .expect("the watcher was restarted")
        .unwrap();
    consul.register_instance(instance(&apps[1])).await;
    await_rotation(&up, &[&apps[0], &apps[1]]).await;

    // The pool dies and a change happens meanwhile: the restarted pool's watcher is
    // restarted too, and its first answer carries the change.
    let children = node.handle().children().await;
    let (_, pool) = children
        .iter()
        .find(|(key, _)| matches!(key, ChildKey::UpstreamPool(_)))
        .unwrap();
    pool.kill();
    assert!(consul.deregister("web-1").await);
    consul.register_instance(instance(&apps[2])).await;
    tokio::time::timeout(support::harness::PATIENCE, restarts.wait_for(|n| *n >= 2))
        .await
        .expect("the pool was restarted")
        .unwrap();
    await_rotation(&up, &[&apps[1], &apps[2]]).await;
    assert_eq!(
        answered(&tally(&node, "/hello", 10).await),
        ["web-2", "web-3"]
    );
}
