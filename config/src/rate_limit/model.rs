//! The rate-limiting parts of the config file, as serde structs: the top-level `rate_limiting:`
//! section (Redis connection, response headers, named policies) and a route's `rate_limit:`
//! list. Defaults are named constants; meaning is checked in `rate_limit::validate`.

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::outbound_tls::OutboundTlsConfig;

/// How long one Redis check may take before the policy's failure mode decides instead.
pub const DEFAULT_REDIS_TIMEOUT: HumanDuration = HumanDuration::from_millis(100);
/// How long connecting to Redis may take.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: HumanDuration = HumanDuration::from_secs(1);
/// After a failed Redis check, requests skip Redis (the failure mode decides) this long
/// before one tries again.
pub const DEFAULT_REDIS_RETRY_INTERVAL: HumanDuration = HumanDuration::from_secs(1);
/// Every Redis key meshgate writes starts with this.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "meshgate:rl:";
/// Response header names (`null` in the config turns one off).
pub const DEFAULT_LIMIT_HEADER: &str = "X-RateLimit-Limit";
pub const DEFAULT_REMAINING_HEADER: &str = "X-RateLimit-Remaining";
pub const DEFAULT_RESET_HEADER: &str = "X-RateLimit-Reset";
/// draft-ietf-httpapi-ratelimit-headers-09 §4 and §5.
pub const DEFAULT_RATELIMIT_HEADER: &str = "RateLimit";
pub const DEFAULT_POLICY_HEADER: &str = "RateLimit-Policy";
/// Sliding-window counters are packed 24 bits each into one atomic word (and mirrored in
/// Redis), so a sliding window admits at most this many requests.
pub const MAX_SLIDING_WINDOW_REQUESTS: u32 = (1 << 24) - 1;
/// The longest window a limit may have.
pub const MAX_WINDOW: HumanDuration = HumanDuration::from_secs(366 * 24 * 3600);

/// The top-level `rate_limiting:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingConfig {
    /// The Redis server that policies with `store: redis` share their counters in.
    pub redis: Option<RedisStoreConfig>,
    /// Names of the response headers that tell clients their limits.
    pub headers: RateLimitHeadersConfig,
    /// Named policies routes refer to.
    pub policies: Vec<RateLimitPolicyConfig>,
}

/// Where shared counters live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS.
    pub url: String,
    /// `rediss://` only: how the server is verified; default: the platform's trust store.
    #[serde(default)]
    pub tls: Option<OutboundTlsConfig>,
    /// ACL user (Redis 6+, `AUTH <username> <password>`); default: the URL's, else `default`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password (write `${ENV_VAR}`) …
    #[serde(default)]
    pub password: Option<String>,
    /// … or a file holding it (one trailing newline is ignored).
    #[serde(default)]
    pub password_file: Option<String>,
    /// One check (one round trip); beyond it the failure mode decides.
    #[serde(default = "default_redis_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_redis_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// After a failure, Redis is tried again after this long.
    #[serde(default = "default_redis_retry_interval")]
    pub retry_interval: HumanDuration,
    #[serde(default = "default_redis_key_prefix")]
    pub key_prefix: String,
}

/// Response header names; `null` leaves a header out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitHeadersConfig {
    pub limit: Option<String>,
    pub remaining: Option<String>,
    pub reset: Option<String>,
    /// The IETF `RateLimit` field: the closest window's remaining quota and reset.
    pub ratelimit: Option<String>,
    /// The IETF `RateLimit-Policy` field: every window of the route's policies.
    pub policy: Option<String>,
}

impl Default for RateLimitHeadersConfig {
    fn default() -> Self {
        Self {
            limit: Some(DEFAULT_LIMIT_HEADER.to_string()),
            remaining: Some(DEFAULT_REMAINING_HEADER.to_string()),
            reset: Some(DEFAULT_RESET_HEADER.to_string()),
            ratelimit: Some(DEFAULT_RATELIMIT_HEADER.to_string()),
            policy: Some(DEFAULT_POLICY_HEADER.to_string()),
        }
    }
}

/// A named policy: what identifies a client, how many requests per window, where counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicyConfig {
    pub name: String,
    #[serde(default)]
    pub key: KeyConfig,
    pub limits: Vec<LimitConfig>,
    #[serde(default)]
    pub algorithm: AlgorithmConfig,
    #[serde(default)]
    pub store: StoreConfig,
    /// `store: redis` only: what happens while Redis cannot answer.
    #[serde(default)]
    pub failure_mode: FailureModeConfig,
    /// `store: redis`, `failure_mode: open`: the limits each node enforces on its own while
    /// Redis cannot answer; default: the policy's `limits`.
    #[serde(default)]
    pub fallback_limits: Option<Vec<LimitConfig>>,
}

/// What one client is: one part, or several combined (`[consumer, route]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a key (consumer, credential, client_ip, route, service, path, {header: NAME}) or a list of them"
)]
pub enum KeyConfig {
    One(KeyPartConfig),
    Many(Vec<KeyPartConfig>),
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig::One(KeyPartConfig::Consumer)
    }
}

impl KeyConfig {
    pub fn parts(&self) -> &[KeyPartConfig] {
        match self {
            KeyConfig::One(part) => std::slice::from_ref(part),
            KeyConfig::Many(parts) => parts,
        }
    }
}

/// One part of a rate-limit key. `consumer`, `credential` and `header` fall back to the client
/// IP when the request has none (anonymous traffic is limited per IP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyPartConfig {
    Consumer,
    Credential,
    #[serde(alias = "ip")]
    ClientIp,
    Route,
    /// The route's upstream (`-` for direct responses).
    #[serde(alias = "upstream")]
    Service,
    /// The normalised request path.
    Path,
    Header(String),
}

/// `{requests, per}`: at most `requests` per `per`; `burst` (token bucket only) is the bucket's
/// capacity when it differs from `requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub requests: u32,
    pub per: HumanDuration,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// How requests are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmConfig {
    /// GCRA, the token bucket as a meter: up to `burst` at once, refilled at `requests/per`.
    #[default]
    #[serde(alias = "token_bucket")]
    Gcra,
    /// Sliding-window counter: this window's count plus the previous window's, weighted by how
    /// much of it still overlaps the last `per`.
    SlidingWindow,
    /// Counts reset at each window boundary.
    FixedWindow,
}

/// Where counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreConfig {
    /// In this node's memory: each node enforces the limit on its own.
    #[default]
    Local,
    /// In `rate_limiting.redis`, shared by every node that uses it.
    Redis,
}

/// What a Redis-backed policy does while Redis cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureModeConfig {
    /// Decide with a local limit (`fallback_limits`) on each node.
    #[default]
    Open,
    /// Refuse requests (503) until Redis answers again.
    Closed,
}

/// One entry of a route's `rate_limit:` list: a policy name, or a policy written inline —
/// with `policy:`, a named policy with some fields overridden (its own counters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a policy name, or an inline policy {policy?, key?, limits?, algorithm?, store?, failure_mode?, fallback_limits?}"
)]
pub enum RouteRateLimitConfig {
    Named(String),
    Inline(InlinePolicyConfig),
}

/// An inline policy or an override; fields left out come from `policy` (or the defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlinePolicyConfig {
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub key: Option<KeyConfig>,
    #[serde(default)]
    pub limits: Option<Vec<LimitConfig>>,
    #[serde(default)]
    pub algorithm: Option<AlgorithmConfig>,
    #[serde(default)]
    pub store: Option<StoreConfig>,
    #[serde(default)]
    pub failure_mode: Option<FailureModeConfig>,
    #[serde(default)]
    pub fallback_limits: Option<Vec<LimitConfig>>,
}

fn default_redis_timeout() -> HumanDuration {
    DEFAULT_REDIS_TIMEOUT
}

fn default_redis_connect_timeout() -> HumanDuration {
    DEFAULT_REDIS_CONNECT_TIMEOUT
}

fn default_redis_retry_interval() -> HumanDuration {
    DEFAULT_REDIS_RETRY_INTERVAL
}

fn default_redis_key_prefix() -> String {
    DEFAULT_REDIS_KEY_PREFIX.to_string()
}
