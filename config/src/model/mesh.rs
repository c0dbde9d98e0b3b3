//! The `mesh:` section: this node's identity in the service mesh (SPIFFE id, where its
//! certificate comes from and how it rotates), who may call it (authorization), and the
//! optional CA service it runs for other sidecars.

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::model::discovery::DEFAULT_CONSUL_ADDRESS;

/// Linkerd and Consul issue day-long workload certificates.
pub const DEFAULT_LEAF_LIFETIME: HumanDuration = HumanDuration::from_secs(24 * 3600);
/// Renew at 70% of the lifetime (Linkerd, Consul).
pub const DEFAULT_RENEW_FRACTION: f64 = 0.7;
/// Each renewal comes up to this share of the lifetime earlier, at random, so that a fleet
/// issued together does not renew together.
pub const RENEWAL_JITTER: f64 = 0.1;
/// A schedule must leave at least this long between issue and renewal, and between the
/// latest renewal point and expiry (time to retry a failed renewal).
pub const MIN_RENEWAL_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// The SPIFFE trust domain, e.g. `mesh.example.com` (with Consul Connect:
    /// `<cluster id>.consul`).
    pub trust_domain: String,
    /// This node's service; its identity is `spiffe://<trust_domain>/ns/<namespace>/svc/<service>`
    /// (Consul Connect: `…/ns/<namespace>/dc/<datacenter>/svc/<service>`).
    pub service: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Where this node's certificate comes from.
    pub identity: IdentitySourceConfig,
    #[serde(default = "default_lifetime")]
    pub lifetime: HumanDuration,
    /// Renew after this share of the lifetime (with up to 10% jitter earlier).
    #[serde(default = "default_renew_fraction")]
    pub renew_fraction: f64,
    /// Extra DNS SANs for this node's certificate.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Who may call the services behind this node's `mesh: inbound` listeners.
    #[serde(default)]
    pub authorization: AuthorizationConfig,
    /// Run the CA service on this node (other sidecars send it CSRs).
    #[serde(default)]
    pub ca_server: Option<CaServerConfig>,
}

/// Exactly one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum IdentitySourceConfig {
    /// Sign our own leaf with a CA directory made by `meshgate pki init` (single machine, tests).
    LocalCa { dir: String },
    /// Send a CSR to a CA service; the private key never leaves this node.
    CaService {
        /// `https://host:port` of the CA service.
        url: String,
        /// PEM bundle that the CA service's certificate chains to (the mesh root).
        trust_bundle: String,
        /// Authenticates the first request; renewals present the current certificate instead.
        bootstrap_token: String,
    },
    /// Ask the local Consul agent's Connect CA (`/v1/agent/connect/ca/leaf/:service`). Consul
    /// generates the key and returns it with the certificate; the trust bundle is its CA roots.
    Consul(ConsulConnectConfig),
}

/// How to reach the Consul agent whose Connect CA certifies this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulConnectConfig {
    /// The agent's HTTP address, as in `discovery.consul.address`.
    #[serde(default = "default_consul_address")]
    pub address: String,
    /// ACL token with `service:write` on the service; sent as `X-Consul-Token`. Empty: none.
    #[serde(default)]
    pub token: Option<String>,
    /// The Consul service to certify; default `mesh.service`.
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// What happens when no rule matches: `deny` (default) or `allow`.
    #[serde(default)]
    pub default: AuthorizationAction,
    /// Consul-intentions style; the most specific matching rule wins (an exact id beats a
    /// namespace wildcard beats `*`), deny beats allow at equal specificity.
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRule {
    /// A SPIFFE id, `spiffe://td/ns/<ns>/svc/*` (any service of a namespace) or `*`.
    pub source: String,
    pub action: AuthorizationAction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationAction {
    Allow,
    #[default]
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaServerConfig {
    /// `IP:port` of the CA service's HTTPS listener.
    pub address: String,
    /// The CA directory (`meshgate pki init`).
    pub ca_dir: String,
    /// Tokens that let a sidecar obtain its first certificate, each bound to one service.
    #[serde(default)]
    pub bootstrap_tokens: Vec<BootstrapToken>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapToken {
    pub token: String,
    pub service: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn default_consul_address() -> String {
    DEFAULT_CONSUL_ADDRESS.to_string()
}

fn default_lifetime() -> HumanDuration {
    DEFAULT_LEAF_LIFETIME
}

fn default_renew_fraction() -> f64 {
    DEFAULT_RENEW_FRACTION
}
