//! Looking at a running node's upstreams: their live handles, waiting for a published state,
//! the admin API's JSON.

use std::sync::Arc;

use meshgate_actors::upstream::{UpstreamHandle, UpstreamState};

use crate::harness::{PATIENCE, TestNode};
use crate::{Proto, TestClient};

/// The live handle of an upstream of the node's serving config.
pub fn upstream(node: &TestNode, name: &str) -> Arc<UpstreamHandle> {
    node.handle()
        .view()
        .load()
        .upstreams
        .iter()
        .find(|h| &*h.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no upstream named {name}"))
}

/// Wait (bounded) until the upstream's published state satisfies `ready`.
pub async fn await_state(
    handle: &UpstreamHandle,
    what: &str,
    ready: impl Fn(&UpstreamState) -> bool,
) {
    let mut published = handle.subscribe();
    let wait = async {
        loop {
            if ready(&handle.load()) {
                return;
            }
            published.changed().await.unwrap();
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| {
            let state = handle.load();
            let rotation: Vec<_> = state.rotation.iter().map(|e| e.address).collect();
            panic!(
                "upstream {} never reached: {what}; last state: rotation {rotation:?}, stale {}",
                handle.name, state.stale
            )
        });
}

/// `GET` an admin path and parse the JSON answer.
pub async fn admin_json(node: &TestNode, path: &str) -> serde_json::Value {
    let r = TestClient::new(Proto::Http1, node.admin()).get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}
