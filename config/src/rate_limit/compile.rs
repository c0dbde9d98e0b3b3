//! The runtime form of the rate-limit config: every policy in use (named ones and the routes'
//! inline ones and overrides) with its windows sorted shortest first, the Redis settings, the
//! response header names, and per route the policies it applies with its prebuilt
//! `RateLimit-Policy` value. Built once per config generation; the node keeps the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::model::{
    AlgorithmConfig, FailureModeConfig, InlinePolicyConfig, KeyConfig, KeyPartConfig, LimitConfig,
    RateLimitHeadersConfig, RateLimitPolicyConfig, RedisStoreConfig, RouteRateLimitConfig,
    StoreConfig,
};
use crate::auth::ClientSecret;
use crate::error::FieldPath;
use crate::model::Config;
use crate::outbound_tls::OutboundTlsConfig;

pub type Algorithm = AlgorithmConfig;
pub type FailureMode = FailureModeConfig;

/// Everything rate limiting needs from one config generation, shared by every route.
#[derive(Debug)]
pub struct CompiledRateLimiting {
    /// Increases with every compile in this process: a newer config has a larger serial.
    pub serial: u64,
    pub redis: Option<RedisSpec>,
    pub headers: HeaderNames,
    /// Every policy in use: the named ones in order, then the routes' inline ones.
    pub policies: Vec<Arc<PolicySpec>>,
    /// Per route (indexed like `routes`): indices into `policies`, in the route's order.
    pub routes: Vec<Vec<usize>>,
}

impl CompiledRateLimiting {
    pub fn policy(&self, id: &str) -> Option<&Arc<PolicySpec>> {
        self.policies.iter().find(|p| &*p.id == id)
    }
}

/// The Redis server shared limits are counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpec {
    pub url: String,
    /// `rediss://` URLs: how the server is verified (`None`: the platform's trust store).
    pub tls: Option<OutboundTlsConfig>,
    pub username: Option<String>,
    /// `AUTH` password, as written or from a file (read when the store is built).
    pub password: Option<ClientSecret>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_interval: Duration,
    pub key_prefix: String,
}

/// Response header names; `None` = not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderNames {
    pub limit: Option<HeaderName>,
    pub remaining: Option<HeaderName>,
    pub reset: Option<HeaderName>,
    pub ratelimit: Option<HeaderName>,
    pub policy: Option<HeaderName>,
}

/// One policy, resolved (an override has its named policy's fields merged in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The policy's name; `<policy>@<route>` for an override, `<route>#<n>` for an inline
    /// policy. Counters are kept under it (in memory across reloads, and in Redis keys).
    pub id: Arc<str>,
    pub key: Vec<KeyPart>,
    pub algorithm: Algorithm,
    /// Shortest period first.
    pub windows: Vec<Window>,
    pub store: PolicyStore,
}

/// One part of a client's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The consumer's id; the client IP when there is none.
    Consumer,
    /// The credential's id (`X-Credential-Identifier`); the client IP when there is none.
    Credential,
    ClientIp,
    Route,
    Service,
    Path,
    /// The header's value; the client IP when absent.
    Header(HeaderName),
}

/// At most `requests` per `period`; a token bucket holds up to `burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub requests: u32,
    pub burst: u32,
    pub period: Duration,
    /// This window's name in the IETF fields (already a valid sf-string body).
    pub label: Arc<str>,
}

impl Window {
    /// The quota and window (seconds, rounded up) the IETF fields and `X-RateLimit-Limit`
    /// advertise. A token bucket's quota is its capacity, refilled in `burst × period/requests`.
    pub fn advertised(&self, algorithm: Algorithm) -> (u32, u64) {
        match algorithm {
            Algorithm::Gcra => {
                let nanos = self.period.as_nanos() * u128::from(self.burst)
                    / u128::from(self.requests.max(1));
                let secs = nanos.div_ceil(1_000_000_000);
                (self.burst, u64::try_from(secs).unwrap_or(u64::MAX).max(1))
            }
            _ => (self.requests, ceil_secs(self.period)),
        }
    }
}

/// Where a policy counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyStore {
    Local,
    Redis {
        failure_mode: FailureMode,
        /// Enforced by each node alone while Redis cannot answer (`failure_mode: open`).
        fallback: Vec<Window>,
    },
}

/// What a compiled route knows about rate limiting.
#[derive(Debug, Clone)]
pub struct RouteRateLimit {
    pub shared: Arc<CompiledRateLimiting>,
    /// Indices into `shared.policies`; empty = the route is not limited.
    pub policies: Vec<usize>,
    /// The route's `RateLimit-Policy` value: every window of its policies.
    pub policy_header: Option<HeaderValue>,
}

impl RouteRateLimit {
    pub fn is_limited(&self) -> bool {
        !self.policies.is_empty()
    }
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A policy as written, merged with its base, located for error messages.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedPolicy {
    pub id: String,
    pub config: RateLimitPolicyConfig,
    pub path: FieldPath,
    /// False when an inline entry names no limits and no base to take them from.
    pub has_limits: bool,
}

/// Every policy in use and, per route, which of them it applies. Unknown names are left out
/// (validation reports them).
pub(crate) fn resolve(config: &Config) -> (Vec<ResolvedPolicy>, Vec<Vec<usize>>) {
    let root = FieldPath::root();
    let named = &config.rate_limiting.policies;
    let mut policies: Vec<ResolvedPolicy> = named
        .iter()
        .enumerate()
        .map(|(i, p)| ResolvedPolicy {
            id: p.name.clone(),
            config: p.clone(),
            path: root.field("rate_limiting").field("policies").index(i),
            has_limits: true,
        })
        .collect();
    let mut routes = Vec::with_capacity(config.routes.len());
    for (ri, r) in config.routes.iter().enumerate() {
        let route_name = crate::validate::route_name(ri, r);
        let mut used = Vec::new();
        for (j, entry) in r.rate_limit.iter().enumerate() {
            let path = root.field("routes").index(ri).field("rate_limit").index(j);
            match entry {
                RouteRateLimitConfig::Named(name) => {
                    if let Some(i) = named.iter().position(|p| &p.name == name) {
                        used.push(i);
                    }
                }
                RouteRateLimitConfig::Inline(inline) => {
                    let base = inline
                        .policy
                        .as_ref()
                        .and_then(|n| named.iter().find(|p| &p.name == n));
                    if inline.policy.is_some() && base.is_none() {
                        continue;
                    }
                    let id = match base {
                        Some(b) => format!("{}@{route_name}", b.name),
                        None => format!("{route_name}#{j}"),
                    };
                    let has_limits = base.is_some() || inline.limits.is_some();
                    used.push(policies.len());
                    policies.push(ResolvedPolicy {
                        config: merge(&id, base, inline),
                        id,
                        path,
                        has_limits,
                    });
                }
            }
        }
        routes.push(used);
    }
    (policies, routes)
}

fn merge(
    id: &str,
    base: Option<&RateLimitPolicyConfig>,
    inline: &InlinePolicyConfig,
) -> RateLimitPolicyConfig {
    let base = base.cloned().unwrap_or(RateLimitPolicyConfig {
        name: String::new(),
        key: KeyConfig::default(),
        limits: Vec::new(),
        algorithm: AlgorithmConfig::default(),
        store: StoreConfig::default(),
        failure_mode: FailureModeConfig::default(),
        fallback_limits: None,
    });
    RateLimitPolicyConfig {
        name: id.to_string(),
        key: inline.key.clone().unwrap_or(base.key),
        limits: inline.limits.clone().unwrap_or(base.limits),
        algorithm: inline.algorithm.unwrap_or(base.algorithm),
        store: inline.store.unwrap_or(base.store),
        failure_mode: inline.failure_mode.unwrap_or(base.failure_mode),
        fallback_limits: inline.fallback_limits.clone().or(base.fallback_limits),
    }
}

/// Compile the rate-limit parts of a validated config.
pub fn compile_rate_limiting(config: &Config) -> Arc<CompiledRateLimiting> {
    let section = &config.rate_limiting;
    let (resolved, routes) = resolve(config);
    Arc::new(CompiledRateLimiting {
        serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        redis: section.redis.as_ref().map(redis_spec),
        headers: header_names(&section.headers),
        policies: resolved
            .iter()
            .map(|p| Arc::new(policy_spec(&p.id, &p.config)))
            .collect(),
        routes,
    })
}

/// The rate-limit view of route `index`.
pub fn compile_route_rate_limit(
    shared: &Arc<CompiledRateLimiting>,
    index: usize,
) -> RouteRateLimit {
    let policies = shared.routes.get(index).cloned().unwrap_or_default();
    let policy_header = if policies.is_empty() || shared.headers.policy.is_none() {
        None
    } else {
        let items: Vec<String> = policies
            .iter()
            .filter_map(|&i| shared.policies.get(i))
            .flat_map(|p| {
                p.windows.iter().map(|w| {
                    let (quota, secs) = w.advertised(p.algorithm);
                    // draft-ietf-httpapi-ratelimit-headers-09 §4: "id";q=quota;w=seconds
                    format!("\"{}\";q={quota};w={secs}", w.label)
                })
            })
            .collect();
        HeaderValue::from_str(&items.join(", ")).ok()
    };
    RouteRateLimit {
        shared: shared.clone(),
        policies,
        policy_header,
    }
}

fn redis_spec(r: &RedisStoreConfig) -> RedisSpec {
    RedisSpec {
        url: r.url.clone(),
        tls: r.tls.clone(),
        username: r.username.clone(),
        password: match (&r.password, &r.password_file) {
            (Some(p), _) => Some(ClientSecret::Value(p.clone())),
            (None, Some(f)) => Some(ClientSecret::File(f.clone())),
            (None, None) => None,
        },
        timeout: r.timeout.get(),
        connect_timeout: r.connect_timeout.get(),
        retry_interval: r.retry_interval.get(),
        key_prefix: r.key_prefix.clone(),
    }
}

fn header_names(h: &RateLimitHeadersConfig) -> HeaderNames {
    let name = |n: &Option<String>| {
        n.as_deref()
            .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
    };
    HeaderNames {
        limit: name(&h.limit),
        remaining: name(&h.remaining),
        reset: name(&h.reset),
        ratelimit: name(&h.ratelimit),
        policy: name(&h.policy),
    }
}

fn policy_spec(id: &str, p: &RateLimitPolicyConfig) -> PolicySpec {
    let store = match p.store {
        StoreConfig::Local => PolicyStore::Local,
        StoreConfig::Redis => PolicyStore::Redis {
            failure_mode: p.failure_mode,
            fallback: windows(id, p.fallback_limits.as_ref().unwrap_or(&p.limits)),
        },
    };
    PolicySpec {
        id: id.into(),
        key: p
            .key
            .parts()
            .iter()
            .filter_map(|part| {
                Some(match part {
                    KeyPartConfig::Consumer => KeyPart::Consumer,
                    KeyPartConfig::Credential => KeyPart::Credential,
                    KeyPartConfig::ClientIp => KeyPart::ClientIp,
                    KeyPartConfig::Route => KeyPart::Route,
                    KeyPartConfig::Service => KeyPart::Service,
                    KeyPartConfig::Path => KeyPart::Path,
                    KeyPartConfig::Header(h) => {
                        KeyPart::Header(HeaderName::from_bytes(h.as_bytes()).ok()?)
                    }
                })
            })
            .collect(),
        algorithm: p.algorithm,
        windows: windows(id, &p.limits),
        store,
    }
}

fn windows(id: &str, limits: &[LimitConfig]) -> Vec<Window> {
    let mut out: Vec<Window> = limits
        .iter()
        .filter(|l| l.requests > 0 && !l.per.get().is_zero())
        .map(|l| {
            let label = if limits.len() == 1 {
                sf_string_body(id)
            } else {
                sf_string_body(&format!("{id}/{}", l.per))
            };
            Window {
                requests: l.requests,
                burst: l.burst.unwrap_or(l.requests).max(1),
                period: l.per.get(),
                label: label.into(),
            }
        })
        .collect();
    out.sort_by_key(|w| w.period);
    out
}

/// A Structured Fields string body (RFC 8941 §3.3.3): printable ASCII with `"` and `\`
/// escaped; anything else becomes `_`.
fn sf_string_body(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
