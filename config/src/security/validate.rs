//! Validation of `security:`, of each listener's and route's override, and of
//! `listeners[].proxy_protocol`: CIDRs, regexes, header names, ranges, and the listener-level
//! fields a route may not set. Every problem carries its field path.

use std::collections::HashSet;

use http::HeaderName;
use serde_json::Value;

use super::compile::parse_cidr;
use super::layered;
use super::model::{
    MAX_HEADER_BYTES_LIMIT, MAX_HEADERS_LIMIT, MAX_URI_LENGTH_LIMIT, MAX_WAF_BODY_INSPECT,
    SecurityConfig, WafMode,
};
use crate::error::{ConfigError, FieldPath};
use crate::model::Config;

/// Fields that act before routing (connection, request head): a route cannot change them.
const LISTENER_ONLY: &[(&str, Option<&str>)] = &[
    ("client_ip", None),
    ("max_connections_per_ip", None),
    ("limits", Some("max_headers")),
    ("limits", Some("max_header_bytes")),
    ("limits", Some("max_uri_length")),
    ("slow_clients", Some("header_timeout")),
    ("protocol", Some("headers_with_underscores")),
    ("protocol", Some("escaped_slashes")),
];

/// Every problem in the security settings.
pub fn validate_security(config: &Config) -> Vec<ConfigError> {
    let root = FieldPath::root();
    let mut errors = Vec::new();
    let global_path = root.field("security");
    check(&config.security, &global_path, &mut errors);
    let global_errors: HashSet<String> = errors
        .iter()
        .map(|e| relative(&e.path, global_path.as_str()))
        .collect();
    for (i, l) in config.listeners.iter().enumerate() {
        let Some(patch) = &l.security else { continue };
        let path = root.field("listeners").index(i).field("security");
        override_errors(config, &[patch], &path, &global_errors, &mut errors);
    }
    for (i, r) in config.routes.iter().enumerate() {
        let Some(patch) = &r.security else { continue };
        let path = root.field("routes").index(i).field("security");
        for (section, field) in LISTENER_ONLY {
            let set = match field {
                None => patch.get(section).is_some(),
                Some(f) => patch.get(section).and_then(|s| s.get(f)).is_some(),
            };
            if set {
                let p = match field {
                    None => path.field(section),
                    Some(f) => path.field(section).field(f),
                };
                errors.push(p.error(
                    "applies before routing: set it in security: or on the listener, not on a route",
                ));
            }
        }
        override_errors(config, &[patch], &path, &global_errors, &mut errors);
    }
    errors
}

fn relative(path: &str, base: &str) -> String {
    path.strip_prefix(base).unwrap_or(path).to_string()
}

/// The problems an override adds to the global section's.
fn override_errors(
    config: &Config,
    layers: &[&Value],
    path: &FieldPath,
    global_errors: &HashSet<String>,
    errors: &mut Vec<ConfigError>,
) {
    if layers.iter().any(|l| !l.is_object()) {
        errors.push(path.error("expected a mapping with the fields of security:"));
        return;
    }
    match layered(&config.security, layers) {
        Err((field, message)) => {
            let p = if field.is_empty() {
                path.clone()
            } else {
                FieldPath::root().field(&format!("{}.{field}", path.as_str()))
            };
            errors.push(p.error(message));
        }
        Ok(merged) => {
            let mut found = Vec::new();
            check(&merged, path, &mut found);
            errors.extend(
                found
                    .into_iter()
                    .filter(|e| !global_errors.contains(&relative(&e.path, path.as_str()))),
            );
        }
    }
}

/// Value checks on one (possibly merged) section.
fn check(s: &SecurityConfig, path: &FieldPath, errors: &mut Vec<ConfigError>) {
    cidrs(
        &s.client_ip.trusted_proxies,
        &path.field("client_ip").field("trusted_proxies"),
        errors,
    );
    cidrs(
        &s.ip_rules.allow,
        &path.field("ip_rules").field("allow"),
        errors,
    );
    cidrs(
        &s.ip_rules.deny,
        &path.field("ip_rules").field("deny"),
        errors,
    );
    let l = &s.limits;
    let lp = path.field("limits");
    if !(1..=MAX_HEADERS_LIMIT).contains(&l.max_headers) {
        errors.push(lp.field("max_headers").error(format!(
            "{} is out of range 1..={MAX_HEADERS_LIMIT}",
            l.max_headers
        )));
    }
    if !(1024..=MAX_HEADER_BYTES_LIMIT).contains(&l.max_header_bytes.get()) {
        errors.push(lp.field("max_header_bytes").error(format!(
            "{} is out of range 1KiB..=1MiB",
            l.max_header_bytes
        )));
    }
    if !(256..=MAX_URI_LENGTH_LIMIT).contains(&l.max_uri_length.get()) {
        errors.push(lp.field("max_uri_length").error(format!(
            "{} is out of range 256..=64KiB (hyper refuses longer targets with 414 anyway)",
            l.max_uri_length
        )));
    }
    let sp = path.field("slow_clients");
    if let Some(t) = s.slow_clients.header_timeout
        && t.get().is_zero()
    {
        errors.push(
            sp.field("header_timeout")
                .error("must be greater than zero"),
        );
    }
    if s.slow_clients.body_rate_window.get().is_zero() {
        errors.push(
            sp.field("body_rate_window")
                .error("must be greater than zero"),
        );
    }
    let wp = path.field("waf");
    if s.waf.max_body_inspect.get() > MAX_WAF_BODY_INSPECT {
        errors.push(
            wp.field("max_body_inspect")
                .error(format!("{} is more than 1MiB", s.waf.max_body_inspect)),
        );
    }
    if s.waf.mode != WafMode::Off && s.waf.inspect.is_empty() {
        errors.push(
            wp.field("inspect")
                .error("name at least one of path, query, headers, body"),
        );
    }
    for (i, h) in s.waf.skip_headers.iter().enumerate() {
        if HeaderName::from_bytes(h.as_bytes()).is_err() {
            errors.push(
                wp.field("skip_headers")
                    .index(i)
                    .error(format!("{h:?} is not a valid header name")),
            );
        }
    }
    upgrade_protocols(
        &s.protocol.upgrades,
        &path.field("protocol").field("upgrades"),
        errors,
    );
    let bp = path.field("bots");
    for (field, list) in [("deny", &s.bots.deny), ("allow", &s.bots.allow)] {
        for (i, pattern) in list.iter().enumerate() {
            if let Err(e) = regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
            {
                let reason = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                errors.push(
                    bp.field(field)
                        .index(i)
                        .error(format!("invalid regex: {reason}")),
                );
            }
        }
    }
}

/// `upgrades` entries: protocol names as `Upgrade` carries them (RFC 9110 §7.8), never `h2c`.
fn upgrade_protocols(items: &[String], path: &FieldPath, errors: &mut Vec<ConfigError>) {
    for (i, item) in items.iter().enumerate() {
        let name = item.split('/').next().unwrap_or(item);
        if name.eq_ignore_ascii_case("h2c") {
            errors.push(path.index(i).error(
                "h2c is never forwarded: RFC 9113 §3.1 deprecates the upgrade, and its tunnel \
                 would carry requests past routing and every check",
            ));
        } else if item.is_empty() || !item.bytes().all(is_token_byte) {
            errors.push(
                path.index(i)
                    .error(format!("{item:?} is not a protocol name (e.g. websocket)")),
            );
        }
    }
}

/// RFC 9110 §5.6.2 tchar, plus the `/` between a protocol name and its version.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b)
}

fn cidrs(items: &[String], path: &FieldPath, errors: &mut Vec<ConfigError>) {
    for (i, item) in items.iter().enumerate() {
        if let Err(message) = parse_cidr(item) {
            errors.push(path.index(i).error(message));
        }
    }
}
