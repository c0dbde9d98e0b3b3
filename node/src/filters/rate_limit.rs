//! Rate limits on routes with `rate_limit:`: each policy keys the request (consumer, credential,
//! client IP, route, service, header, path — anonymous traffic falls back to the client IP),
//! counts it locally ([`local`]: governor's GCRA, sliding and fixed windows, lock-free maps) or
//! in Redis ([`redis`]: one `EVALSHA` round trip, all windows atomically, shared by every
//! node), and either lets it through with `X-RateLimit-*` and IETF `RateLimit` /
//! `RateLimit-Policy` headers or answers 429 with `Retry-After`.
//!
//! The request path takes no lock: the generation's limiters are found through an `ArcSwap`
//! and an index, counters are atomics in lock-free maps, and a Redis call is bounded by the
//! configured timeout — while Redis fails, the policy's failure mode decides without waiting.
//! [`RateLimitRuntime`] keeps counters across reloads: a policy with the same name and
//! settings keeps its limiter.

pub mod headers;
pub mod key;
pub mod local;
pub mod redis;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{HeaderValue, Request, Response, StatusCode};
use meshgate_config::rate_limit::{
    Algorithm, CompiledRateLimiting, FailureMode, PolicySpec, PolicyStore, RedisSpec, Window,
};

use self::local::LocalLimiter;
use self::redis::RedisStore;
use crate::error::{error_response, retry_after_value};
use crate::proxy::body::ProxyBody;
use crate::server::context::RequestContext;
use crate::telemetry::metrics::rate_limit_store::RateLimitStoreMetrics;

/// Where one window of one policy stands for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowReport {
    /// The window's advertised quota (a token bucket's capacity).
    pub limit: u32,
    pub remaining: u32,
    /// Until the window is full again (token bucket) or starts over (windows).
    pub reset: Duration,
    /// The window's name in the IETF fields.
    pub label: Arc<str>,
}

/// One policy's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Allowed: the window closest to refusing; refused: the window that refused.
    pub report: Option<WindowReport>,
    /// Refused: how long until a request would pass.
    pub retry_after: Duration,
}

impl Decision {
    pub fn allowed(report: Option<WindowReport>) -> Self {
        Self {
            allowed: true,
            report,
            retry_after: Duration::ZERO,
        }
    }

    pub fn denied(report: WindowReport, retry_after: Duration) -> Self {
        Self {
            allowed: false,
            report: Some(report),
            retry_after,
        }
    }
}

/// What checking a policy came to.
#[derive(Debug)]
enum Outcome {
    Decided(Decision),
    /// Redis cannot answer and the policy fails closed.
    StoreUnavailable(Duration),
}

/// Rate-limit state that outlives config generations.
pub struct RateLimitRuntime {
    current: ArcSwapOption<RateLimitGeneration>,
    metrics: Arc<RateLimitStoreMetrics>,
}

impl std::fmt::Debug for RateLimitRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitRuntime").finish_non_exhaustive()
    }
}

/// The limiters one config generation uses, indexed like `CompiledRateLimiting::policies`
/// (most carried over from the previous generation).
pub struct RateLimitGeneration {
    serial: u64,
    policies: Vec<Arc<PolicyLimiter>>,
    redis: Option<Arc<RedisStore>>,
}

/// One policy's counters: in memory, or in Redis with a local fallback.
pub struct PolicyLimiter {
    spec: Arc<PolicySpec>,
    counter: PolicyCounter,
}

enum PolicyCounter {
    Local(Arc<LocalLimiter>),
    Redis {
        store: Arc<RedisStore>,
        /// `<prefix><policy>:<algorithm>:`; the client key follows.
        key_prefix: String,
        failure_mode: FailureMode,
        fallback: Arc<LocalLimiter>,
    },
}

impl RateLimitRuntime {
    pub fn new(metrics: Arc<RateLimitStoreMetrics>) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            metrics,
        }
    }

    /// The limiters for `config`'s generation; built (reusing every unchanged policy) the first
    /// time a generation is seen. A request still on an older generation gets a throwaway one.
    pub fn prepare(&self, config: &Arc<CompiledRateLimiting>) -> Arc<RateLimitGeneration> {
        let current = self.current.load_full();
        if let Some(cur) = &current
            && cur.serial == config.serial
        {
            return cur.clone();
        }
        let built = Arc::new(self.build(config, current.as_deref()));
        if current
            .as_ref()
            .is_none_or(|cur| config.serial > cur.serial)
        {
            let previous = self.current.compare_and_swap(&current, Some(built.clone()));
            let won = match (&*previous, &current) {
                (Some(p), Some(c)) => Arc::ptr_eq(p, c),
                (None, None) => true,
                _ => false,
            };
            if !won
                && let Some(installed) = self.current.load_full()
                && installed.serial == config.serial
            {
                return installed;
            }
        }
        built
    }

    fn build(
        &self,
        config: &CompiledRateLimiting,
        previous: Option<&RateLimitGeneration>,
    ) -> RateLimitGeneration {
        let redis = self.redis_store(config.redis.as_ref(), previous);
        self.metrics.set_configured(redis.is_some());
        let policies = config
            .policies
            .iter()
            .map(|spec| {
                let old = previous.and_then(|p| p.policies.iter().find(|l| l.spec.id == spec.id));
                match old {
                    Some(old) if old.spec == *spec && old.uses(redis.as_ref()) => old.clone(),
                    _ => Arc::new(PolicyLimiter::new(spec, redis.as_ref(), old.map(|o| &**o))),
                }
            })
            .collect();
        RateLimitGeneration {
            serial: config.serial,
            policies,
            redis,
        }
    }

    fn redis_store(
        &self,
        spec: Option<&RedisSpec>,
        previous: Option<&RateLimitGeneration>,
    ) -> Option<Arc<RedisStore>> {
        let spec = spec?;
        match previous.and_then(|p| p.redis.as_ref()) {
            Some(store) if store.spec() == spec => Some(store.clone()),
            _ => Some(Arc::new(RedisStore::new(
                spec.clone(),
                self.metrics.clone(),
            ))),
        }
    }

    /// Keys held in memory by policy `id` (its local counters, or its fallback's).
    pub fn local_keys(&self, id: &str) -> Option<usize> {
        let generation = self.current.load_full()?;
        let policy = generation.policies.iter().find(|p| &*p.spec.id == id)?;
        Some(match &policy.counter {
            PolicyCounter::Local(l) => l.len(),
            PolicyCounter::Redis { fallback, .. } => fallback.len(),
        })
    }
}

impl PolicyLimiter {
    fn new(
        spec: &Arc<PolicySpec>,
        redis: Option<&Arc<RedisStore>>,
        previous: Option<&PolicyLimiter>,
    ) -> Self {
        let local = |windows: &[Window]| {
            let limiter = Arc::new(LocalLimiter::new(spec.algorithm, windows));
            limiter.sweep_in_background();
            limiter
        };
        let counter = match (&spec.store, redis) {
            (
                PolicyStore::Redis {
                    failure_mode,
                    fallback,
                },
                Some(store),
            ) => {
                // The fallback's counters survive a change of Redis server or failure mode.
                let kept = previous.and_then(|p| p.fallback_for(spec.algorithm, fallback));
                PolicyCounter::Redis {
                    store: store.clone(),
                    key_prefix: format!(
                        "{}{}:{}:",
                        store.spec().key_prefix,
                        spec.id,
                        redis::algorithm_name(spec.algorithm)
                    ),
                    failure_mode: *failure_mode,
                    fallback: kept.unwrap_or_else(|| local(fallback)),
                }
            }
            // Validation requires `rate_limiting.redis` for `store: redis`.
            _ => PolicyCounter::Local(local(&spec.windows)),
        };
        Self {
            spec: spec.clone(),
            counter,
        }
    }

    /// This limiter's fallback counters, when it has the same algorithm and fallback windows.
    fn fallback_for(&self, algorithm: Algorithm, windows: &[Window]) -> Option<Arc<LocalLimiter>> {
        match (&self.counter, &self.spec.store) {
            (PolicyCounter::Redis { fallback, .. }, PolicyStore::Redis { fallback: old, .. })
                if self.spec.algorithm == algorithm && old.as_slice() == windows =>
            {
                Some(fallback.clone())
            }
            _ => None,
        }
    }

    /// Whether this limiter counts in `redis` (or locally, when it has no store).
    fn uses(&self, redis: Option<&Arc<RedisStore>>) -> bool {
        match (&self.counter, redis) {
            (PolicyCounter::Redis { store, .. }, Some(r)) => Arc::ptr_eq(store, r),
            (PolicyCounter::Local(_), _) => !matches!(self.spec.store, PolicyStore::Redis { .. }),
            _ => false,
        }
    }

    async fn check(&self, client: &str) -> Outcome {
        match &self.counter {
            PolicyCounter::Local(limiter) => Outcome::Decided(limiter.check(client)),
            PolicyCounter::Redis {
                store,
                key_prefix,
                failure_mode,
                fallback,
            } => {
                let key = format!("{key_prefix}{client}");
                match store
                    .check(&key, self.spec.algorithm, &self.spec.windows)
                    .await
                {
                    Ok(decision) => Outcome::Decided(decision),
                    Err(redis::Unavailable(retry)) => match failure_mode {
                        FailureMode::Open => {
                            store.metrics().fallback_open();
                            Outcome::Decided(fallback.check(client))
                        }
                        FailureMode::Closed => {
                            store.metrics().fallback_closed();
                            Outcome::StoreUnavailable(retry)
                        }
                    },
                }
            }
        }
    }
}

/// Apply the routed request's policies in order. `Err` is the 429 (or, failing closed, 503)
/// that ends the request; otherwise the limit headers are added to the response.
pub async fn limit<B>(
    runtime: &RateLimitRuntime,
    ctx: &mut RequestContext,
    req: &Request<B>,
) -> Result<(), Response<ProxyBody>> {
    let Some(route) = ctx.route.clone() else {
        return Ok(());
    };
    let limits = &route.rate_limit;
    if !limits.is_limited() {
        return Ok(());
    }
    let generation = runtime.prepare(&limits.shared);
    let names = &limits.shared.headers;
    let mut closest: Option<WindowReport> = None;
    for &index in &limits.policies {
        let Some(policy) = generation.policies.get(index) else {
            continue;
        };
        let client = key::client_key(&policy.spec.key, ctx, req);
        match policy.check(&client).await {
            Outcome::Decided(d) if d.allowed => {
                if let Some(report) = d.report {
                    closest = Some(local::closer(closest, report));
                }
            }
            Outcome::Decided(d) => {
                headers::add(
                    &mut ctx.response_headers,
                    names,
                    d.report.as_ref(),
                    limits.policy_header.as_ref(),
                );
                count_rejection(ctx, req);
                tracing::debug!(route = %route.name, policy = %policy.spec.id, "rate limited");
                return Err(refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate limit exceeded",
                    d.retry_after,
                    &ctx.request_id,
                ));
            }
            Outcome::StoreUnavailable(retry) => {
                headers::add(
                    &mut ctx.response_headers,
                    names,
                    None,
                    limits.policy_header.as_ref(),
                );
                count_rejection(ctx, req);
                return Err(refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate limit store unavailable",
                    retry,
                    &ctx.request_id,
                ));
            }
        }
    }
    headers::add(
        &mut ctx.response_headers,
        names,
        closest.as_ref(),
        limits.policy_header.as_ref(),
    );
    Ok(())
}

fn count_rejection<B>(ctx: &RequestContext, req: &Request<B>) {
    if let Some(metrics) = ctx.observe.route_metrics() {
        metrics.rate_limited(req.method());
    }
}

/// The standard error body with `Retry-After` (RFC 6585 §4, RFC 9110 §10.2.3).
fn refusal(
    status: StatusCode,
    message: &str,
    wait: Duration,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let mut response = error_response(status, message, request_id);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, retry_after_value(wait));
    response
}
