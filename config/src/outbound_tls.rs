//! The `tls:` block of a connection meshgate opens to a system outside the mesh (a JWKS or
//! introspection endpoint, Redis, Consul, an OTLP collector): which CAs to trust (the
//! platform's trust store unless `ca` names a bundle), the name to check, and an optional
//! client certificate. Same field names as `upstreams[].tls`. Model and validation only; the
//! files are read when the connection's client is built.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, FieldPath};

/// How meshgate verifies (and authenticates to) a server it connects to over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundTlsConfig {
    /// PEM bundle of the CAs the server's certificate must chain to. Unset: the platform's
    /// trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` or the distribution's bundle).
    #[serde(default)]
    pub ca: Option<String>,
    /// The name sent as SNI and checked against the certificate (RFC 6125); default: the
    /// URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Present this certificate (mutual TLS).
    #[serde(default)]
    pub client_certificate: Option<ClientCertificateConfig>,
}

/// A client certificate: PEM chain (leaf first) and its private key, as files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateConfig {
    pub cert: String,
    pub key: String,
}

/// Every problem in one `tls:` block at `path`.
pub fn validate_outbound_tls(tls: &OutboundTlsConfig, path: &FieldPath) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if tls.ca.as_deref() == Some("") {
        errors.push(path.field("ca").error(
            "must name a PEM file (leave ca out to trust the platform's certificate store)",
        ));
    }
    if let Some(name) = &tls.server_name
        && !server_name_ok(name)
    {
        errors.push(
            path.field("server_name")
                .error(format!("{name:?} is not a DNS name or IP address")),
        );
    }
    if let Some(c) = &tls.client_certificate {
        let cp = path.field("client_certificate");
        for (field, value) in [("cert", &c.cert), ("key", &c.key)] {
            if value.is_empty() {
                errors.push(cp.field(field).error("must name a PEM file"));
            }
        }
    }
    errors
}

/// RFC 1123 host names (letters, digits, `-`, dots; labels of 1-63; `_` too, as rustls allows
/// it) or an IP address: what SNI and certificate name checks accept.
fn server_name_ok(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(tls: &OutboundTlsConfig) -> Vec<String> {
        validate_outbound_tls(tls, &FieldPath::root().field("x").field("tls"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn empty_block_means_platform_roots() {
        assert!(problems(&OutboundTlsConfig::default()).is_empty());
    }

    #[test]
    fn bad_values_name_their_field() {
        let tls = OutboundTlsConfig {
            ca: Some(String::new()),
            server_name: Some("not a name".into()),
            client_certificate: Some(ClientCertificateConfig {
                cert: "c.pem".into(),
                key: String::new(),
            }),
        };
        let p = problems(&tls);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("x.tls.ca: "), "{p:?}");
        assert!(p[1].starts_with("x.tls.server_name: "), "{p:?}");
        assert!(p[2].starts_with("x.tls.client_certificate.key: "), "{p:?}");
    }

    #[test]
    fn server_names_and_ips_are_accepted() {
        for name in ["idp.example.com", "localhost", "127.0.0.1", "::1", "a-b.c."] {
            assert!(server_name_ok(name), "{name}");
        }
        for name in ["", "-a.b", "a..b", "a/b.c", "a b"] {
            assert!(!server_name_ok(name), "{name}");
        }
    }
}
