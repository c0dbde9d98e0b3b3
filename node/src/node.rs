//! A running meshgate node: starts the supervision tree with the proxy and admin services and
//! gives the binary (and tests) a handle to reload, inspect and drain it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_actors::{
    ChildKey, NodeServices, NodeView, Snapshot, Supervisor, SupervisorArgs, SupervisorMsg,
};
use meshgate_config::{CompiledConfig, Config, compile};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorRef};

use crate::admin::AdminService;
use crate::filters::FilterRuntime;
use crate::filters::auth::AuthStats;
use crate::server::ProxyService;
use crate::telemetry::Telemetry;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Startup(String),
}

/// Why a reload or an apply did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Rejected(String),
    #[error("the supervisor did not answer: {0}")]
    Unavailable(String),
}

pub struct Node;

impl Node {
    /// Bind every listener, resolve upstreams and start serving `config`. With `config_path`,
    /// a `ConfigWatcher` follows the file (changes and SIGHUP).
    pub async fn start(
        config: CompiledConfig,
        config_path: Option<PathBuf>,
    ) -> Result<NodeHandle, StartError> {
        let view = NodeView::new(empty_snapshot()?);
        let telemetry = Telemetry::new();
        let filters = FilterRuntime::new(telemetry.metrics.rate_limit_store.clone())
            .map_err(|e| StartError::Startup(e.to_string()))?;
        telemetry.export_security(filters.security.clone());
        let services = NodeServices {
            proxy: ProxyService::new(view.clone(), filters.clone()),
            admin: AdminService::new(view.clone(), telemetry.clone()),
            ca: crate::mesh::ca_service::CaService::new(view.clone()),
            extension: Some(telemetry.clone()),
        };
        let args = SupervisorArgs {
            config: Arc::new(config),
            view: view.clone(),
            services,
            config_path,
        };
        let (supervisor, join) = Actor::spawn(None, Supervisor, args)
            .await
            .map_err(|e| StartError::Startup(startup_reason(&e)))?;
        filters.follow(&view);
        Ok(NodeHandle {
            view,
            telemetry,
            filters,
            supervisor,
            join,
        })
    }
}

fn startup_reason(e: &ractor::SpawnErr) -> String {
    match e {
        ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

fn empty_snapshot() -> Result<Snapshot, StartError> {
    let config = compile(&Config::default())
        .map_err(|e| StartError::Startup(format!("empty config did not compile: {e}")))?;
    Ok(Snapshot {
        generation: 0,
        config: Arc::new(config),
        upstreams: Vec::new(),
        bound: Vec::new(),
        tls: Vec::new(),
        mesh: None,
        ca_address: None,
        loaded_at: SystemTime::now(),
        extension: None,
    })
}

/// Control of a running node.
pub struct NodeHandle {
    view: Arc<NodeView>,
    telemetry: Arc<Telemetry>,
    filters: Arc<FilterRuntime>,
    supervisor: ActorRef<SupervisorMsg>,
    join: ractor::concurrency::JoinHandle<()>,
}

impl NodeHandle {
    pub fn view(&self) -> &Arc<NodeView> {
        &self.view
    }

    /// Metrics, access logs and analytics of this node.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Authentication counters (Argon2 verifications, JWKS fetches, introspection calls).
    pub fn auth_stats(&self) -> AuthStats {
        self.filters.auth_stats()
    }

    /// Client keys held in memory by rate-limit policy `id` (its fallback's, for Redis).
    pub fn rate_limit_keys(&self, id: &str) -> Option<usize> {
        self.filters.rate_limit.local_keys(id)
    }

    /// What the edge security checks refused or detected so far.
    pub fn security_stats(&self) -> crate::filters::security::SecurityCounts {
        self.filters.security.snapshot()
    }

    /// Where a proxy listener is bound (port 0 resolved).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.view.load().bound_address(name)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        **self.view.admin_address.load()
    }

    pub fn generation(&self) -> u64 {
        self.view.generation()
    }

    /// Make `config` the serving config (as a reload would). Returns the new generation.
    pub async fn apply(&self, config: CompiledConfig) -> Result<u64, ApplyError> {
        let result = self
            .supervisor
            .call(
                |port| SupervisorMsg::Apply(Arc::new(config), port),
                Some(Duration::from_secs(30)),
            )
            .await;
        let outcome = match result {
            Ok(CallResult::Success(Ok(generation))) => Ok(generation),
            Ok(CallResult::Success(Err(reason))) => Err(ApplyError::Rejected(reason.to_string())),
            Ok(other) => Err(ApplyError::Unavailable(format!("{other:?}"))),
            Err(e) => Err(ApplyError::Unavailable(e.to_string())),
        };
        match &outcome {
            Ok(generation) => self.view.record_reload(*generation, Ok(())),
            Err(e) => self
                .view
                .record_reload(self.view.generation(), Err(e.to_string())),
        }
        outcome
    }

    /// Where the mesh CA service listens, on a node that runs it.
    pub fn ca_addr(&self) -> Option<SocketAddr> {
        self.view.load().ca_address
    }

    /// Renew the mesh certificate now (as the `CertRotator` does on its schedule).
    pub async fn rotate_mesh_certificate(&self) -> Result<(), ApplyError> {
        let rotator = self
            .children()
            .await
            .into_iter()
            .find(|(key, _)| *key == ChildKey::CertRotator)
            .map(|(_, cell)| ActorRef::<meshgate_actors::mesh::CertRotatorMsg>::from(cell))
            .ok_or_else(|| ApplyError::Rejected("this node has no mesh identity".into()))?;
        match rotator
            .call(
                meshgate_actors::mesh::CertRotatorMsg::RotateNow,
                Some(Duration::from_secs(30)),
            )
            .await
        {
            Ok(CallResult::Success(Ok(()))) => Ok(()),
            Ok(CallResult::Success(Err(reason))) => Err(ApplyError::Rejected(reason.to_string())),
            Ok(other) => Err(ApplyError::Unavailable(format!("{other:?}"))),
            Err(e) => Err(ApplyError::Unavailable(e.to_string())),
        }
    }

    /// The live children of the supervisor (for inspection and fault-injection tests).
    pub async fn children(&self) -> Vec<(ChildKey, ActorCell)> {
        match self
            .supervisor
            .call(SupervisorMsg::Children, Some(Duration::from_secs(5)))
            .await
        {
            Ok(CallResult::Success(children)) => children,
            _ => Vec::new(),
        }
    }

    /// Stop accepting, let in-flight requests finish up to `deadline`, then stop. Returns how
    /// many connections had to be cut off at the deadline.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        let cut = match self
            .supervisor
            .call(
                |port| SupervisorMsg::Shutdown(deadline, port),
                Some(deadline + Duration::from_secs(5)),
            )
            .await
        {
            Ok(CallResult::Success(cut)) => cut,
            _ => 0,
        };
        let _ = self.join.await;
        // The last requests' access-log lines are written before the node reports stopped.
        self.telemetry.flush().await;
        cut
    }
}
