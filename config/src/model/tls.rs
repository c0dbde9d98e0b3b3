//! The `tls:` block of a listener: certificates chosen by SNI, protocol versions, ALPN,
//! optional client certificates, HSTS.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::HumanDuration;

/// A year, the HSTS max-age recommended for preload lists.
pub const DEFAULT_HSTS_MAX_AGE: HumanDuration = HumanDuration::from_secs(365 * 24 * 3600);
pub const DEFAULT_HANDSHAKE_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// The first one is the default (no SNI, or no name matched).
    pub certificates: Vec<CertificateConfig>,
    /// `1.3` (default: TLS 1.3 only) or `1.2` (also TLS 1.2 with AEAD ECDHE suites).
    #[serde(default)]
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM chain, leaf first.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: String,
    /// SNI names (`*.example.com` allowed); default: the certificate's DNS SANs.
    #[serde(default)]
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca: String,
    /// Refuse the handshake without a client certificate (default true).
    #[serde(default = "default_true")]
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    #[serde(default = "default_hsts_max_age")]
    pub max_age: HumanDuration,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    #[default]
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

impl Serialize for TlsVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;
        impl Visitor<'_> for VersionVisitor {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"1.2\" or \"1.3\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TlsVersion, E> {
                match v
                    .trim()
                    .trim_start_matches("TLS")
                    .trim_start_matches("tls")
                    .trim()
                {
                    "1.2" => Ok(TlsVersion::Tls12),
                    "1.3" => Ok(TlsVersion::Tls13),
                    _ => Err(E::custom(format!(
                        "unsupported TLS version {v:?}; use 1.2 or 1.3"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(VersionVisitor)
    }
}

fn default_alpn() -> Vec<String> {
    vec!["h2".to_string(), "http/1.1".to_string()]
}

fn default_true() -> bool {
    true
}

fn default_hsts_max_age() -> HumanDuration {
    DEFAULT_HSTS_MAX_AGE
}

fn default_handshake_timeout() -> HumanDuration {
    DEFAULT_HANDSHAKE_TIMEOUT
}

/// `upstreams[].tls`: re-encrypt to the upstream (edge → backend over TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM bundle of the CAs the upstream's certificate must chain to.
    pub ca: String,
    /// The name sent as SNI and checked against the certificate; default: the target's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Present this client certificate (mutual TLS to a backend).
    #[serde(default)]
    pub client_certificate: Option<CertificateConfig>,
}

/// `upstreams[].mesh`: the upstream is a mesh service; connect with this node's mesh identity
/// and accept only the service's SPIFFE id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamMeshConfig {
    pub service: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "default".to_string()
}
