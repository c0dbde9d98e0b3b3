//! `compile()`: a validated [`Config`] becomes the immutable runtime form: addresses parsed,
//! regexes built, names resolved to indices, and one [`RouteTable`] per listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::auth::{CompiledAuth, RouteAuth, compile_auth, compile_route_auth};
use crate::error::{ConfigError, ConfigErrors, FieldPath};
use crate::model::{
    Config, HashOnConfig, LoadBalancingConfig, Mode, ProxyConfig, RespondConfig, RouteConfig,
    UpstreamConfig, UpstreamProtocol, ValueMatchConfig,
};
use crate::path_template::{PathPattern, RewriteTemplate};
use crate::rate_limit::{
    CompiledRateLimiting, RouteRateLimit, compile_rate_limiting, compile_route_rate_limit,
};
use crate::resilience::{RetrySpec, UpstreamResilience};
use crate::route_table::RouteTable;
use crate::telemetry::TelemetrySpec;
use crate::validate::{split_host_port, validate};

pub mod mesh;

pub use mesh::{MeshAuthorization, MeshSpec};

/// Everything the data plane and the actors need, derived once per config generation.
#[derive(Debug)]
pub struct CompiledConfig {
    pub mode: Mode,
    pub server: ServerSettings,
    /// `None` when the admin listener is disabled.
    pub admin: Option<SocketAddr>,
    pub listeners: Vec<ListenerSpec>,
    pub routes: Vec<Arc<CompiledRoute>>,
    pub upstreams: Vec<Arc<UpstreamSpec>>,
    /// This node's mesh identity and authorization, when it is part of a mesh.
    pub mesh: Option<MeshSpec>,
    /// Connections to discovery backends.
    pub discovery: crate::model::DiscoveryConfig,
    /// The local service's registration, if any.
    pub registration: Option<crate::model::RegistrationConfig>,
    pub telemetry: TelemetrySpec,
    /// Consumers, identity providers and settings shared by every route's auth.
    pub auth: Arc<CompiledAuth>,
    /// Rate-limit policies, Redis settings and header names shared by every route.
    pub rate_limiting: Arc<CompiledRateLimiting>,
    /// The config this was compiled from (for the admin API and diffing on reload).
    pub source: Config,
}

impl CompiledConfig {
    pub fn upstream_index(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| &*u.name == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub worker_threads: Option<usize>,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
    pub watch_config: bool,
}

/// One listener with the routes that apply to it.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: Arc<str>,
    pub address: SocketAddr,
    pub http2: bool,
    pub routes: Arc<RouteTable>,
    /// TLS settings as written (files are read when the config is applied).
    pub tls: Option<crate::model::ListenerTlsConfig>,
    /// Where this listener sits in the config file (`listeners[2]`), for error messages.
    pub field_path: String,
    /// The mesh side of a sidecar: mTLS with the mesh identity, callers authorized.
    pub mesh_inbound: bool,
    /// PROXY protocol, client IP, limits, IP rules, WAF and bots for this listener's traffic.
    pub security: Arc<crate::security::ListenerSecurity>,
}

/// A route ready to match and act.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Position in `routes` of the config file.
    pub index: usize,
    pub name: Arc<str>,
    pub priority: i32,
    pub predicates: Predicates,
    pub action: RouteAction,
    /// The generation's auth and this route's policy (`auth.policy` is `None` without `auth:`).
    pub auth: RouteAuth,
    /// The rate-limit policies this route applies (none without `rate_limit:`).
    pub rate_limit: RouteRateLimit,
}

/// The non-path conditions of a route.
#[derive(Debug, Default)]
pub struct Predicates {
    /// Empty = any method.
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderCondition>,
    pub query: Vec<QueryCondition>,
}

impl Predicates {
    pub fn count(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len()
    }
}

#[derive(Debug)]
pub struct HeaderCondition {
    pub name: HeaderName,
    pub check: ValueCheck,
}

#[derive(Debug)]
pub struct QueryCondition {
    pub name: String,
    pub check: ValueCheck,
}

/// What a header or query value must satisfy.
#[derive(Debug)]
pub enum ValueCheck {
    Exact(String),
    /// Anchored: the whole value must match.
    Regex(regex::Regex),
    Present(bool),
}

impl ValueCheck {
    /// Check the values present under one name (empty iterator = absent).
    pub fn matches<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        match self {
            ValueCheck::Present(want) => values.next().is_some() == *want,
            ValueCheck::Exact(expected) => values.any(|v| v == expected.as_bytes()),
            ValueCheck::Regex(re) => {
                values.any(|v| std::str::from_utf8(v).is_ok_and(|s| re.is_match(s)))
            }
        }
    }
}

#[derive(Debug)]
pub enum RouteAction {
    Proxy(ProxySpec),
    Respond(RespondSpec),
}

#[derive(Debug)]
pub struct ProxySpec {
    /// Index into [`CompiledConfig::upstreams`].
    pub upstream: usize,
    pub upstream_name: Arc<str>,
    pub rewrite: PathRewrite,
    pub host: HostPolicy,
    pub timeout: Duration,
    pub retry: RetrySpec,
}

/// How the forwarded path is derived from the client's.
#[derive(Debug, Default)]
pub struct PathRewrite {
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    pub template: Option<RewriteTemplate>,
}

impl PathRewrite {
    pub fn is_identity(&self) -> bool {
        self.strip_prefix.is_none() && self.add_prefix.is_none() && self.template.is_none()
    }

    /// The upstream path for `path` (no query), given the captured parameters.
    pub fn apply(&self, path: &str, params: &[(Arc<str>, String)]) -> String {
        if let Some(template) = &self.template {
            return template.render(|name| {
                params
                    .iter()
                    .find(|(n, _)| &**n == name)
                    .map(|(_, v)| v.as_str())
            });
        }
        let mut rest = path;
        if let Some(prefix) = &self.strip_prefix
            && let Some(tail) = rest.strip_prefix(prefix.as_str())
            && (tail.is_empty() || tail.starts_with('/'))
        {
            rest = if tail.is_empty() { "/" } else { tail };
        }
        match &self.add_prefix {
            Some(prefix) if rest == "/" => prefix.clone(),
            Some(prefix) => format!("{prefix}{rest}"),
            None => rest.to_string(),
        }
    }
}

/// Which Host header the upstream request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    Preserve,
    /// The chosen endpoint's `host:port`.
    Upstream,
    Fixed(HeaderValue),
}

#[derive(Debug)]
pub struct RespondSpec {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub echo: bool,
}

/// A static target before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpec {
    pub name: Arc<str>,
    pub targets: Vec<TargetSpec>,
    /// Where endpoints come from when not from `targets`.
    pub discovery: Option<crate::model::UpstreamDiscoveryConfig>,
    pub subset: Option<crate::model::SubsetConfig>,
    pub prefer_zone: bool,
    pub tls: Option<crate::model::tls::UpstreamTlsConfig>,
    pub mesh: Option<crate::model::tls::UpstreamMeshConfig>,
    /// This node's zone (`discovery.zone`) when `prefer_zone` is on: endpoints whose `zone`
    /// metadata equals it are preferred. Carried here so a reload that moves the node to
    /// another zone counts as a change of the upstream.
    pub local_zone: Option<Arc<str>>,
    pub load_balancing: LoadBalancing,
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
    pub resilience: UpstreamResilience,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadBalancing {
    RoundRobin,
    LeastRequests,
    PeakEwma,
    ConsistentHash(HashOn),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
    Path,
}

/// Validate and compile. Fails with every problem, including route-table conflicts
/// (two templates the router cannot tell apart).
pub fn compile(config: &Config) -> Result<CompiledConfig, ConfigErrors> {
    validate(config)?;
    let mut errors = Vec::new();
    let upstreams: Vec<Arc<UpstreamSpec>> = config
        .upstreams
        .iter()
        .map(|u| Arc::new(compile_upstream(u, config.discovery.zone.as_deref())))
        .collect();
    let upstream_index: HashMap<&str, usize> = upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| (&*u.name, i))
        .collect();
    let auth = compile_auth(config);
    let rate_limiting = compile_rate_limiting(config);
    let routes: Vec<Arc<CompiledRoute>> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| Arc::new(compile_route(i, r, &upstream_index, &auth, &rate_limiting)))
        .collect();

    let mut tables: HashMap<Vec<usize>, Arc<RouteTable>> = HashMap::new();
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for (li, l) in config.listeners.iter().enumerate() {
        let members: Vec<usize> = config
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.listeners.is_empty() || r.listeners.contains(&l.name))
            .map(|(i, _)| i)
            .collect();
        let table = match tables.get(&members) {
            Some(t) => t.clone(),
            None => {
                let built = RouteTable::build(config, &routes, &members);
                let table = match built {
                    Ok(t) => Arc::new(t),
                    Err(mut e) => {
                        errors.append(&mut e);
                        Arc::new(RouteTable::default())
                    }
                };
                tables.insert(members, table.clone());
                table
            }
        };
        let address = match l.address.parse() {
            Ok(a) => a,
            Err(_) => {
                errors.push(
                    FieldPath::root()
                        .field("listeners")
                        .index(li)
                        .field("address")
                        .error("not an IP:port address"),
                );
                continue;
            }
        };
        listeners.push(ListenerSpec {
            name: l.name.as_str().into(),
            address,
            http2: l.http2,
            routes: table,
            tls: l.tls.clone(),
            field_path: format!("listeners[{li}]"),
            mesh_inbound: l.mesh == Some(crate::model::MeshListenerRole::Inbound),
            security: Arc::new(crate::security::compile_listener(config, li)),
        });
    }
    if config.listeners.is_empty() {
        // Nothing serves these routes yet, but a later listener would: report conflicts now.
        let all: Vec<usize> = (0..routes.len()).collect();
        if let Err(mut e) = RouteTable::build(config, &routes, &all) {
            errors.append(&mut e);
        }
    }
    dedupe(&mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let s = &config.server;
    Ok(CompiledConfig {
        mode: config.mode,
        server: ServerSettings {
            worker_threads: s.worker_threads,
            drain_timeout: s.drain_timeout.get(),
            header_read_timeout: s.header_read_timeout.get(),
            watch_config: s.watch_config,
        },
        admin: if config.admin.enabled {
            config.admin.address.parse().ok()
        } else {
            None
        },
        listeners,
        routes,
        upstreams,
        mesh: config.mesh.as_ref().map(MeshSpec::new),
        discovery: config.discovery.clone(),
        registration: config.registration.clone(),
        telemetry: crate::telemetry::compile(&config.telemetry),
        auth,
        rate_limiting,
        source: config.clone(),
    })
}

/// The same conflict is found once per listener table; report it once.
fn dedupe(errors: &mut Vec<ConfigError>) {
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert(e.to_string()));
}

fn compile_upstream(u: &UpstreamConfig, zone: Option<&str>) -> UpstreamSpec {
    let targets = u
        .targets
        .iter()
        .filter_map(|t| {
            let (host, port) = split_host_port(&t.address).ok()?;
            Some(TargetSpec {
                host,
                port,
                weight: t.weight,
            })
        })
        .collect();
    let load_balancing = match &u.load_balancing {
        LoadBalancingConfig::RoundRobin => LoadBalancing::RoundRobin,
        LoadBalancingConfig::LeastRequests => LoadBalancing::LeastRequests,
        LoadBalancingConfig::PeakEwma => LoadBalancing::PeakEwma,
        LoadBalancingConfig::ConsistentHash(on) => LoadBalancing::ConsistentHash(match on {
            HashOnConfig::Header(h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => HashOn::Header(name),
                Err(_) => HashOn::Path,
            },
            HashOnConfig::Cookie(c) => HashOn::Cookie(c.clone()),
            HashOnConfig::ClientIp => HashOn::ClientIp,
            HashOnConfig::Path => HashOn::Path,
        }),
    };
    UpstreamSpec {
        name: u.name.as_str().into(),
        targets,
        discovery: u.discovery.clone(),
        subset: u.subset.clone(),
        prefer_zone: u.prefer_zone,
        tls: u.tls.clone(),
        mesh: u.mesh.clone(),
        local_zone: zone.filter(|_| u.prefer_zone).map(Arc::from),
        load_balancing,
        protocol: u.protocol,
        connect_timeout: u.connect_timeout.get(),
        idle_timeout: u.idle_timeout.get(),
        max_idle_per_endpoint: u.max_idle_per_endpoint,
        resilience: UpstreamResilience::from_config(u),
    }
}

fn compile_route(
    index: usize,
    r: &RouteConfig,
    upstream_index: &HashMap<&str, usize>,
    auth: &Arc<CompiledAuth>,
    rate_limiting: &Arc<CompiledRateLimiting>,
) -> CompiledRoute {
    let name: Arc<str> = crate::validate::route_name(index, r).into();
    let m = &r.matcher;
    let predicates = Predicates {
        methods: m
            .methods
            .iter()
            .filter_map(|s| Method::from_bytes(s.as_bytes()).ok())
            .collect(),
        headers: m
            .headers
            .iter()
            .filter_map(|h| {
                Some(HeaderCondition {
                    name: HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                    check: value_check(h)?,
                })
            })
            .collect(),
        query: m
            .query
            .iter()
            .filter_map(|q| {
                Some(QueryCondition {
                    name: q.name.clone(),
                    check: value_check(q)?,
                })
            })
            .collect(),
    };
    let action = match (&r.proxy, &r.respond) {
        (Some(p), _) => RouteAction::Proxy(compile_proxy(p, upstream_index)),
        (None, Some(d)) => RouteAction::Respond(compile_respond(d)),
        // validate() rejects routes without an action.
        (None, None) => RouteAction::Respond(compile_respond(&RespondConfig {
            status: 404,
            headers: Default::default(),
            body: None,
            echo: false,
        })),
    };
    CompiledRoute {
        index,
        name,
        priority: r.priority,
        predicates,
        action,
        auth: compile_route_auth(auth, r.auth.as_ref()),
        rate_limit: compile_route_rate_limit(rate_limiting, index),
    }
}

fn value_check(m: &ValueMatchConfig) -> Option<ValueCheck> {
    if let Some(e) = &m.exact {
        return Some(ValueCheck::Exact(e.clone()));
    }
    if let Some(re) = &m.regex {
        return regex::Regex::new(&format!("^(?:{re})$"))
            .ok()
            .map(ValueCheck::Regex);
    }
    m.present.map(ValueCheck::Present)
}

fn compile_proxy(p: &ProxyConfig, upstream_index: &HashMap<&str, usize>) -> ProxySpec {
    let host = match (&p.host_rewrite, p.preserve_host) {
        (Some(h), _) => match HeaderValue::from_str(h) {
            Ok(v) => HostPolicy::Fixed(v),
            Err(_) => HostPolicy::Preserve,
        },
        (None, true) => HostPolicy::Preserve,
        (None, false) => HostPolicy::Upstream,
    };
    ProxySpec {
        upstream: upstream_index
            .get(p.upstream.as_str())
            .copied()
            .unwrap_or(0),
        upstream_name: p.upstream.as_str().into(),
        rewrite: PathRewrite {
            strip_prefix: p.strip_prefix.clone(),
            add_prefix: p.add_prefix.clone(),
            template: p
                .rewrite
                .as_deref()
                .and_then(|t| RewriteTemplate::parse(t).ok()),
        },
        host,
        timeout: p
            .timeout
            .unwrap_or(crate::model::DEFAULT_ROUTE_TIMEOUT)
            .get(),
        retry: p.retry.as_ref().map(RetrySpec::from).unwrap_or_default(),
    }
}

fn compile_respond(d: &RespondConfig) -> RespondSpec {
    let mut headers = HeaderMap::new();
    for (k, v) in &d.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(name, value);
        }
    }
    RespondSpec {
        status: StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK),
        headers,
        body: Bytes::from(d.body.clone().unwrap_or_default()),
        echo: d.echo,
    }
}

/// The parsed path patterns of a route, with their field paths (for conflict errors).
pub(crate) fn route_patterns(index: usize, r: &RouteConfig) -> Vec<(FieldPath, PathPattern)> {
    let base = FieldPath::root()
        .field("routes")
        .index(index)
        .field("match")
        .field("paths");
    if r.matcher.paths.is_empty() {
        return vec![(base, PathPattern::Prefix(String::new()))];
    }
    r.matcher
        .paths
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((base.index(i), PathPattern::parse(p).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests;
