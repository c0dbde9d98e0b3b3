//! Unit tests of `DiscoveryWatcher`: a panic in its loop fails the actor, so it reaches the
//! actor's supervisor, and a restarted watcher delivers the source's endpoints again.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meshgate_discovery::{Endpoint, StaticSource};
use ractor::SupervisionEvent;
use tokio::sync::mpsc;

use super::*;

/// A parent that restarts its one `DiscoveryWatcher` when it fails, as the `Supervisor` does,
/// and reports each failure.
struct RestartingParent;

struct ParentState {
    sink: DiscoverySink,
    failures: mpsc::UnboundedSender<String>,
}

fn endpoints() -> EndpointSet {
    EndpointSet::new([Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)])
}

async fn start_watcher(
    parent: &ActorRef<()>,
    sink: DiscoverySink,
) -> Result<(), ActorProcessingErr> {
    let args = DiscoveryWatcherArgs {
        upstream: "users".into(),
        source: WatchSource::Built(AnySource::from(StaticSource::new(endpoints()))),
        sink,
    };
    Actor::spawn_linked(None, DiscoveryWatcher, args, parent.get_cell()).await?;
    Ok(())
}

impl Actor for RestartingParent {
    type Msg = ();
    type State = ParentState;
    type Arguments = ParentState;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        state: ParentState,
    ) -> Result<ParentState, ActorProcessingErr> {
        start_watcher(&myself, state.sink.clone()).await?;
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut ParentState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, reason) = event {
            let _ = state.failures.send(reason.to_string());
            start_watcher(&myself, state.sink.clone()).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_in_the_discovery_loop_reaches_the_supervisor_and_updates_flow_again() {
    let (delivered, mut deliveries) = mpsc::unbounded_channel();
    let panicked = Arc::new(AtomicBool::new(false));
    let sink: DiscoverySink = Arc::new(move |event| {
        if !panicked.swap(true, Ordering::SeqCst) {
            panic!("injected sink failure");
        }
        let _ = delivered.send(event);
    });
    let (failures, mut failed) = mpsc::unbounded_channel();
    let (parent, _) = Actor::spawn(None, RestartingParent, ParentState { sink, failures })
        .await
        .expect("parent starts");

    let reason = tokio::time::timeout(Duration::from_secs(10), failed.recv())
        .await
        .expect("the supervisor hears of the panic")
        .expect("parent alive");
    assert!(
        reason.contains("the discovery loop panicked: injected sink failure"),
        "{reason}"
    );
    let event = tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
        .await
        .expect("the restarted watcher delivers")
        .expect("sink alive");
    match event {
        DiscoveryEvent::Updated(set) => assert_eq!(set, endpoints()),
        other => panic!("expected the endpoint set, got {other:?}"),
    }
    parent.stop(None);
}
