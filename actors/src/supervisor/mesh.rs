//! The supervisor's share of the mesh: obtain the node's first certificate before anything
//! serves mTLS, keep one `CertRotator` child per identity, and run the CA service listener.

use std::net::SocketAddr;
use std::sync::Arc;

use meshgate_config::CompiledConfig;
use meshgate_config::compile::MeshSpec;
use meshgate_pki::{CaFiles, TlsOptions, optional_client_auth_server_config};
use ractor::ActorRef;

use super::{ChildKey, SupervisorMsg, SupervisorState};
use crate::listener::{Listener, ListenerRuntime};
use crate::mesh::cert_rotator::CertRotatorArgs;
use crate::mesh::{CaAuthority, CertRotator, CertRotatorMsg, MeshIdentity, MeshRuntime};
use crate::tls::ListenerTls;

/// The name of the CA service listener in logs and `/status`.
pub const CA_LISTENER: &str = "mesh-ca";

/// The mesh state the supervisor keeps across reloads.
pub(super) struct MeshState {
    /// Identity and certificate source: a change needs a new certificate.
    key: (String, String),
    identity: Arc<MeshIdentity>,
    ca_listener: Option<(SocketAddr, Arc<ListenerRuntime>)>,
}

/// What reconciling the mesh gives the new snapshot.
pub(super) struct MeshOutcome {
    pub runtime: Option<Arc<MeshRuntime>>,
    /// TLS of the `mesh: inbound` listeners.
    pub inbound_tls: Vec<(Arc<str>, Arc<ListenerTls>)>,
}

impl SupervisorState {
    pub(super) async fn reconcile_mesh(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        config: &CompiledConfig,
    ) -> Result<MeshOutcome, String> {
        let Some(spec) = &config.mesh else {
            if let Some(old) = self.mesh.take() {
                self.stop_child(&ChildKey::CertRotator);
                self.stop_child(&ChildKey::CaListener);
                if let Some((_, runtime)) = old.ca_listener {
                    tokio::spawn(
                        async move { runtime.drain(std::time::Duration::from_secs(5)).await },
                    );
                }
            }
            return Ok(MeshOutcome {
                runtime: None,
                inbound_tls: Vec::new(),
            });
        };
        let identity = self.ensure_identity(myself, spec).await?;
        let mut inbound_tls = Vec::new();
        for listener in config.listeners.iter().filter(|l| l.mesh_inbound) {
            let server_config = identity
                .inbound_server_config()
                .map_err(|e| format!("{}.mesh: {e}", listener.field_path))?;
            inbound_tls.push((
                listener.name.clone(),
                Arc::new(ListenerTls {
                    server_config: Arc::new(server_config),
                    handshake_timeout: std::time::Duration::from_secs(10),
                    hsts: None,
                    // The mesh identity's expiry is exported once, under `mesh:`.
                    certificates: Vec::new(),
                }),
            ));
        }
        let ca = self.reconcile_ca_service(myself, spec, &identity).await?;
        Ok(MeshOutcome {
            runtime: Some(Arc::new(MeshRuntime {
                identity,
                spec: spec.clone(),
                ca,
            })),
            inbound_tls,
        })
    }

    async fn ensure_identity(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: &MeshSpec,
    ) -> Result<Arc<MeshIdentity>, String> {
        let key = (
            spec.spiffe_id.clone(),
            format!("{:?}", spec.config.identity),
        );
        let rotator_spec = Arc::new(spec.clone());
        if let Some(state) = &self.mesh
            && state.key == key
        {
            if let Some(cell) = self.cells.get(&ChildKey::CertRotator) {
                let rotator: ActorRef<CertRotatorMsg> = cell.clone().into();
                let _ = rotator.cast(CertRotatorMsg::UpdateSpec(rotator_spec));
            }
            return Ok(state.identity.clone());
        }
        let (leaf, bundle) = crate::mesh::obtain(spec, None)
            .await
            .map_err(|e| e.to_string())?;
        // The leaf names the identity: for local CAs and the CA service it is the spec's id,
        // Consul Connect adds the datacenter (`…/ns/<ns>/dc/<dc>/svc/<service>`).
        let identity = MeshIdentity::new(leaf.spiffe_id().clone(), leaf, bundle);
        tracing::info!(identity = %identity.spiffe_id, "mesh identity obtained");
        self.stop_child(&ChildKey::CertRotator);
        let args = CertRotatorArgs {
            identity: identity.clone(),
            spec: rotator_spec,
        };
        self.spawn_child::<CertRotator, _>(myself, ChildKey::CertRotator, || args)
            .await
            .map_err(|e| format!("mesh: cannot start the certificate rotator: {e}"))?;
        let ca_listener = self.mesh.take().and_then(|m| m.ca_listener);
        self.mesh = Some(MeshState {
            key,
            identity: identity.clone(),
            ca_listener,
        });
        Ok(identity)
    }

    async fn reconcile_ca_service(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: &MeshSpec,
        identity: &Arc<MeshIdentity>,
    ) -> Result<Option<Arc<CaAuthority>>, String> {
        let Some(server) = &spec.config.ca_server else {
            self.stop_child(&ChildKey::CaListener);
            if let Some(state) = &mut self.mesh
                && let Some((_, runtime)) = state.ca_listener.take()
            {
                tokio::spawn(async move { runtime.drain(std::time::Duration::from_secs(5)).await });
            }
            return Ok(None);
        };
        let ca = CaFiles::new(&server.ca_dir)
            .load()
            .map_err(|e| format!("mesh.ca_server.ca_dir: {e}"))?;
        let tls = optional_client_auth_server_config(
            identity.cert.clone(),
            &identity.bundle,
            &TlsOptions {
                alpn: vec![meshgate_pki::ALPN_HTTP_1_1.to_vec()],
                allow_tls12: false,
            },
        )
        .map_err(|e| format!("mesh.ca_server: {e}"))?;
        let address: SocketAddr = server.address.parse().map_err(|_| {
            format!(
                "mesh.ca_server.address: {:?} is not IP:port",
                server.address
            )
        })?;
        let current = self.mesh.as_ref().and_then(|m| m.ca_listener.as_ref());
        if current.is_none_or(|(a, rt)| *a != address && rt.local_addr != address) {
            let runtime =
                ListenerRuntime::bind(CA_LISTENER.into(), address, self.services.ca.clone())
                    .map_err(|e| format!("mesh.ca_server.address: cannot bind {address}: {e}"))?;
            self.stop_child(&ChildKey::CaListener);
            let rt = runtime.clone();
            self.spawn_child::<Listener, _>(myself, ChildKey::CaListener, || rt)
                .await
                .map_err(|e| format!("mesh.ca_server: {e}"))?;
            if let Some(state) = &mut self.mesh
                && let Some((_, old)) = state.ca_listener.replace((address, runtime))
            {
                tokio::spawn(async move { old.drain(std::time::Duration::from_secs(5)).await });
            }
        }
        Ok(Some(Arc::new(CaAuthority {
            ca,
            tokens: server.bootstrap_tokens.clone(),
            lifetime: spec.config.lifetime.get(),
            tls: Arc::new(tls),
        })))
    }

    /// The CA listener's runtime, for restarts.
    pub(super) fn ca_listener_runtime(&self) -> Option<Arc<ListenerRuntime>> {
        self.mesh
            .as_ref()
            .and_then(|m| m.ca_listener.as_ref())
            .map(|(_, rt)| rt.clone())
    }

    /// The rotator's arguments, for restarts.
    pub(super) fn cert_rotator_args(&self) -> Option<CertRotatorArgs> {
        let spec = self.config.mesh.clone()?;
        Some(CertRotatorArgs {
            identity: self.mesh.as_ref()?.identity.clone(),
            spec: Arc::new(spec),
        })
    }

    /// Where the CA service listens (port 0 resolved).
    pub(super) fn ca_bound(&self) -> Option<SocketAddr> {
        self.mesh
            .as_ref()
            .and_then(|m| m.ca_listener.as_ref())
            .map(|(_, rt)| rt.local_addr)
    }
}
