//! The pool actor with a discovered upstream: sets replace the endpoints, failures keep them
//! (stale), an empty answer empties them, a replaced watcher is not heard, and reloads that
//! change the source or the subset.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use meshgate_config::UpstreamSpec;
use meshgate_discovery::{Endpoint as Instance, EndpointSet};
use ractor::{Actor, ActorRef};

use super::{AWAITING_NEW_SOURCE, UpstreamPool, UpstreamPoolArgs, UpstreamPoolMsg};
use crate::upstream::{UpstreamHandle, UpstreamState};

fn spec(upstream: &str) -> Arc<UpstreamSpec> {
    let text = format!(
        "discovery:\n  consul: {{ address: \"http://127.0.0.1:1\" }}\n  zone: a\nupstreams:\n  - name: web\n{upstream}\n"
    );
    let config = meshgate_config::parse_str(&text, meshgate_config::Format::Yaml).unwrap();
    meshgate_config::compile(&config).unwrap().upstreams[0].clone()
}

const CONSUL_WEB: &str = "    discovery: { consul: { service: web } }";

fn instance(last: u8, version: &str) -> Instance {
    Instance::new(IpAddr::from([10, 0, 0, last]), 80).with_metadata("version", version)
}

fn set(instances: &[(u8, &str)]) -> EndpointSet {
    instances.iter().map(|(i, v)| instance(*i, v)).collect()
}

fn addresses(state: &UpstreamState) -> Vec<String> {
    state
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect()
}

struct Pool {
    handle: Arc<UpstreamHandle>,
    actor: ActorRef<UpstreamPoolMsg>,
    epoch: u64,
}

impl Pool {
    async fn start(spec: Arc<UpstreamSpec>) -> Self {
        let handle = Arc::new(UpstreamHandle::new(spec.clone()));
        let epoch = handle.next_discovery_epoch();
        let args = UpstreamPoolArgs {
            handle: handle.clone(),
            spec,
        };
        let (actor, _) = Actor::spawn(None, UpstreamPool, args).await.unwrap();
        Self {
            handle,
            actor,
            epoch,
        }
    }

    /// Send and wait until the pool published once more.
    async fn send(&self, message: UpstreamPoolMsg) -> Arc<UpstreamState> {
        let mut published = self.handle.subscribe();
        let before = *published.borrow_and_update();
        self.actor.cast(message).unwrap();
        tokio::time::timeout(Duration::from_secs(5), published.wait_for(|v| *v > before))
            .await
            .expect("the pool published")
            .unwrap();
        self.handle.load_full()
    }

    async fn discovered(&self, instances: &[(u8, &str)]) -> Arc<UpstreamState> {
        self.send(UpstreamPoolMsg::Discovered {
            epoch: self.epoch,
            set: set(instances),
        })
        .await
    }

    async fn failed(&self, reason: &str) -> Arc<UpstreamState> {
        self.send(UpstreamPoolMsg::DiscoveryStale {
            epoch: self.epoch,
            reason: reason.into(),
        })
        .await
    }
}

#[tokio::test]
async fn sets_replace_failures_keep_and_empty_answers_empty() {
    let pool = Pool::start(spec(CONSUL_WEB)).await;
    assert!(pool.handle.load().endpoints.is_empty());

    let state = pool.discovered(&[(1, "v1"), (2, "v1")]).await;
    assert_eq!(addresses(&state), ["10.0.0.1:80", "10.0.0.2:80"]);
    assert_eq!(state.rotation.len(), 2);
    assert!(!state.stale);

    let state = pool.failed("consul: cannot reach it").await;
    assert!(state.stale);
    assert_eq!(
        state.stale_reason.as_deref(),
        Some("consul: cannot reach it")
    );
    let since = state.stale_since.unwrap();
    assert_eq!(
        state.rotation.len(),
        2,
        "the last known endpoints keep serving"
    );
    let state = pool.failed("consul: still down").await;
    assert_eq!(
        state.stale_since,
        Some(since),
        "stale since the first failure"
    );

    let state = pool.discovered(&[(2, "v1"), (3, "v1")]).await;
    assert!(!state.stale);
    assert_eq!(state.stale_since, None);
    assert_eq!(addresses(&state), ["10.0.0.2:80", "10.0.0.3:80"]);

    let state = pool.discovered(&[]).await;
    assert!(state.endpoints.is_empty() && state.rotation.is_empty());
    assert!(!state.stale, "an empty answer is an answer");
    assert!(state.pick(&Default::default()).is_none());
}

#[tokio::test]
async fn a_replaced_watcher_is_not_heard() {
    let pool = Pool::start(spec(CONSUL_WEB)).await;
    pool.discovered(&[(1, "v1")]).await;
    let old = pool.epoch;
    let new = pool.handle.next_discovery_epoch();
    // The old watcher's late words are dropped; the new one's are applied.
    pool.actor
        .cast(UpstreamPoolMsg::Discovered {
            epoch: old,
            set: set(&[(9, "v1")]),
        })
        .unwrap();
    pool.actor
        .cast(UpstreamPoolMsg::DiscoveryStale {
            epoch: old,
            reason: "old".into(),
        })
        .unwrap();
    let state = pool
        .send(UpstreamPoolMsg::Discovered {
            epoch: new,
            set: set(&[(2, "v1")]),
        })
        .await;
    assert_eq!(addresses(&state), ["10.0.0.2:80"]);
    assert!(!state.stale);
    assert_eq!(
        state.version, 3,
        "nothing was published for the old watcher"
    );
}

#[tokio::test]
async fn reloads_refilter_the_subset_and_a_new_source_starts_stale() {
    let pool = Pool::start(spec(CONSUL_WEB)).await;
    let first = pool.discovered(&[(1, "v1"), (2, "v2")]).await;

    let v2 = spec(&format!(
        "{CONSUL_WEB}\n    subset: {{ metadata: {{ version: v2 }} }}"
    ));
    let state = pool.send(UpstreamPoolMsg::UpdateSpec(v2)).await;
    assert_eq!(
        addresses(&state),
        ["10.0.0.2:80"],
        "filtered without a new answer"
    );
    assert!(Arc::ptr_eq(&state.endpoints[0], &first.endpoints[1]));

    let other = spec("    discovery: { consul: { service: api } }");
    let state = pool.send(UpstreamPoolMsg::UpdateSpec(other)).await;
    assert!(state.stale);
    assert_eq!(state.stale_reason.as_deref(), Some(AWAITING_NEW_SOURCE));
    assert_eq!(
        addresses(&state),
        ["10.0.0.2:80"],
        "kept until the new source answers"
    );
    let state = pool.discovered(&[(5, "v1")]).await;
    assert!(!state.stale);
    assert_eq!(addresses(&state), ["10.0.0.5:80"]);

    // Back to static targets: discovery is forgotten.
    let fixed = spec("    targets: [{ address: \"10.0.0.7:80\" }]");
    let state = pool.send(UpstreamPoolMsg::UpdateSpec(fixed)).await;
    assert_eq!(addresses(&state), ["10.0.0.7:80"]);
    assert!(!state.stale);
    let before = state.version;
    pool.actor
        .cast(UpstreamPoolMsg::Discovered {
            epoch: pool.epoch,
            set: set(&[(1, "v1")]),
        })
        .unwrap();
    let state = pool.send(UpstreamPoolMsg::Resolve).await;
    assert_eq!(state.version, before + 1, "the discovered set was ignored");
    assert_eq!(addresses(&state), ["10.0.0.7:80"]);
}

#[tokio::test]
async fn prefer_zone_is_decided_at_publish_time() {
    let pool = Pool::start(spec(&format!("{CONSUL_WEB}\n    prefer_zone: true"))).await;
    let zoned = |last: u8, zone: &str| {
        Instance::new(IpAddr::from([10, 0, 0, last]), 80).with_metadata("zone", zone)
    };
    let state = pool
        .send(UpstreamPoolMsg::Discovered {
            epoch: pool.epoch,
            set: [zoned(1, "a"), zoned(2, "b")].into_iter().collect(),
        })
        .await;
    assert!(state.zone_local);
    let rotation: Vec<String> = state
        .rotation
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(rotation, ["10.0.0.1:80"]);
    let state = pool
        .send(UpstreamPoolMsg::ProbeVerdict {
            address: state.endpoints[0].address,
            healthy: false,
        })
        .await;
    assert!(!state.zone_local);
    let rotation: Vec<String> = state
        .rotation
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(rotation, ["10.0.0.2:80"]);
}
