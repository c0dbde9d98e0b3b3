//! The Consul Connect source of the mesh identity: the local agent issues this service's leaf
//! (`/v1/agent/connect/ca/leaf/:service`, certificate AND private key — Consul generates the
//! key) and the trust bundle is every CA root it lists (`/v1/agent/connect/ca/roots`). Speaks
//! only the documented agent API; it must never special-case the test double.

use meshgate_config::compile::MeshSpec;
use meshgate_config::model::mesh::ConsulConnectConfig;
use meshgate_discovery::consul::{CaRoots, LeafCert};
use meshgate_discovery::{ConsulClient, ConsulConfig, DiscoveryError};
use meshgate_pki::{CertifiedLeaf, SpiffeId, TrustBundle};

use super::IdentityError;

fn consul_error(message: impl Into<String>) -> IdentityError {
    IdentityError::Consul(message.into())
}

/// The leaf and the trust bundle from the agent at `config.address`.
///
/// The leaf is fetched before the roots, so that a root rotated in between is already in the
/// bundle. The leaf must name `mesh.trust_domain`, `mesh.namespace` and the service.
pub async fn request_certificate(
    spec: &MeshSpec,
    config: &ConsulConnectConfig,
) -> Result<(CertifiedLeaf, TrustBundle), IdentityError> {
    let service = config
        .service
        .as_deref()
        .unwrap_or(spec.config.service.as_str());
    let mut connection = ConsulConfig::new(config.address.clone());
    if let Some(token) = config.token.as_deref().filter(|t| !t.is_empty()) {
        connection = connection.with_token(token);
    }
    let client = ConsulClient::new(&connection).map_err(|e| consul_error(e.to_string()))?;
    let leaf = client
        .connect_ca_leaf(service)
        .await
        .map_err(|e| leaf_error(&e, service))?;
    let roots = client
        .connect_ca_roots()
        .await
        .map_err(|e| consul_error(format!("CA roots: {e}")))?;
    let certified = certified_leaf(&leaf, &roots)?;
    check_identity(spec, service, certified.spiffe_id())?;
    Ok((certified, trust_bundle(&roots)?))
}

/// A 403 is almost always the token: say which one and what it needs.
fn leaf_error(error: &DiscoveryError, service: &str) -> IdentityError {
    match error {
        DiscoveryError::Rejected { status: 403, .. } => consul_error(format!(
            "leaf certificate: {error} (mesh.identity.consul.token needs service:write on {service:?})"
        )),
        _ => consul_error(format!("leaf certificate: {error}")),
    }
}

/// `CertPEM` is the leaf followed by its intermediates; agents that leave them out get the
/// active root's `IntermediateCerts` appended (a peer that only trusts the previous root
/// verifies a post-rotation leaf through the cross-signed one).
fn certified_leaf(leaf: &LeafCert, roots: &CaRoots) -> Result<CertifiedLeaf, IdentityError> {
    let mut chain = leaf.cert_pem.trim_end().to_string();
    if let Some(active) = roots.active() {
        for intermediate in &active.intermediate_certs {
            let intermediate = intermediate.trim();
            if !intermediate.is_empty() && !chain.contains(intermediate) {
                chain.push('\n');
                chain.push_str(intermediate);
            }
        }
    }
    chain.push('\n');
    CertifiedLeaf::from_pem(&chain, &leaf.private_key_pem)
        .map_err(|e| consul_error(format!("leaf certificate {}: {e}", leaf.serial_number)))
}

/// Every listed root, active or not: during a rotation both must verify peers.
fn trust_bundle(roots: &CaRoots) -> Result<TrustBundle, IdentityError> {
    let mut pem = String::new();
    for root in &roots.roots {
        pem.push_str(root.root_cert.trim());
        pem.push('\n');
    }
    if roots.roots.is_empty() {
        return Err(consul_error(
            "the agent lists no CA root (is Connect enabled?)",
        ));
    }
    TrustBundle::from_pem(&pem).map_err(|e| consul_error(format!("CA roots: {e}")))
}

/// Consul names the leaf `spiffe://<cluster>.consul/ns/<ns>/dc/<dc>/svc/<service>`: its trust
/// domain and namespace must be the ones the config's authorization rules and outbound
/// expectations are written in.
fn check_identity(spec: &MeshSpec, service: &str, id: &SpiffeId) -> Result<(), IdentityError> {
    let config = &spec.config;
    if id.trust_domain() != config.trust_domain {
        return Err(consul_error(format!(
            "the agent issued {id}, whose trust domain is {:?}; set mesh.trust_domain to it",
            id.trust_domain()
        )));
    }
    match (id.namespace(), id.service_name()) {
        (Some(ns), _) if ns != config.namespace => Err(consul_error(format!(
            "the agent issued {id}, in namespace {ns:?}; set mesh.namespace to it"
        ))),
        (Some(_), Some(name)) if name == service => Ok(()),
        _ => Err(consul_error(format!(
            "the agent issued {id}, which is not a service id for {service:?}"
        ))),
    }
}
