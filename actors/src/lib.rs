//! meshgate's control plane: supervised ractor actors that own everything that changes over
//! time and publish immutable snapshots for the data plane through arc-swap. No request ever
//! waits on an actor message.

pub mod clock;
pub mod config_watcher;
pub mod discovery_watcher;
pub mod error;
pub mod health;
pub mod listener;
pub mod mesh;
pub mod outbound_tls;
pub mod registrar;
pub mod snapshot;
pub mod supervised_task;
pub mod supervisor;
pub mod tls;
pub mod upstream;

pub use config_watcher::{ConfigWatcher, ConfigWatcherMsg, ReloadTrigger};
pub use error::ControlError;
pub use health::{HealthChecker, HealthCheckerArgs, HealthCheckerMsg};
pub use listener::{AcceptedConnection, ConnectionHandler, ListenerRuntime};
pub use snapshot::{
    BoundListener, NodeView, ReloadEvent, Snapshot, SnapshotData, SnapshotExtension,
};
pub use supervised_task::{LinkedLoop, SupervisedTask};
pub use supervisor::{ChildKey, NodeServices, Supervisor, SupervisorArgs, SupervisorMsg};
pub use upstream::{Endpoint, PickContext, UpstreamHandle, UpstreamState};
