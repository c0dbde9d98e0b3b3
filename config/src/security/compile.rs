//! The runtime form of the security config: one [`SecurityPolicy`] per listener (global merged
//! with the listener's override) and one per route that overrides anything, merged over its
//! listener's. CIDRs parsed, regexes built, header names checked — nothing left to parse on the
//! request path.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use regex::{Regex, RegexBuilder};

use super::bots::KNOWN_BAD_BOTS;
use super::layered;
use super::model::{
    EscapedSlashes, ForwardedHeader, SecurityConfig, UnderscoreAction, WafMode, WafTarget,
};
use crate::model::Config;

/// Every check's settings for one listener, or one route on one listener.
#[derive(Debug)]
pub struct SecurityPolicy {
    pub enabled: bool,
    // Listener level (they apply before routing).
    pub trusted_proxies: IpList,
    pub forwarded_header: ForwardedHeader,
    pub max_connections_per_ip: u32,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub max_uri_length: usize,
    pub header_timeout: Duration,
    pub headers_with_underscores: UnderscoreAction,
    pub reject_escaped_slashes: bool,
    // Route level.
    pub max_body_size: u64,
    pub max_query_params: usize,
    pub min_body_rate: Option<BodyRate>,
    pub ip_allow: IpList,
    pub ip_deny: IpList,
    pub waf: WafSpec,
    pub bots: BotRules,
    /// `Upgrade` protocols forwarded, lowercase (never `h2c`).
    pub upgrades: Box<[Box<str>]>,
}

impl SecurityPolicy {
    /// Whether `protocol` (an `Upgrade` token, any case) may be forwarded. Applies whether or
    /// not the checks are `enabled`: it decides what the proxy forwards, it refuses nothing.
    pub fn allows_upgrade(&self, protocol: &str) -> bool {
        // RFC 9113 §3.1: the h2c upgrade is deprecated; a tunnel to the backend would carry
        // further requests past routing and every check.
        let name = protocol.split('/').next().unwrap_or(protocol).trim();
        !name.eq_ignore_ascii_case("h2c")
            && self.upgrades.iter().any(|u| name.eq_ignore_ascii_case(u))
    }
}

/// A minimum average body rate, measured over time spent waiting for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

/// A list of CIDRs. IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) match as IPv4.
#[derive(Debug, Default, Clone)]
pub struct IpList(Vec<IpNet>);

impl IpList {
    pub fn parse(items: &[String]) -> Self {
        Self(items.iter().filter_map(|s| parse_cidr(s).ok()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Linear in the list: lists here are short (proxies, office ranges); a large blocklist
    /// belongs in a firewall.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d (dual-stack sockets report v4 clients so).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A CIDR, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    t.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("{text:?} is not an IP address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)")
    })
}

/// What the WAF inspects and what it does on a match.
#[derive(Debug, Clone)]
pub struct WafSpec {
    pub mode: WafMode,
    pub sqli: bool,
    pub xss: bool,
    pub path: bool,
    pub query: bool,
    pub headers: bool,
    pub body: bool,
    /// Never inspected: Authorization, Proxy-Authorization, Host and the configured ones.
    pub skip_headers: Vec<HeaderName>,
    pub max_body_inspect: usize,
}

impl WafSpec {
    pub fn active(&self) -> bool {
        self.mode != WafMode::Off && (self.sqli || self.xss)
    }
}

/// User-Agent rules; `allow` wins.
#[derive(Debug, Clone, Default)]
pub struct BotRules {
    /// The built-in list and the configured `deny` patterns, as one case-insensitive regex.
    pub deny: Option<Regex>,
    pub allow: Option<Regex>,
    pub block_missing: bool,
}

impl BotRules {
    pub fn active(&self) -> bool {
        self.deny.is_some() || self.block_missing
    }
}

/// A listener's policy and the policies of routes that override it.
#[derive(Debug)]
pub struct ListenerSecurity {
    /// Accept the PROXY protocol (v1 or v2) before anything else on each connection.
    pub proxy_protocol: bool,
    pub policy: Arc<SecurityPolicy>,
    /// By route index; `None` = the listener's policy.
    routes: Vec<Option<Arc<SecurityPolicy>>>,
}

impl ListenerSecurity {
    /// The policy for a request routed to route `index` (the listener's for unknown indices).
    pub fn for_route(&self, index: usize) -> &Arc<SecurityPolicy> {
        match self.routes.get(index) {
            Some(Some(policy)) => policy,
            _ => &self.policy,
        }
    }
}

/// The security of listener `index` of a validated config.
pub fn compile_listener(config: &Config, index: usize) -> ListenerSecurity {
    let server_timeout = config.server.header_read_timeout.get();
    let listener = config.listeners.get(index);
    let mut layers = Vec::new();
    if let Some(patch) = listener.and_then(|l| l.security.as_ref()) {
        layers.push(patch);
    }
    let base = layered(&config.security, &layers).unwrap_or_else(|_| config.security.clone());
    let policy = Arc::new(SecurityPolicy::new(&base, server_timeout));
    let routes = config
        .routes
        .iter()
        .map(|r| {
            let patch = r.security.as_ref()?;
            let merged = layered(&base, &[patch]).ok()?;
            Some(Arc::new(SecurityPolicy::new(&merged, server_timeout)))
        })
        .collect();
    ListenerSecurity {
        proxy_protocol: listener.is_some_and(|l| l.proxy_protocol),
        policy,
        routes,
    }
}

impl SecurityPolicy {
    pub fn new(c: &SecurityConfig, server_header_timeout: Duration) -> Self {
        let limits = &c.limits;
        let slow = &c.slow_clients;
        let min_body_rate = (slow.min_body_rate.get() > 0).then(|| BodyRate {
            bytes_per_second: slow.min_body_rate.get(),
            window: slow.body_rate_window.get(),
        });
        Self {
            enabled: c.enabled,
            trusted_proxies: IpList::parse(&c.client_ip.trusted_proxies),
            forwarded_header: c.client_ip.header,
            max_connections_per_ip: c.max_connections_per_ip,
            max_headers: limits.max_headers,
            max_header_bytes: limits.max_header_bytes.as_usize(),
            max_uri_length: limits.max_uri_length.as_usize(),
            header_timeout: slow
                .header_timeout
                .map_or(server_header_timeout, |t| t.get()),
            headers_with_underscores: c.protocol.headers_with_underscores,
            reject_escaped_slashes: c.protocol.escaped_slashes == EscapedSlashes::Reject,
            max_body_size: limits.max_body_size.get(),
            max_query_params: limits.max_query_params,
            min_body_rate,
            ip_allow: IpList::parse(&c.ip_rules.allow),
            ip_deny: IpList::parse(&c.ip_rules.deny),
            waf: waf_spec(c),
            bots: bot_rules(c),
            upgrades: c
                .protocol
                .upgrades
                .iter()
                .map(|u| u.trim().to_ascii_lowercase().into_boxed_str())
                .filter(|u| &**u != "h2c")
                .collect(),
        }
    }
}

fn waf_spec(c: &SecurityConfig) -> WafSpec {
    let w = &c.waf;
    let has = |t: WafTarget| w.inspect.contains(&t);
    let mut skip_headers = vec![
        http::header::AUTHORIZATION,
        http::header::PROXY_AUTHORIZATION,
        http::header::HOST,
    ];
    skip_headers.extend(
        w.skip_headers
            .iter()
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
    );
    WafSpec {
        mode: w.mode,
        sqli: w.sqli,
        xss: w.xss,
        path: has(WafTarget::Path),
        query: has(WafTarget::Query),
        headers: has(WafTarget::Headers),
        body: has(WafTarget::Body),
        skip_headers,
        max_body_inspect: w.max_body_inspect.as_usize(),
    }
}

fn bot_rules(c: &SecurityConfig) -> BotRules {
    let b = &c.bots;
    let mut deny: Vec<String> = b.deny.clone();
    if b.block_known {
        deny.extend(KNOWN_BAD_BOTS.iter().map(|s| regex::escape(s)));
    }
    BotRules {
        deny: alternation(&deny),
        allow: alternation(&b.allow),
        block_missing: b.block_missing,
    }
}

/// One case-insensitive regex matching any of `patterns` (validated beforehand).
pub fn alternation(patterns: &[String]) -> Option<Regex> {
    if patterns.is_empty() {
        return None;
    }
    let joined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    RegexBuilder::new(&joined)
        .case_insensitive(true)
        .size_limit(1 << 22)
        .build()
        .ok()
}
