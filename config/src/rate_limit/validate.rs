//! Validation of the rate-limit config: policy names and references, limits and their ranges
//! per algorithm, key parts, the Redis URL and the header names. Every problem is reported
//! with its field path.

use std::collections::HashMap;

use http::HeaderName;

use super::compile::resolve;
use super::model::{
    AlgorithmConfig, FailureModeConfig, KeyPartConfig, LimitConfig, MAX_SLIDING_WINDOW_REQUESTS,
    MAX_WINDOW, RateLimitHeadersConfig, RateLimitPolicyConfig, RedisStoreConfig,
    RouteRateLimitConfig, StoreConfig,
};
use crate::error::{ConfigError, FieldPath};
use crate::model::Config;

/// Every problem in `rate_limiting:` and the routes' `rate_limit:` lists.
pub fn validate_rate_limits(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let section = &config.rate_limiting;
    let path = FieldPath::root().field("rate_limiting");
    if let Some(redis) = &section.redis {
        check_redis(redis, &path.field("redis"), &mut errors);
    }
    check_headers(&section.headers, &path.field("headers"), &mut errors);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in section.policies.iter().enumerate() {
        let name_path = path.field("policies").index(i).field("name");
        if let Err(message) = check_name(&p.name) {
            errors.push(name_path.error(message));
        } else if let Some(first) = seen.insert(p.name.as_str(), i) {
            errors.push(name_path.error(format!(
                "duplicate policy name {:?} (first used at rate_limiting.policies[{first}])",
                p.name
            )));
        }
    }
    for (ri, r) in config.routes.iter().enumerate() {
        for (j, entry) in r.rate_limit.iter().enumerate() {
            let p = FieldPath::root()
                .field("routes")
                .index(ri)
                .field("rate_limit")
                .index(j);
            let name = match entry {
                RouteRateLimitConfig::Named(name) => Some((name, p)),
                RouteRateLimitConfig::Inline(inline) => {
                    inline.policy.as_ref().map(|n| (n, p.field("policy")))
                }
            };
            if let Some((name, p)) = name
                && !seen.contains_key(name.as_str())
            {
                errors.push(p.error(format!("unknown rate-limit policy {name:?}")));
            }
        }
    }
    let (resolved, _) = resolve(config);
    for p in &resolved {
        if !p.has_limits {
            errors.push(p.path.field("limits").error(
                "an inline policy needs limits (or policy: NAME to start from a named one)",
            ));
            continue;
        }
        check_policy(&p.config, section.redis.is_some(), &p.path, &mut errors);
    }
    errors
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{name:?} may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn check_redis(r: &RedisStoreConfig, path: &FieldPath, errors: &mut Vec<ConfigError>) {
    if let Err(message) = check_redis_url(&r.url) {
        errors.push(path.field("url").error(message));
    }
    if let Some(tls) = &r.tls {
        if !r.url.starts_with("rediss://") {
            errors.push(
                path.field("tls").error(
                    "tls applies to rediss:// URLs only (write rediss:// to connect over TLS)",
                ),
            );
        }
        if tls.server_name.is_some() {
            // redis-rs checks the certificate against the URL's host and takes no override.
            errors.push(path.field("tls").field("server_name").error(
                "not supported for Redis: write the name the certificate lists as the URL's host",
            ));
        }
        errors.extend(crate::outbound_tls::validate_outbound_tls(
            tls,
            &path.field("tls"),
        ));
    }
    match (&r.password, &r.password_file) {
        (Some(_), Some(_)) => errors.push(
            path.error("set at most one of password (may be \"${ENV_VAR}\") or password_file"),
        ),
        (None, Some(f)) if f.is_empty() => {
            errors.push(path.field("password_file").error("must name a file"));
        }
        _ => {}
    }
    if r.username.as_deref() == Some("") {
        errors.push(path.field("username").error("must not be empty"));
    }
    for (field, d) in [
        ("timeout", r.timeout),
        ("connect_timeout", r.connect_timeout),
        ("retry_interval", r.retry_interval),
    ] {
        if d.get().is_zero() {
            errors.push(path.field(field).error("must be greater than zero"));
        }
    }
    if r.key_prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        errors.push(
            path.field("key_prefix")
                .error("must not contain spaces or control characters"),
        );
    }
}

/// `redis[s]://[user:password@]host[:port][/db]`: what the node's Redis client accepts (no
/// Unix sockets).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let shape = || format!("{url:?} is not redis[s]://[user:password@]host[:port][/db]");
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(shape)?;
    let (authority, db) = match rest.split_once('/') {
        Some((a, db)) => (a, Some(db)),
        None => (rest, None),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(shape)?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(shape());
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("{url:?}: {port:?} is not a port"));
    }
    if let Some(db) = db
        && !db.is_empty()
        && db.parse::<u32>().is_err()
    {
        return Err(format!("{url:?}: the database {db:?} is not a number"));
    }
    Ok(())
}

fn check_headers(h: &RateLimitHeadersConfig, path: &FieldPath, errors: &mut Vec<ConfigError>) {
    let mut seen: Vec<String> = Vec::new();
    let fields = [
        ("limit", &h.limit),
        ("remaining", &h.remaining),
        ("reset", &h.reset),
        ("ratelimit", &h.ratelimit),
        ("policy", &h.policy),
    ];
    for (field, name) in fields {
        let Some(name) = name else { continue };
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(
                path.field(field)
                    .error(format!("{name:?} is not a valid header name")),
            );
        } else if seen.contains(&name.to_ascii_lowercase()) {
            errors.push(
                path.field(field)
                    .error(format!("{name:?} is already used by another field")),
            );
        } else {
            seen.push(name.to_ascii_lowercase());
        }
    }
}

fn check_policy(
    p: &RateLimitPolicyConfig,
    redis_configured: bool,
    path: &FieldPath,
    errors: &mut Vec<ConfigError>,
) {
    let parts = p.key.parts();
    if parts.is_empty() {
        errors.push(path.field("key").error("name at least one key part"));
    }
    for (i, part) in parts.iter().enumerate() {
        if parts[..i].contains(part) {
            errors.push(
                path.field("key")
                    .error(format!("{} is listed twice", part_name(part))),
            );
        }
        if let KeyPartConfig::Header(name) = part
            && HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            errors.push(
                path.field("key")
                    .error(format!("{name:?} is not a valid header name")),
            );
        }
    }
    check_limits(&p.limits, p.algorithm, &path.field("limits"), errors);
    match p.store {
        StoreConfig::Local => {
            if p.failure_mode != FailureModeConfig::Open {
                errors.push(
                    path.field("failure_mode")
                        .error("only a policy with store: redis has a failure mode"),
                );
            }
            if p.fallback_limits.is_some() {
                errors.push(
                    path.field("fallback_limits")
                        .error("only a policy with store: redis has fallback limits"),
                );
            }
        }
        StoreConfig::Redis => {
            if !redis_configured {
                errors.push(path.field("store").error(
                    "store: redis needs rate_limiting.redis (the server counters are shared in)",
                ));
            }
            if let Some(fallback) = &p.fallback_limits {
                let fp = path.field("fallback_limits");
                if p.failure_mode == FailureModeConfig::Closed {
                    errors.push(fp.error("failure_mode: closed refuses requests while Redis is down; fallback limits would never apply"));
                }
                check_limits(fallback, p.algorithm, &fp, errors);
            }
        }
    }
}

fn part_name(part: &KeyPartConfig) -> String {
    match part {
        KeyPartConfig::Consumer => "consumer".into(),
        KeyPartConfig::Credential => "credential".into(),
        KeyPartConfig::ClientIp => "client_ip".into(),
        KeyPartConfig::Route => "route".into(),
        KeyPartConfig::Service => "service".into(),
        KeyPartConfig::Path => "path".into(),
        KeyPartConfig::Header(name) => format!("header {name:?}"),
    }
}

fn check_limits(
    limits: &[LimitConfig],
    algorithm: AlgorithmConfig,
    path: &FieldPath,
    errors: &mut Vec<ConfigError>,
) {
    if limits.is_empty() {
        errors.push(path.error("at least one limit is required, e.g. {requests: 100, per: 1m}"));
    }
    for (i, l) in limits.iter().enumerate() {
        let p = path.index(i);
        if l.requests == 0 {
            errors.push(p.field("requests").error("must be at least 1"));
        }
        if algorithm == AlgorithmConfig::SlidingWindow && l.requests > MAX_SLIDING_WINDOW_REQUESTS {
            errors.push(p.field("requests").error(format!(
                "a sliding window counts at most {MAX_SLIDING_WINDOW_REQUESTS} requests"
            )));
        }
        let per = l.per.get();
        if per.as_millis() == 0 {
            errors.push(p.field("per").error("must be at least 1ms"));
        } else if per > MAX_WINDOW.get() {
            errors.push(p.field("per").error("must be at most 366 days"));
        } else if algorithm == AlgorithmConfig::Gcra
            && per.as_nanos() < u128::from(l.requests.max(1))
        {
            errors.push(
                p.field("per")
                    .error("more than one request per nanosecond cannot be metered"),
            );
        }
        if limits[..i].iter().any(|o| o.per == l.per) {
            errors.push(
                p.field("per")
                    .error(format!("another limit already has per: {}", l.per)),
            );
        }
        match (l.burst, algorithm) {
            (Some(0), AlgorithmConfig::Gcra) => {
                errors.push(p.field("burst").error("must be at least 1"));
            }
            (Some(_), AlgorithmConfig::SlidingWindow | AlgorithmConfig::FixedWindow) => {
                errors.push(
                    p.field("burst")
                        .error("burst applies to the gcra (token bucket) algorithm only"),
                );
            }
            _ => {}
        }
    }
}
