//! The node's mesh identity: obtaining its SPIFFE certificate (from a local CA directory, by
//! CSR from a CA service, or from Consul Connect's CA), the TLS configs built on it, and the
//! [`CertRotator`] actor that renews it before it expires. New handshakes pick up a renewed
//! certificate through [`SwappableCert`]; open connections keep theirs.

pub mod ca_client;
pub mod cert_rotator;
pub mod consul_ca;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use meshgate_config::compile::MeshSpec;
use meshgate_config::model::mesh::IdentitySourceConfig;
use meshgate_pki::{
    CaFiles, CertificateAuthority, CertifiedLeaf, LeafRequest, SpiffeId, SwappableCert, TlsOptions,
    TrustBundle, Validity,
};

pub use cert_rotator::{CertRotator, CertRotatorMsg};

/// How long obtaining a certificate may take before it counts as failed.
pub const OBTAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("mesh.identity: {0}")]
    Pki(#[from] meshgate_pki::PkiError),
    #[error("mesh.identity: cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mesh.identity.ca_service: {0}")]
    CaService(String),
    #[error("mesh.identity.consul: {0}")]
    Consul(String),
    #[error("mesh.identity: no certificate within {0:?}")]
    Timeout(Duration),
}

/// This node's identity in the mesh: the current leaf (swappable), the trust bundle, and
/// how renewals have gone.
#[derive(Debug)]
pub struct MeshIdentity {
    pub spiffe_id: SpiffeId,
    pub cert: Arc<SwappableCert>,
    pub bundle: TrustBundle,
    renewals: AtomicU64,
    /// When the current certificate arrived (Unix milliseconds): renewal is measured from
    /// there, not from its back-dated `notBefore`.
    received_at_ms: AtomicU64,
    last_error: ArcSwapOption<String>,
}

impl MeshIdentity {
    pub fn new(spiffe_id: SpiffeId, leaf: CertifiedLeaf, bundle: TrustBundle) -> Arc<Self> {
        Arc::new(Self {
            spiffe_id,
            cert: Arc::new(SwappableCert::new(leaf)),
            bundle,
            renewals: AtomicU64::new(0),
            received_at_ms: AtomicU64::new(unix_millis(SystemTime::now())),
            last_error: ArcSwapOption::empty(),
        })
    }

    /// When the current certificate arrived.
    pub fn received_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.received_at_ms.load(Ordering::Relaxed))
    }

    pub fn not_after(&self) -> SystemTime {
        self.cert.not_after()
    }

    /// Seconds until the current certificate expires (negative once expired).
    pub fn seconds_to_expiry(&self) -> i64 {
        match self.not_after().duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.duration().as_secs() as i64),
        }
    }

    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.load_full().map(|e| (*e).clone())
    }

    fn renewed(&self, leaf: CertifiedLeaf) {
        self.received_at_ms
            .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
        self.cert.store(leaf);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        self.last_error.store(None);
    }

    /// The source answered (with the current certificate): no renewal, and no error either.
    fn source_answered(&self) {
        self.last_error.store(None);
    }

    fn failed(&self, error: String) {
        self.last_error.store(Some(Arc::new(error)));
    }

    /// The server config of `mesh: inbound` listeners: mTLS, client certificates required and
    /// verified against the bundle. Callers are authorized per request by SPIFFE id.
    pub fn inbound_server_config(&self) -> Result<rustls::ServerConfig, meshgate_pki::PkiError> {
        meshgate_pki::server_config(self.cert.clone(), &self.bundle, &TlsOptions::default())
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// This node's SPIFFE id from the spec.
pub fn spiffe_id(spec: &MeshSpec) -> Result<SpiffeId, IdentityError> {
    Ok(SpiffeId::parse(&spec.spiffe_id)?)
}

/// Obtain a fresh leaf (and the trust bundle) from the configured source. With `current`,
/// a CA service is asked with the current certificate as credential instead of the token.
/// Consul's agent answers its cached leaf until it renews it itself, so a renewal from Consul
/// may return the current certificate again.
pub async fn obtain(
    spec: &MeshSpec,
    current: Option<&Arc<SwappableCert>>,
) -> Result<(CertifiedLeaf, TrustBundle), IdentityError> {
    let id = spiffe_id(spec)?;
    let validity = Validity::with_lifetime(spec.config.lifetime.get());
    match &spec.config.identity {
        IdentitySourceConfig::LocalCa { dir } => {
            let ca: CertificateAuthority = CaFiles::new(dir).load()?;
            let request = LeafRequest {
                dns_sans: spec.config.dns_names.clone(),
                validity,
                ..LeafRequest::new(id)
            };
            Ok((ca.issue(&request)?, ca.trust_bundle()))
        }
        IdentitySourceConfig::CaService {
            url,
            trust_bundle,
            bootstrap_token,
        } => {
            let pem =
                std::fs::read_to_string(trust_bundle).map_err(|source| IdentityError::Read {
                    path: trust_bundle.clone(),
                    source,
                })?;
            let bundle = TrustBundle::from_pem(&pem)?;
            let token = current.is_none().then_some(bootstrap_token.as_str());
            let request = ca_client::SignRequest {
                url,
                bundle: &bundle,
                trust_domain: &spec.config.trust_domain,
                identity: &id,
                current,
                token,
            };
            let fetch = ca_client::request_certificate(request);
            let leaf = tokio::time::timeout(OBTAIN_TIMEOUT, fetch)
                .await
                .map_err(|_| IdentityError::Timeout(OBTAIN_TIMEOUT))??;
            Ok((leaf, bundle))
        }
        IdentitySourceConfig::Consul(consul) => {
            let fetch = consul_ca::request_certificate(spec, consul);
            tokio::time::timeout(OBTAIN_TIMEOUT, fetch)
                .await
                .map_err(|_| IdentityError::Timeout(OBTAIN_TIMEOUT))?
        }
    }
}

/// What the data plane needs of the mesh in one snapshot.
#[derive(Debug)]
pub struct MeshRuntime {
    pub identity: Arc<MeshIdentity>,
    pub spec: MeshSpec,
    /// Present on the node that runs the CA service.
    pub ca: Option<Arc<CaAuthority>>,
}

/// The CA service's state: the CA itself, who may bootstrap, and its HTTPS config.
pub struct CaAuthority {
    pub ca: CertificateAuthority,
    pub tokens: Vec<meshgate_config::model::mesh::BootstrapToken>,
    pub lifetime: Duration,
    pub tls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for CaAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaAuthority")
            .field("trust_domain", &self.ca.trust_domain())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}
