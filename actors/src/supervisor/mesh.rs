//! The supervisor's share of the mesh: obtain the node's first certificate before anything
//! serves mTLS, keep one `CertRotator` child per identity, and run the CA service listener.

use std::net::SocketAddr;
use std::sync::Arc;

use meshgate_config::CompiledConfig;
use meshgate_config::compile::MeshSpec;
use meshgate_pki::{CaFiles, TlsOptions, optional_client_auth_server_config};
use ractor::ActorRef;

use super::{ChildKey, SupervisorMsg, SupervisorState};
use crate::error::ControlError;
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

/// The mesh part of a prepared config: what `commit_mesh` puts in place.
pub(super) enum MeshPlan {
    /// The config has no `mesh:`: stop the rotator and the CA service.
    Off,
    On(Box<MeshReady>),
}

pub(super) struct MeshReady {
    spec: MeshSpec,
    key: (String, String),
    identity: Arc<MeshIdentity>,
    /// Obtained for this config (a new identity or certificate source): a new rotator.
    obtained: bool,
    /// TLS of the `mesh: inbound` listeners.
    inbound_tls: Vec<(Arc<str>, Arc<ListenerTls>)>,
    ca: Option<CaReady>,
}

/// The CA service a config asks for; `bound` is set when it needs a new socket.
pub(super) struct CaReady {
    authority: Arc<CaAuthority>,
    address: SocketAddr,
    bound: Option<Arc<ListenerRuntime>>,
}

impl MeshPlan {
    pub(super) fn identity(&self) -> Option<&MeshIdentity> {
        match self {
            MeshPlan::Off => None,
            MeshPlan::On(ready) => Some(&ready.identity),
        }
    }

    pub(super) fn inbound_tls(&self) -> Vec<(Arc<str>, Arc<ListenerTls>)> {
        match self {
            MeshPlan::Off => Vec::new(),
            MeshPlan::On(ready) => ready.inbound_tls.clone(),
        }
    }
}

impl SupervisorState {
    /// Obtain the identity (when it is new), build the inbound TLS and bind the CA service:
    /// nothing of the running tree changes.
    pub(super) async fn prepare_mesh(
        &self,
        config: &CompiledConfig,
    ) -> Result<MeshPlan, ControlError> {
        let Some(spec) = &config.mesh else {
            return Ok(MeshPlan::Off);
        };
        let key = (
            spec.spiffe_id.clone(),
            format!("{:?}", spec.config.identity),
        );
        let (identity, obtained) = match &self.mesh {
            Some(state) if state.key == key => (state.identity.clone(), false),
            _ => {
                let (leaf, bundle) = crate::mesh::obtain(spec, None).await?;
                // The leaf names the identity: for local CAs and the CA service it is the
                // spec's id, Consul Connect adds the datacenter (`…/dc/<dc>/svc/<service>`).
                (
                    MeshIdentity::new(leaf.spiffe_id().clone(), leaf, bundle),
                    true,
                )
            }
        };
        let mut inbound_tls = Vec::new();
        for listener in config.listeners.iter().filter(|l| l.mesh_inbound) {
            let server_config = identity
                .inbound_server_config()
                .map_err(|e| ControlError::setting(format!("{}.mesh", listener.field_path), e))?;
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
        let ca = self.prepare_ca_service(spec, &identity)?;
        Ok(MeshPlan::On(Box::new(MeshReady {
            spec: spec.clone(),
            key,
            identity,
            obtained,
            inbound_tls,
            ca,
        })))
    }

    fn prepare_ca_service(
        &self,
        spec: &MeshSpec,
        identity: &Arc<MeshIdentity>,
    ) -> Result<Option<CaReady>, ControlError> {
        let Some(server) = &spec.config.ca_server else {
            return Ok(None);
        };
        let ca = CaFiles::new(&server.ca_dir)
            .load()
            .map_err(|e| ControlError::setting("mesh.ca_server.ca_dir", e))?;
        let tls = optional_client_auth_server_config(
            identity.cert.clone(),
            &identity.bundle,
            &TlsOptions {
                alpn: vec![meshgate_pki::ALPN_HTTP_1_1.to_vec()],
                allow_tls12: false,
            },
        )
        .map_err(|e| ControlError::setting("mesh.ca_server", e))?;
        let address: SocketAddr = server.address.parse().map_err(|_| {
            ControlError::setting(
                "mesh.ca_server.address",
                format!("{:?} is not IP:port", server.address),
            )
        })?;
        let current = self.mesh.as_ref().and_then(|m| m.ca_listener.as_ref());
        let bound = if current.is_none_or(|(a, rt)| *a != address && rt.local_addr != address) {
            let runtime =
                ListenerRuntime::bind(CA_LISTENER.into(), address, self.services.ca.clone())
                    .map_err(|source| ControlError::Bind {
                        field: "mesh.ca_server.address".into(),
                        address,
                        source,
                    })?;
            Some(runtime)
        } else {
            None
        };
        Ok(Some(CaReady {
            authority: Arc::new(CaAuthority {
                ca,
                tokens: server.bootstrap_tokens.clone(),
                lifetime: spec.config.lifetime.get(),
                tls: Arc::new(tls),
            }),
            address,
            bound,
        }))
    }

    /// Put the prepared mesh in place: a rotator for a newly obtained identity (the running one
    /// hears of a changed spec), the CA service on its socket. Returns the snapshot's mesh.
    pub(super) async fn commit_mesh(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        plan: MeshPlan,
    ) -> Option<Arc<MeshRuntime>> {
        let MeshPlan::On(ready) = plan else {
            if let Some(old) = self.mesh.take() {
                self.stop_child(&ChildKey::CertRotator);
                self.stop_child(&ChildKey::CaListener);
                drain_ca_listener(old.ca_listener.map(|(_, rt)| rt));
            }
            return None;
        };
        let MeshReady {
            spec,
            key,
            identity,
            obtained,
            inbound_tls: _,
            ca,
        } = *ready;
        let rotator_spec = Arc::new(spec.clone());
        if obtained {
            tracing::info!(identity = %identity.spiffe_id, "mesh identity obtained");
            self.stop_child(&ChildKey::CertRotator);
            let ca_listener = self.mesh.take().and_then(|m| m.ca_listener);
            self.mesh = Some(MeshState {
                key,
                identity: identity.clone(),
                ca_listener,
            });
            let args = CertRotatorArgs {
                identity: identity.clone(),
                spec: rotator_spec,
            };
            if let Err(e) = self
                .spawn_child::<CertRotator, _>(myself, ChildKey::CertRotator, || args)
                .await
            {
                self.restart_later(myself, ChildKey::CertRotator, &e);
            }
        } else if let Some(cell) = self.cells.get(&ChildKey::CertRotator) {
            let rotator: ActorRef<CertRotatorMsg> = cell.clone().into();
            let _ = rotator.cast(CertRotatorMsg::UpdateSpec(rotator_spec));
        }
        let authority = self.commit_ca_service(myself, ca).await;
        Some(Arc::new(MeshRuntime {
            identity,
            spec,
            ca: authority,
        }))
    }

    async fn commit_ca_service(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        ca: Option<CaReady>,
    ) -> Option<Arc<CaAuthority>> {
        let Some(ca) = ca else {
            self.stop_child(&ChildKey::CaListener);
            let old = self.mesh.as_mut().and_then(|m| m.ca_listener.take());
            drain_ca_listener(old.map(|(_, rt)| rt));
            return None;
        };
        if let Some(runtime) = ca.bound {
            self.stop_child(&ChildKey::CaListener);
            let old = self
                .mesh
                .as_mut()
                .and_then(|m| m.ca_listener.replace((ca.address, runtime.clone())));
            drain_ca_listener(old.map(|(_, rt)| rt));
            if let Err(e) = self
                .spawn_child::<Listener, _>(myself, ChildKey::CaListener, || runtime)
                .await
            {
                self.restart_later(myself, ChildKey::CaListener, &e);
            }
        }
        Some(ca.authority)
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

/// Let a replaced CA service socket's connections finish in the background.
fn drain_ca_listener(runtime: Option<Arc<ListenerRuntime>>) {
    if let Some(runtime) = runtime {
        tokio::spawn(async move { runtime.drain(std::time::Duration::from_secs(5)).await });
    }
}
