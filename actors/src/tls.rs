//! Reading a listener's TLS material (certificate and CA files) when a config is applied, into
//! the rustls config the data plane uses. Certificates therefore reload with the config (file
//! change or SIGHUP) without a restart; a broken file rejects the reload with its field path.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use meshgate_config::model::tls::{ListenerTlsConfig, TlsVersion};
use meshgate_config::{CompiledConfig, ConfigError, ListenerSpec};
use meshgate_pki::{EdgeCertificate, EdgeTlsOptions, certificates_from_pem, edge_server_config};

/// A listener's TLS, ready to accept with.
#[derive(Debug)]
pub struct ListenerTls {
    pub server_config: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    /// The `Strict-Transport-Security` value to add to responses, when configured.
    pub hsts: Option<HeaderValue>,
}

/// Each TLS listener's name with its loaded TLS.
pub type LoadedTls = Vec<(Arc<str>, Arc<ListenerTls>)>;

/// Load the TLS of every listener that has one; all problems, with field paths.
pub fn load_all(config: &CompiledConfig) -> Result<LoadedTls, Vec<ConfigError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for listener in &config.listeners {
        match load(listener) {
            Ok(Some(tls)) => loaded.push((listener.name.clone(), Arc::new(tls))),
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

fn load(listener: &ListenerSpec) -> Result<Option<ListenerTls>, Vec<ConfigError>> {
    let Some(tls) = &listener.tls else {
        return Ok(None);
    };
    let base = format!("{}.tls", listener.field_path);
    let mut errors = Vec::new();
    let mut certificates = Vec::new();
    for (i, c) in tls.certificates.iter().enumerate() {
        let at = format!("{base}.certificates[{i}]");
        let cert = read(&c.cert, &format!("{at}.cert"), &mut errors);
        let key = read(&c.key, &format!("{at}.key"), &mut errors);
        if let (Some(cert), Some(key)) = (cert, key) {
            match EdgeCertificate::from_pem(&cert, &key, c.server_names.clone()) {
                Ok(certificate) => certificates.push(certificate),
                Err(e) => errors.push(ConfigError::new(at, e.to_string())),
            }
        }
    }
    let client_roots = match &tls.client_auth {
        Some(auth) => {
            let at = format!("{base}.client_auth.ca");
            read(&auth.ca, &at, &mut errors).and_then(|pem| match certificates_from_pem(&pem) {
                Ok(roots) => Some(roots),
                Err(e) => {
                    errors.push(ConfigError::new(at, e.to_string()));
                    None
                }
            })
        }
        None => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let options = EdgeTlsOptions {
        allow_tls12: tls.min_version == TlsVersion::Tls12,
        alpn: tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
        client_roots,
        client_cert_required: tls.client_auth.as_ref().is_some_and(|a| a.required),
    };
    let server_config = edge_server_config(&certificates, &options)
        .map_err(|e| vec![ConfigError::new(base.clone(), e.to_string())])?;
    Ok(Some(ListenerTls {
        server_config: Arc::new(server_config),
        handshake_timeout: tls.handshake_timeout.get(),
        hsts: hsts_value(tls),
    }))
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

fn hsts_value(tls: &ListenerTlsConfig) -> Option<HeaderValue> {
    let hsts = tls.hsts.as_ref()?;
    let mut value = format!("max-age={}", hsts.max_age.get().as_secs());
    if hsts.include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if hsts.preload {
        value.push_str("; preload");
    }
    HeaderValue::from_str(&value).ok()
}
