//! The `security:` section as users write it (global defaults), plus the byte-size type its
//! limits use. Listeners and routes override it with a partial `security:` block of the same
//! shape, merged field by field (RFC 7396 merge patch: a list replaces, `null` resets to the
//! default); `security::validate` says which fields a route may set.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::HumanDuration;

/// Concurrent connections one client IP may hold on one listener (0 = unlimited). Unlimited by
/// default, as in nginx, HAProxy and Envoy: behind a load balancer or a NAT every client shares
/// one address (docs/security.md has a hardening profile for directly exposed listeners).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 0;
/// Largest request body (Content-Length or streamed).
pub const DEFAULT_MAX_BODY_SIZE: ByteSize = ByteSize(10 * 1024 * 1024);
/// Request header fields: Envoy's `max_headers_count` and hyper's default (nginx and HAProxy
/// bound bytes rather than fields, and serve 100 fields of ordinary size).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Sum of header names and values.
pub const DEFAULT_MAX_HEADER_BYTES: ByteSize = ByteSize(8 * 1024);
/// Request target (path and query) length; nginx's default line buffer is 8 KiB.
pub const DEFAULT_MAX_URI_LENGTH: ByteSize = ByteSize(8 * 1024);
/// Query parameters per request.
pub const DEFAULT_MAX_QUERY_PARAMS: usize = 100;
/// A request body must average at least this many bytes per second …
pub const DEFAULT_MIN_BODY_RATE: ByteSize = ByteSize(1024);
/// … measured over this much time spent waiting for the client.
pub const DEFAULT_BODY_RATE_WINDOW: HumanDuration = HumanDuration::from_secs(10);
/// Bytes of a JSON or form body the WAF inspects (the rest streams through unread).
pub const DEFAULT_WAF_BODY_INSPECT: ByteSize = ByteSize(64 * 1024);
/// Upper bounds a config may ask for.
pub const MAX_HEADER_BYTES_LIMIT: u64 = 1024 * 1024;
pub const MAX_URI_LENGTH_LIMIT: u64 = 64 * 1024;
pub const MAX_HEADERS_LIMIT: usize = 10_000;
pub const MAX_WAF_BODY_INSPECT: u64 = 1024 * 1024;

/// `security:` — edge protection, every check with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `false` turns off every check of this section (hyper's own hard limits remain).
    pub enabled: bool,
    /// Who the client is when proxies or load balancers stand in front.
    pub client_ip: ClientIpConfig,
    /// Listener level: connections beyond this per client IP are closed at once (0 = no limit).
    pub max_connections_per_ip: u32,
    pub limits: RequestLimitsConfig,
    pub slow_clients: SlowClientsConfig,
    pub ip_rules: IpRulesConfig,
    pub waf: WafConfig,
    pub bots: BotsConfig,
    pub protocol: ProtocolConfig,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_ip: ClientIpConfig::default(),
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            limits: RequestLimitsConfig::default(),
            slow_clients: SlowClientsConfig::default(),
            ip_rules: IpRulesConfig::default(),
            waf: WafConfig::default(),
            bots: BotsConfig::default(),
            protocol: ProtocolConfig::default(),
        }
    }
}

/// What the gateway forwards of the protocol elements backends read differently from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// Listener level: header field names with `_` (which CGI and WSGI turn into the same
    /// variable as the `-` spelling, so `X_Forwarded_For` would pass for `X-Forwarded-For`).
    pub headers_with_underscores: UnderscoreAction,
    /// Listener level: a `%2F` in the path is kept as it came (routing still reads it as `/`),
    /// or refused with 400.
    pub escaped_slashes: EscapedSlashes,
    /// Route level: the `Upgrade` protocols forwarded (case-insensitive tokens); others are
    /// removed from the request. `h2c` is never forwarded.
    pub upgrades: Vec<String>,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            headers_with_underscores: UnderscoreAction::Drop,
            escaped_slashes: EscapedSlashes::Keep,
            upgrades: vec!["websocket".to_string()],
        }
    }
}

/// What happens to a request header whose name contains `_` (nginx: `underscores_in_headers`,
/// Envoy: `headers_with_underscores_action`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreAction {
    /// The field is removed; the request goes on.
    #[default]
    Drop,
    /// 400.
    Reject,
    /// Forwarded as it came.
    Allow,
}

/// What happens to a path with an escaped slash (`%2F`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Forwarded as `%2F`.
    #[default]
    Keep,
    /// 400 (Envoy's `REJECT_REQUEST`).
    Reject,
}

/// Where the client address comes from (listener level).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIpConfig {
    /// CIDRs of proxies whose forwarding header is believed. Empty: the socket peer (or the
    /// PROXY protocol source) is the client and forwarding headers from clients are dropped.
    pub trusted_proxies: Vec<String>,
    pub header: ForwardedHeader,
}

/// Which header a trusted proxy reports the client in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…`.
    Forwarded,
}

/// Request size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimitsConfig {
    /// 413 beyond this (route level).
    pub max_body_size: ByteSize,
    /// 431 beyond this many header fields (listener level).
    pub max_headers: usize,
    /// 431 when names plus values exceed this (listener level).
    pub max_header_bytes: ByteSize,
    /// 414 when the request target is longer (listener level).
    pub max_uri_length: ByteSize,
    /// 400 beyond this many query parameters (route level).
    pub max_query_params: usize,
}

impl Default for RequestLimitsConfig {
    fn default() -> Self {
        Self {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_uri_length: DEFAULT_MAX_URI_LENGTH,
            max_query_params: DEFAULT_MAX_QUERY_PARAMS,
        }
    }
}

/// Slowloris and slow-POST protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowClientsConfig {
    /// Listener level: complete request headers within this time; absent = `server.header_read_timeout`.
    pub header_timeout: Option<HumanDuration>,
    /// Route level: bytes per second a request body must average (0 = no minimum) …
    pub min_body_rate: ByteSize,
    /// … over each window of time spent waiting for the client.
    pub body_rate_window: HumanDuration,
}

impl Default for SlowClientsConfig {
    fn default() -> Self {
        Self {
            header_timeout: None,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            body_rate_window: DEFAULT_BODY_RATE_WINDOW,
        }
    }
}

/// Client IP allow and deny lists (route level). Deny wins; a non-empty allow list admits only
/// its members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpRulesConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// SQL injection and XSS detection (route level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WafConfig {
    pub mode: WafMode,
    pub sqli: bool,
    pub xss: bool,
    /// Which parts of a request are inspected.
    pub inspect: Vec<WafTarget>,
    /// Headers never inspected, on top of Authorization, Proxy-Authorization and Host.
    pub skip_headers: Vec<String>,
    /// Bytes of a JSON or urlencoded-form body inspected; the rest is not read by the WAF.
    pub max_body_inspect: ByteSize,
}

impl Default for WafConfig {
    fn default() -> Self {
        Self {
            mode: WafMode::Off,
            sqli: true,
            xss: true,
            inspect: vec![
                WafTarget::Path,
                WafTarget::Query,
                WafTarget::Headers,
                WafTarget::Body,
            ],
            skip_headers: Vec::new(),
            max_body_inspect: DEFAULT_WAF_BODY_INSPECT,
        }
    }
}

/// What the WAF does with a detection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WafMode {
    #[default]
    Off,
    /// Log and count, let the request through.
    Detect,
    /// 403 naming the rule.
    Block,
}

/// A part of a request the WAF reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WafTarget {
    Path,
    Query,
    Headers,
    Body,
}

/// User-Agent rules (route level). `allow` wins over `deny` and the built-in list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotsConfig {
    /// Refuse the built-in list of scanners and attack tools (sqlmap, nikto, masscan, …).
    pub block_known: bool,
    /// Regexes (unanchored, case-insensitive) on the User-Agent.
    pub deny: Vec<String>,
    pub allow: Vec<String>,
    /// Refuse requests without a User-Agent.
    pub block_missing: bool,
}

impl Default for BotsConfig {
    fn default() -> Self {
        Self {
            block_known: true,
            deny: Vec::new(),
            allow: Vec::new(),
            block_missing: false,
        }
    }
}

/// A size in bytes: a number, or a string with a unit (`512`, `8KB`, `10MiB`; K, KB and KiB
/// all mean 1024, as in nginx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn get(self) -> u64 {
        self.0
    }

    /// As `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size (e.g. 512, 8KB, 10MiB)"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => return Err(format!("unknown size unit {other:?} (use B, KB, MB or GB)")),
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}")
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes: a number or a string such as \"8KB\" or \"10MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}
