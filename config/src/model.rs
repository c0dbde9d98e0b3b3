//! The config file's shape, as serde structs: what users write. Defaults are named constants;
//! every struct rejects unknown fields. Meaning (references, ranges, regexes) is checked in
//! `validate`, not here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::model::{AuthConfig, ConsumerConfig, RouteAuthConfig};
use crate::duration::HumanDuration;
use crate::rate_limit::model::{RateLimitingConfig, RouteRateLimitConfig};
use crate::resilience::{
    CircuitBreakerConfig, FallbackConfig, HealthCheckConfig, LimitsConfig, OutlierDetectionConfig,
    RetryConfig,
};

pub mod discovery;
pub mod mesh;
pub mod tls;

use crate::telemetry::TelemetryConfig;
pub use discovery::{DiscoveryConfig, RegistrationConfig, SubsetConfig, UpstreamDiscoveryConfig};
pub use mesh::MeshConfig;
pub use tls::ListenerTlsConfig;

pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:8001";
pub const DEFAULT_DRAIN_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);
pub const DEFAULT_HEADER_READ_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: HumanDuration = HumanDuration::from_secs(5);
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);
/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: HumanDuration = HumanDuration::from_secs(15);
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 256;
pub const DEFAULT_TARGET_WEIGHT: u32 = 1;
pub const MAX_TARGET_WEIGHT: u32 = 10_000;

/// A whole meshgate config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// This node's identity in the service mesh (sidecar mode, mTLS).
    #[serde(default)]
    pub mesh: Option<MeshConfig>,
    /// Connections to Consul, etcd and DNS for upstreams that discover their endpoints.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// Register the local service in Consul or etcd (the `Registrar`).
    #[serde(default)]
    pub registration: Option<RegistrationConfig>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// JWT issuers, introspection endpoints, API-key and Argon2 settings.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Known callers and their credentials.
    #[serde(default)]
    pub consumers: Vec<ConsumerConfig>,
    /// Rate-limit policies, their Redis store and response headers (docs/rate-limiting.md).
    #[serde(default)]
    pub rate_limiting: RateLimitingConfig,
    /// Edge protection defaults: client IP, limits, IP rules, WAF, bots, slow clients
    /// (docs/security.md).
    #[serde(default)]
    pub security: crate::security::SecurityConfig,
}

/// Whether this node is the edge gateway or a sidecar beside one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Gateway,
    Sidecar,
}

/// Process-wide server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Tokio worker threads; absent = one per core.
    pub worker_threads: Option<usize>,
    /// How long in-flight requests may run after SIGTERM before the process exits anyway.
    pub drain_timeout: HumanDuration,
    /// A client that has not sent complete request headers by then is disconnected. On
    /// HTTP/1.1 the clock also runs while a keep-alive connection waits for its next request.
    pub header_read_timeout: HumanDuration,
    /// Watch the config file and reload on change (SIGHUP always reloads).
    pub watch_config: bool,
    /// Let a reload retire every listener the node serves on (none of their names is left).
    /// Off by default: a config that drops them all is far more often a file caught
    /// half-written than a wish.
    pub allow_removing_all_listeners: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            worker_threads: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            watch_config: true,
            allow_removing_all_listeners: false,
        }
    }
}

/// The admin listener (status, health; later metrics and the admin API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    pub address: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: DEFAULT_ADMIN_ADDRESS.to_string(),
        }
    }
}

/// One socket that accepts client traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    /// `IP:port`; port 0 picks a free port (tests).
    pub address: String,
    /// Accept HTTP/2 with prior knowledge (h2c) beside HTTP/1.1.
    #[serde(default = "default_true")]
    pub http2: bool,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// `inbound`: the mesh side of a sidecar — mutual TLS with the mesh identity, callers
    /// authorized by their SPIFFE id (see `mesh.authorization`).
    #[serde(default)]
    pub mesh: Option<MeshListenerRole>,
    /// Read a PROXY protocol v1/v2 header first on every connection (a load balancer in front).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Overrides of `security:` for this listener (same shape, merged field by field).
    #[serde(default)]
    pub security: Option<serde_json::Value>,
}

/// What a listener does in the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshListenerRole {
    Inbound,
}

/// A rule: when a request matches, what to do with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Shown in logs, metrics and the echo response; defaults to `route-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Higher wins over any specificity; default 0.
    #[serde(default)]
    pub priority: i32,
    /// Only on these listeners (by name); empty = every listener.
    #[serde(default)]
    pub listeners: Vec<String>,
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    #[serde(default)]
    pub respond: Option<RespondConfig>,
    /// Who may call this route (see docs/authentication.md).
    #[serde(default)]
    pub auth: Option<RouteAuthConfig>,
    /// Rate-limit policies applied after auth: names, inline policies, overrides.
    #[serde(default)]
    pub rate_limit: Vec<RouteRateLimitConfig>,
    /// Overrides of `security:` for this route (route-level fields only).
    #[serde(default)]
    pub security: Option<serde_json::Value>,
}

/// What a request must look like for a route to apply. Every non-empty list must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `/exact`, `/users/{id}` (template), `/files/{*rest}` (catch-all), `/api/*` (prefix, whole
    /// segments). Empty = any path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// `api.example.com` or `*.example.com` (any depth of subdomain). Empty = any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `GET`, `POST`, … Empty = any method.
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<ValueMatchConfig>,
    #[serde(default)]
    pub query: Vec<ValueMatchConfig>,
}

/// A header or query-parameter condition: set exactly one of `exact`, `regex`, `present`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatchConfig {
    pub name: String,
    #[serde(default)]
    pub exact: Option<String>,
    /// Must match the whole value (anchored).
    #[serde(default)]
    pub regex: Option<String>,
    /// `true`: must be present; `false`: must be absent.
    #[serde(default)]
    pub present: Option<bool>,
}

/// Forward matching requests to an upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub upstream: String,
    /// Remove this leading path (whole segments) before forwarding: `/api` turns `/api/x` into `/x`.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Put this in front of the (possibly stripped) path.
    #[serde(default)]
    pub add_prefix: Option<String>,
    /// Replace the whole path; `{name}` inserts a captured template parameter.
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Keep the client's Host header (default) or use the upstream target's `host:port`.
    #[serde(default = "default_true")]
    pub preserve_host: bool,
    /// Send this Host header instead (wins over `preserve_host`).
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// The whole request, from routing to the last byte of the response headers.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// When a failed try is sent again (docs/resilience.md); absent = the defaults.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
}

/// Answer directly without any upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Return the request itself as JSON (Kong's request-termination echo).
    #[serde(default)]
    pub echo: bool,
}

/// A named group of targets that routes proxy to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Discover endpoints instead of listing `targets`.
    #[serde(default)]
    pub discovery: Option<UpstreamDiscoveryConfig>,
    /// Keep only discovered instances with these tags and metadata (e.g. `version: v2`).
    #[serde(default)]
    pub subset: Option<SubsetConfig>,
    /// Prefer endpoints in this node's zone (`discovery.zone`); others are used only when no
    /// local one is available.
    #[serde(default)]
    pub prefer_zone: bool,
    /// Re-encrypt: TLS to the upstream, verified against a CA bundle.
    #[serde(default)]
    pub tls: Option<tls::UpstreamTlsConfig>,
    /// A mesh service: mutual TLS with this node's mesh identity, the callee's SPIFFE id checked.
    #[serde(default)]
    pub mesh: Option<tls::UpstreamMeshConfig>,
    #[serde(default)]
    pub load_balancing: LoadBalancingConfig,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// An idle pooled upstream connection older than this is not reused.
    #[serde(default = "default_upstream_idle_timeout")]
    pub idle_timeout: HumanDuration,
    #[serde(default = "default_max_idle_per_endpoint")]
    pub max_idle_per_endpoint: usize,
    // Resilience (docs/resilience.md).
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub outlier_detection: OutlierDetectionConfig,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
    #[serde(default = "crate::resilience::default_panic_threshold")]
    pub panic_threshold: u32,
}

/// One backend address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `IP:port` or `hostname:port` (resolved when the upstream is loaded).
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// How a request picks one endpoint of an upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancingConfig {
    /// Weighted round robin (smooth, nginx-style).
    #[default]
    RoundRobin,
    /// Power of two random choices, fewer in-flight requests wins.
    LeastRequests,
    /// Power of two choices over peak-EWMA latency × (in-flight + 1) (Finagle/Linkerd).
    PeakEwma,
    /// A ring of virtual nodes; the same key goes to the same endpoint.
    ConsistentHash(HashOnConfig),
}

/// Which part of a request is the consistent-hash key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HashOnConfig {
    Header(String),
    Cookie(String),
    ClientIp,
    Path,
}

/// The protocol meshgate speaks to an upstream's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c); needed for gRPC.
    Http2,
}

fn default_true() -> bool {
    true
}

fn default_status() -> u16 {
    200
}

fn default_weight() -> u32 {
    DEFAULT_TARGET_WEIGHT
}

fn default_connect_timeout() -> HumanDuration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_upstream_idle_timeout() -> HumanDuration {
    DEFAULT_UPSTREAM_IDLE_TIMEOUT
}

fn default_max_idle_per_endpoint() -> usize {
    DEFAULT_MAX_IDLE_PER_ENDPOINT
}
