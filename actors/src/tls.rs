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
    /// Each served certificate's first name and expiry (for the expiry gauge).
    pub certificates: Vec<(String, std::time::SystemTime)>,
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
        certificates: certificates
            .iter()
            .map(|c| {
                let name = c
                    .names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| c.info.subject.clone());
                (name, c.info.not_after)
            })
            .collect(),
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

/// How the data plane connects to one upstream over TLS.
pub struct UpstreamTls {
    pub connector: tokio_rustls::TlsConnector,
    /// The SNI (and, for web PKI, the verified name); `None`: the endpoint's host.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// Build the TLS of every upstream that has `tls:` or `mesh:` (index-aligned with
/// `config.upstreams`); all problems, with field paths.
pub fn load_upstreams(
    config: &CompiledConfig,
    mesh: Option<&crate::mesh::MeshIdentity>,
) -> Result<Vec<Option<Arc<UpstreamTls>>>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut loaded = Vec::with_capacity(config.upstreams.len());
    for (i, spec) in config.upstreams.iter().enumerate() {
        match load_upstream(spec, i, mesh) {
            Ok(tls) => loaded.push(tls.map(Arc::new)),
            Err(mut e) => {
                errors.append(&mut e);
                loaded.push(None);
            }
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

fn load_upstream(
    spec: &meshgate_config::UpstreamSpec,
    index: usize,
    mesh: Option<&crate::mesh::MeshIdentity>,
) -> Result<Option<UpstreamTls>, Vec<ConfigError>> {
    use meshgate_config::model::UpstreamProtocol;
    let alpn = match spec.protocol {
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    let base = format!("upstreams[{index}]");
    if let Some(m) = &spec.mesh {
        let at = format!("{base}.mesh");
        let identity = mesh.ok_or_else(|| {
            vec![ConfigError::new(
                at.clone(),
                "this node has no mesh identity (add the mesh section)",
            )]
        })?;
        // Checked like an id (rejects slashes) but matched in either service shape, so that
        // Consul Connect's `…/ns/<ns>/dc/<dc>/svc/<service>` callees are accepted too.
        meshgate_pki::SpiffeId::service(
            identity.spiffe_id.trust_domain(),
            &m.namespace,
            &m.service,
        )
        .map_err(|e| vec![ConfigError::new(at.clone(), e.to_string())])?;
        let expected = meshgate_pki::ExpectedServer::Service {
            trust_domain: identity.spiffe_id.trust_domain().to_string(),
            namespace: m.namespace.clone(),
            service: m.service.clone(),
        };
        let options = meshgate_pki::TlsOptions {
            alpn,
            allow_tls12: false,
        };
        let config = meshgate_pki::client_config(
            identity.cert.clone(),
            &identity.bundle,
            expected,
            &options,
        )
        .map_err(|e| vec![ConfigError::new(at.clone(), e.to_string())])?;
        // The mesh checks the SPIFFE id, not a DNS name; SNI just names the service.
        let sni = format!("{}.{}.mesh", m.service, m.namespace);
        return Ok(Some(UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: rustls::pki_types::ServerName::try_from(sni).ok(),
        }));
    }
    let Some(tls) = &spec.tls else {
        return Ok(None);
    };
    let at = format!("{base}.tls");
    let mut errors = Vec::new();
    let roots = read(&tls.ca, &format!("{at}.ca"), &mut errors).and_then(|pem| {
        certificates_from_pem(&pem)
            .map_err(|e| errors.push(ConfigError::new(format!("{at}.ca"), e.to_string())))
            .ok()
    });
    let client = match &tls.client_certificate {
        Some(c) => {
            let cert = read(
                &c.cert,
                &format!("{at}.client_certificate.cert"),
                &mut errors,
            );
            let key = read(&c.key, &format!("{at}.client_certificate.key"), &mut errors);
            match (cert, key) {
                (Some(cert), Some(key)) => match EdgeCertificate::from_pem(&cert, &key, vec![]) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(ConfigError::new(
                            format!("{at}.client_certificate"),
                            e.to_string(),
                        ));
                        None
                    }
                },
                _ => None,
            }
        }
        None => None,
    };
    let server_name = match &tls.server_name {
        Some(name) => match rustls::pki_types::ServerName::try_from(name.clone()) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(ConfigError::new(format!("{at}.server_name"), e.to_string()));
                None
            }
        },
        None => None,
    };
    let Some(roots) = roots.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let config = meshgate_pki::upstream_client_config(&roots, client.as_ref(), alpn)
        .map_err(|e| vec![ConfigError::new(at.clone(), e.to_string())])?;
    Ok(Some(UpstreamTls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    }))
}
