//! Service discovery and registration config: node-level connections to Consul, etcd and DNS
//! (`discovery:`), per-upstream sources (`upstreams[].discovery`, `subset`, `prefer_zone`),
//! and the local service's registration (`registration:`, the `Registrar`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

pub const DEFAULT_CONSUL_ADDRESS: &str = "http://127.0.0.1:8500";
/// Shorter than Consul's 5 min default so a silently dead agent is noticed sooner.
pub const DEFAULT_CONSUL_WAIT: HumanDuration = HumanDuration::from_secs(60);
pub const DEFAULT_ETCD_PREFIX: &str = "meshgate/services";
pub const DEFAULT_DNS_MIN_REFRESH: HumanDuration = HumanDuration::from_secs(5);
pub const DEFAULT_DNS_MAX_REFRESH: HumanDuration = HumanDuration::from_secs(300);
/// Consul's own example TTL for service checks.
pub const DEFAULT_REGISTRATION_TTL: HumanDuration = HumanDuration::from_secs(15);
pub const DEFAULT_DEREGISTER_CRITICAL_AFTER: HumanDuration = HumanDuration::from_secs(90 * 60);

/// How this node reaches discovery backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    #[serde(default)]
    pub consul: Option<ConsulConnectionConfig>,
    #[serde(default)]
    pub etcd: Option<EtcdConnectionConfig>,
    #[serde(default)]
    pub dns: Option<DnsConnectionConfig>,
    /// This node's zone: upstreams with `prefer_zone: true` favour endpoints whose `zone`
    /// metadata equals it.
    #[serde(default)]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulConnectionConfig {
    #[serde(default = "default_consul_address")]
    pub address: String,
    /// Sent as `X-Consul-Token`.
    #[serde(default)]
    pub token: Option<String>,
    /// Query another datacenter than the agent's.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// How long a blocking query may be held.
    #[serde(default = "default_consul_wait")]
    pub wait: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConnectionConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Keys live under `<prefix>/<service>/`.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConnectionConfig {
    /// `IP:port` of the server to ask; default: the system resolver configuration.
    #[serde(default)]
    pub nameserver: Option<String>,
    #[serde(default = "default_dns_min_refresh")]
    pub min_refresh: HumanDuration,
    #[serde(default = "default_dns_max_refresh")]
    pub max_refresh: HumanDuration,
}

/// Where an upstream's endpoints come from, instead of static `targets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum UpstreamDiscoveryConfig {
    Consul(ConsulSourceConfig),
    Etcd(EtcdSourceConfig),
    Dns(DnsSourceConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulSourceConfig {
    pub service: String,
    /// Only instances with all these tags (filtered by the agent).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only instances whose checks all pass (default true); false also keeps warning ones.
    #[serde(default = "default_true")]
    pub passing_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSourceConfig {
    pub service: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSourceConfig {
    /// Best fully qualified (trailing dot).
    pub name: String,
    /// `a` (A/AAAA; needs `port`) or `srv`.
    #[serde(default, rename = "type")]
    pub record: DnsRecordType,
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsRecordType {
    #[default]
    A,
    Srv,
}

/// Keep only the instances that carry these tags and metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetConfig {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Register the local service so that others find it (sidecar mode, usable by any node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    pub backend: RegistrationBackend,
    pub service: String,
    /// Unique instance id; default `<service>-<address>-<port>`.
    #[serde(default)]
    pub id: Option<String>,
    /// The address others should connect to (an IP).
    pub address: String,
    /// The port others should connect to — for a sidecar, its inbound listener's port.
    pub port: u16,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// The TTL check: a heartbeat goes every third of it.
    #[serde(default = "default_registration_ttl")]
    pub ttl: HumanDuration,
    /// Consul removes an instance whose check stayed critical this long (minimum 1 minute).
    #[serde(default = "default_deregister_critical_after")]
    pub deregister_critical_after: HumanDuration,
    /// The local application's health endpoint, probed before each heartbeat.
    #[serde(default)]
    pub health_check: Option<LocalHealthCheckConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationBackend {
    Consul,
    Etcd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalHealthCheckConfig {
    /// `http://127.0.0.1:9000/health`: a 2xx answer within the timeout is healthy.
    pub url: String,
    #[serde(default = "default_health_timeout")]
    pub timeout: HumanDuration,
}

fn default_true() -> bool {
    true
}
fn default_consul_address() -> String {
    DEFAULT_CONSUL_ADDRESS.to_string()
}
fn default_consul_wait() -> HumanDuration {
    DEFAULT_CONSUL_WAIT
}
fn default_etcd_prefix() -> String {
    DEFAULT_ETCD_PREFIX.to_string()
}
fn default_dns_min_refresh() -> HumanDuration {
    DEFAULT_DNS_MIN_REFRESH
}
fn default_dns_max_refresh() -> HumanDuration {
    DEFAULT_DNS_MAX_REFRESH
}
fn default_registration_ttl() -> HumanDuration {
    DEFAULT_REGISTRATION_TTL
}
fn default_deregister_critical_after() -> HumanDuration {
    DEFAULT_DEREGISTER_CRITICAL_AFTER
}
fn default_health_timeout() -> HumanDuration {
    HumanDuration::from_secs(2)
}
