//! Validation of a typed [`Config`]: references, ranges, addresses, regexes, header names.
//! Collects every problem with its field path instead of stopping at the first.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::error::{ConfigError, ConfigErrors, FieldPath};
use crate::model::{
    Config, HashOnConfig, LoadBalancingConfig, MAX_TARGET_WEIGHT, MatchConfig, ProxyConfig,
    RespondConfig, RouteConfig, UpstreamConfig, ValueMatchConfig,
};
use crate::path_template::{PathPattern, RewriteTemplate};

mod addresses;
mod discovery;
mod mesh;
mod warnings;

pub use warnings::warnings;

/// Check everything that serde's types cannot express. `Ok(())` means `compile` will succeed
/// except for route-table conflicts, which `compile` reports the same way.
pub fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut v = Validator::default();
    let root = FieldPath::root();
    v.server(config, &root.field("server"));
    if config.admin.enabled {
        v.socket_addr(&config.admin.address, &root.field("admin").field("address"));
    }
    let listeners = v.unique_names(
        config.listeners.iter().map(|l| l.name.as_str()),
        &root.field("listeners"),
    );
    for (i, l) in config.listeners.iter().enumerate() {
        let path = root.field("listeners").index(i);
        v.socket_addr(&l.address, &path.field("address"));
        if let Some(tls) = &l.tls {
            v.tls(tls, &path.field("tls"));
        }
    }
    v.shared_addresses(config, &root);
    let upstreams = v.unique_names(
        config.upstreams.iter().map(|u| u.name.as_str()),
        &root.field("upstreams"),
    );
    for (i, u) in config.upstreams.iter().enumerate() {
        v.upstream(u, &root.field("upstreams").index(i));
    }
    let named_routes = config
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.name.as_deref().map(|n| (i, n)));
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in named_routes {
        let path = root.field("routes").index(i).field("name");
        if name.is_empty() {
            v.push(path.error("must not be empty"));
        } else if let Some(first) = seen.insert(name, i) {
            v.push(path.error(format!(
                "duplicate route name {name:?} (first used at routes[{first}])"
            )));
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        v.route(r, &root.field("routes").index(i), &listeners, &upstreams);
    }
    v.mesh(config, &root);
    v.discovery(config, &root);
    let route_names: Vec<String> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route_name(i, r))
        .collect();
    v.errors.extend(crate::telemetry::validate(
        &config.telemetry,
        &route_names,
        &root.field("telemetry"),
    ));
    v.errors.extend(crate::auth::validate_auth(config));
    v.errors
        .extend(crate::rate_limit::validate_rate_limits(config));
    v.errors.extend(crate::security::validate_security(config));
    v.finish()
}

/// What a node needs beyond [`validate`] to be worth running: something to serve. A config
/// file (not a fragment) with no listener is refused unless the node only registers a
/// service or only runs the mesh CA: a file caught half-written often parses with its
/// `listeners:` still missing, and serving it would close every socket.
pub fn validate_runnable(config: &Config) -> Result<(), ConfigErrors> {
    let serves_something = !config.listeners.is_empty()
        || config.registration.is_some()
        || config.mesh.as_ref().is_some_and(|m| m.ca_server.is_some());
    if serves_something {
        Ok(())
    } else {
        Err(ConfigErrors(vec![FieldPath::root().field("listeners").error(
            "at least one listener is required (only a node that just registers a service or runs the mesh CA may have none)",
        )]))
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    fn server(&mut self, config: &Config, path: &FieldPath) {
        let s = &config.server;
        if let Some(n) = s.worker_threads
            && !(1..=1024).contains(&n)
        {
            self.push(
                path.field("worker_threads")
                    .error(format!("{n} is out of range 1..=1024")),
            );
        }
        if s.header_read_timeout.get().is_zero() {
            self.push(
                path.field("header_read_timeout")
                    .error("must be greater than zero"),
            );
        }
    }

    fn tls(&mut self, tls: &crate::model::ListenerTlsConfig, path: &FieldPath) {
        if tls.certificates.is_empty() {
            self.push(
                path.field("certificates")
                    .error("at least one certificate is required"),
            );
        }
        for (i, c) in tls.certificates.iter().enumerate() {
            let p = path.field("certificates").index(i);
            for (field, value) in [("cert", &c.cert), ("key", &c.key)] {
                if value.trim().is_empty() {
                    self.push(p.field(field).error("a file path is required"));
                }
            }
            for (j, name) in c.server_names.iter().enumerate() {
                if let Err(message) = check_host_pattern(name) {
                    self.push(p.field("server_names").index(j).error(message));
                }
            }
        }
        if tls.alpn.is_empty() {
            self.push(
                path.field("alpn")
                    .error("offer at least one protocol (h2, http/1.1)"),
            );
        }
        for (i, proto) in tls.alpn.iter().enumerate() {
            if !matches!(proto.as_str(), "h2" | "http/1.1") {
                self.push(
                    path.field("alpn")
                        .index(i)
                        .error(format!("{proto:?} is not supported; use h2 or http/1.1")),
                );
            }
        }
        if let Some(ca) = &tls.client_auth
            && ca.ca.trim().is_empty()
        {
            self.push(
                path.field("client_auth")
                    .field("ca")
                    .error("a file path is required"),
            );
        }
        if let Some(hsts) = &tls.hsts
            && hsts.max_age.get().is_zero()
        {
            self.push(
                path.field("hsts")
                    .field("max_age")
                    .error("must be greater than zero"),
            );
        }
        if tls.handshake_timeout.get().is_zero() {
            self.push(
                path.field("handshake_timeout")
                    .error("must be greater than zero"),
            );
        }
    }

    fn socket_addr(&mut self, text: &str, path: &FieldPath) {
        if text.parse::<SocketAddr>().is_err() {
            self.push(path.error(format!(
                "{text:?} is not an IP:port address (e.g. 0.0.0.0:8080 or [::1]:8080)"
            )));
        }
    }

    /// Names must be non-empty and unique; returns the set of valid names.
    fn unique_names<'a>(
        &mut self,
        names: impl Iterator<Item = &'a str>,
        list: &FieldPath,
    ) -> HashMap<&'a str, usize> {
        let mut seen = HashMap::new();
        for (i, name) in names.enumerate() {
            let path = list.index(i).field("name");
            if name.is_empty() {
                self.push(path.error("must not be empty"));
            } else if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                self.push(path.error(format!(
                    "{name:?} may only contain letters, digits, '-', '_' and '.'"
                )));
            } else if let Some(first) = seen.get(name) {
                self.push(path.error(format!(
                    "duplicate name {name:?} (first used at {}[{first}])",
                    list.as_str()
                )));
            } else {
                seen.insert(name, i);
            }
        }
        seen
    }

    fn route(
        &mut self,
        r: &RouteConfig,
        path: &FieldPath,
        listeners: &HashMap<&str, usize>,
        upstreams: &HashMap<&str, usize>,
    ) {
        for (i, l) in r.listeners.iter().enumerate() {
            if !listeners.contains_key(l.as_str()) {
                self.push(
                    path.field("listeners")
                        .index(i)
                        .error(format!("unknown listener {l:?}")),
                );
            }
        }
        let patterns = self.matcher(&r.matcher, &path.field("match"));
        match (&r.proxy, &r.respond) {
            (Some(p), None) => self.proxy(p, &patterns, &path.field("proxy"), upstreams),
            (None, Some(d)) => self.respond(d, &path.field("respond")),
            (Some(_), Some(_)) => {
                self.push(path.error("set either proxy or respond, not both"));
            }
            (None, None) => self.push(path.error(
                "a route needs an action: proxy (to an upstream) or respond (a direct answer)",
            )),
        }
    }

    fn matcher(&mut self, m: &MatchConfig, path: &FieldPath) -> Vec<PathPattern> {
        let mut patterns = Vec::new();
        for (i, p) in m.paths.iter().enumerate() {
            match PathPattern::parse(p) {
                Ok(pattern) => patterns.push(pattern),
                Err(message) => self.push(path.field("paths").index(i).error(message)),
            }
        }
        for (i, h) in m.hosts.iter().enumerate() {
            if let Err(message) = check_host_pattern(h) {
                self.push(path.field("hosts").index(i).error(message));
            }
        }
        for (i, method) in m.methods.iter().enumerate() {
            let p = path.field("methods").index(i);
            if method.is_empty() || !method.bytes().all(is_token_byte) {
                self.push(p.error(format!("{method:?} is not an HTTP method")));
            } else if method.bytes().any(|b| b.is_ascii_lowercase())
                && http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_ok()
            {
                self.push(p.error(format!(
                    "methods are case-sensitive: write {:?}",
                    method.to_ascii_uppercase()
                )));
            }
        }
        for (i, h) in m.headers.iter().enumerate() {
            let p = path.field("headers").index(i);
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                self.push(
                    p.field("name")
                        .error(format!("{:?} is not a valid header name", h.name)),
                );
            }
            self.value_match(h, &p);
        }
        for (i, q) in m.query.iter().enumerate() {
            let p = path.field("query").index(i);
            if q.name.is_empty() {
                self.push(p.field("name").error("must not be empty"));
            }
            self.value_match(q, &p);
        }
        patterns
    }

    fn value_match(&mut self, m: &ValueMatchConfig, path: &FieldPath) {
        let set = [m.exact.is_some(), m.regex.is_some(), m.present.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set != 1 {
            self.push(path.error("set exactly one of exact, regex, present"));
        }
        if let Some(re) = &m.regex
            && let Err(e) = regex::Regex::new(re)
        {
            self.push(
                path.field("regex")
                    .error(format!("invalid regex: {}", one_line(&e.to_string()))),
            );
        }
    }

    fn proxy(
        &mut self,
        p: &ProxyConfig,
        patterns: &[PathPattern],
        path: &FieldPath,
        upstreams: &HashMap<&str, usize>,
    ) {
        if !upstreams.contains_key(p.upstream.as_str()) {
            self.push(
                path.field("upstream")
                    .error(format!("unknown upstream {:?}", p.upstream)),
            );
        }
        for (field, value) in [
            ("strip_prefix", &p.strip_prefix),
            ("add_prefix", &p.add_prefix),
        ] {
            if let Some(v) = value
                && (!v.starts_with('/') || v.len() < 2 || v.ends_with('/'))
            {
                self.push(path.field(field).error(format!(
                    "{v:?} must start with '/' and not end with '/' (e.g. /api)"
                )));
            }
        }
        if let Some(rewrite) = &p.rewrite {
            let rp = path.field("rewrite");
            if p.strip_prefix.is_some() || p.add_prefix.is_some() {
                self.push(rp.error("rewrite replaces the whole path; do not combine it with strip_prefix or add_prefix"));
            }
            match RewriteTemplate::parse(rewrite) {
                Ok(template) => {
                    for name in template.params() {
                        let missing = patterns.is_empty()
                            || patterns
                                .iter()
                                .any(|pat| !pat.params().iter().any(|p| p == name));
                        if missing {
                            self.push(rp.error(format!(
                                "{{{name}}} is not captured by every path of this route"
                            )));
                        }
                    }
                }
                Err(message) => self.push(rp.error(message)),
            }
        }
        if let Some(host) = &p.host_rewrite
            && (host.is_empty() || http::HeaderValue::from_str(host).is_err())
        {
            self.push(
                path.field("host_rewrite")
                    .error(format!("{host:?} is not a valid Host header value")),
            );
        }
        if let Some(t) = p.timeout
            && t.get().is_zero()
        {
            self.push(path.field("timeout").error("must be greater than zero"));
        }
        if let Some(r) = &p.retry {
            crate::resilience::check::retry(r, &path.field("retry"), &mut self.errors);
        }
    }

    fn respond(&mut self, d: &RespondConfig, path: &FieldPath) {
        if !(200..=599).contains(&d.status) {
            self.push(
                path.field("status")
                    .error(format!("{} is out of range 200..=599", d.status)),
            );
        }
        if d.echo && d.body.is_some() {
            self.push(
                path.field("body")
                    .error("echo returns the request; drop body"),
            );
        }
        for (name, value) in &d.headers {
            let p = path.field("headers").field(name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.push(p.error("not a valid header name"));
            } else if http::HeaderValue::from_str(value).is_err() {
                self.push(p.error(format!("{value:?} is not a valid header value")));
            }
        }
    }

    fn upstream(&mut self, u: &UpstreamConfig, path: &FieldPath) {
        match (&u.discovery, u.targets.is_empty()) {
            (None, true) => self.push(
                path.field("targets")
                    .error("an upstream needs at least one target, or a discovery source"),
            ),
            (Some(_), false) => self.push(
                path.field("targets")
                    .error("list targets or discover them, not both"),
            ),
            _ => {}
        }
        for (i, t) in u.targets.iter().enumerate() {
            let p = path.field("targets").index(i);
            if let Err(message) = split_host_port(&t.address) {
                self.push(p.field("address").error(message));
            }
            if !(1..=MAX_TARGET_WEIGHT).contains(&t.weight) {
                self.push(p.field("weight").error(format!(
                    "{} is out of range 1..={MAX_TARGET_WEIGHT}",
                    t.weight
                )));
            }
        }
        if u.connect_timeout.get().is_zero() {
            self.push(
                path.field("connect_timeout")
                    .error("must be greater than zero"),
            );
        }
        if u.idle_timeout.get().is_zero() {
            self.push(
                path.field("idle_timeout")
                    .error("must be greater than zero"),
            );
        }
        if let LoadBalancingConfig::ConsistentHash(on) = &u.load_balancing {
            let p = path.field("load_balancing").field("consistent_hash");
            match on {
                HashOnConfig::Header(name)
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() =>
                {
                    self.push(
                        p.field("header")
                            .error(format!("{name:?} is not a valid header name")),
                    );
                }
                HashOnConfig::Cookie(name) if name.is_empty() => {
                    self.push(p.field("cookie").error("must not be empty"));
                }
                _ => {}
            }
        }
        crate::resilience::check::upstream(u, path, &mut self.errors);
    }
}

/// The name a route is known by in logs and metrics: its own, or `route-<index>`.
pub fn route_name(index: usize, r: &RouteConfig) -> String {
    r.name.clone().unwrap_or_else(|| format!("route-{index}"))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_token_byte(b: u8) -> bool {
    // RFC 9110 §5.6.2 tchar
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `api.example.com` or `*.example.com`: DNS labels, lowercase, wildcard only as the whole
/// leftmost label.
pub(crate) fn check_host_pattern(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{host:?} is not a host name"));
    }
    if name.contains('*') {
        return Err(format!(
            "{host:?}: a wildcard is only allowed as the whole leftmost label (*.example.com)"
        ));
    }
    if name.contains(':') {
        return Err(format!("{host:?}: give the host without a port"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{host:?} is not a valid host name"));
        }
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{host:?}: write host names in lowercase ({:?})",
            host.to_ascii_lowercase()
        ));
    }
    Ok(())
}

/// Split `host:port` / `[v6]:port`; the host may be an IP or a DNS name.
pub(crate) fn split_host_port(address: &str) -> Result<(String, u16), String> {
    if let Ok(sa) = address.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    let err = || format!("{address:?} is not host:port (e.g. 10.0.0.5:8080 or users.internal:80)");
    let (host, port) = address.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    if port == 0 {
        return Err(format!("{address:?}: port 0 is not a target port"));
    }
    if host.is_empty()
        || host.starts_with('[')
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(err());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests;
