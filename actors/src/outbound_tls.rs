//! A configured outbound `tls:` block (identity provider, Redis, Consul, OTLP) turned into the
//! rustls client config its connections use: files read when the config is applied, the
//! platform's trust store when no CA is named, the field path in every error; and a failed
//! handshake explained together with the setting to fix. The one place these are built.

use std::sync::Arc;

use meshgate_config::ConfigError;
use meshgate_config::auth::ClientSecret;
use meshgate_config::outbound_tls::OutboundTlsConfig;
use meshgate_pki::{EdgeCertificate, OutboundTrust, certificates_from_pem, handshake_failure};
use rustls::pki_types::ServerName;

/// A loaded outbound TLS setting.
#[derive(Clone)]
pub struct OutboundTls {
    pub client_config: Arc<rustls::ClientConfig>,
    /// The configured `server_name` (SNI and the name checked); `None`: the URL's host.
    pub server_name: Option<ServerName<'static>>,
    /// Where it is configured (`auth.jwt[0].jwks.tls`), for messages.
    pub field: Arc<str>,
}

impl std::fmt::Debug for OutboundTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundTls")
            .field("field", &self.field)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl OutboundTls {
    /// Read `tls`'s files (or the platform's roots when `tls` or its `ca` is absent) into a
    /// client config offering `alpn`. `field` is where `tls` is (or would be) configured.
    pub fn load(
        tls: Option<&OutboundTlsConfig>,
        field: &str,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Self, Vec<ConfigError>> {
        let default = OutboundTlsConfig::default();
        let tls = tls.unwrap_or(&default);
        let mut errors = Vec::new();
        let roots = match &tls.ca {
            Some(path) => read(path, &format!("{field}.ca"), &mut errors).and_then(|pem| {
                certificates_from_pem(&pem)
                    .map_err(|e| {
                        errors.push(ConfigError::new(format!("{field}.ca"), e.to_string()))
                    })
                    .ok()
            }),
            None => None,
        };
        let client = tls.client_certificate.as_ref().and_then(|c| {
            let at = format!("{field}.client_certificate");
            let cert = read(&c.cert, &format!("{at}.cert"), &mut errors)?;
            let key = read(&c.key, &format!("{at}.key"), &mut errors)?;
            EdgeCertificate::from_pem(&cert, &key, vec![])
                .map_err(|e| errors.push(ConfigError::new(at, e.to_string())))
                .ok()
        });
        let server_name = tls.server_name.as_ref().and_then(|name| {
            ServerName::try_from(name.clone())
                .map_err(|e| {
                    errors.push(ConfigError::new(
                        format!("{field}.server_name"),
                        e.to_string(),
                    ))
                })
                .ok()
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        let trust = match &roots {
            Some(roots) => OutboundTrust::Bundle(roots),
            None => OutboundTrust::Platform,
        };
        let at = if tls.ca.is_some() {
            format!("{field}.ca")
        } else {
            field.to_string()
        };
        let client_config = meshgate_pki::outbound_client_config(trust, client.as_ref(), alpn)
            .map_err(|e| vec![ConfigError::new(at, e.to_string())])?;
        Ok(Self {
            client_config: Arc::new(client_config),
            server_name,
            field: field.into(),
        })
    }

    /// `field: <what failed and what to set>` when `error` is a failed TLS handshake.
    pub fn explain(&self, error: &(dyn std::error::Error + 'static)) -> Option<String> {
        handshake_failure(error).map(|failure| format!("{}: {failure}", self.field))
    }
}

/// An error with its whole source chain (`client error (Connect): tcp connect error: …`):
/// hyper's top-level messages alone say too little to act on.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    let mut depth = 0;
    while let Some(e) = current
        && depth < 8
    {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = e.source();
        depth += 1;
    }
    text
}

/// A secret of an outbound connection (introspection client secret, Redis password): as
/// written, or the file's content without one trailing newline (what `echo` and most secret
/// stores leave). `field` names the file's setting in errors.
pub fn read_secret(secret: &ClientSecret, field: &str) -> Result<String, String> {
    match secret {
        ClientSecret::Value(value) => Ok(value.clone()),
        ClientSecret::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{field}: cannot read {path}: {e}"))?;
            let value = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            if value.is_empty() {
                return Err(format!("{field}: {path} is empty"));
            }
            Ok(value.to_string())
        }
    }
}

fn read(path: &str, field: &str, errors: &mut Vec<ConfigError>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            errors.push(ConfigError::new(field, format!("cannot read {path}: {e}")));
            None
        }
    }
}
