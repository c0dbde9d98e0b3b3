//! Edge TLS (north-south): server configs for public listeners — several certificates chosen
//! by SNI (exact names and `*.` wildcards, with a default), TLS 1.3 by default, optional client
//! certificates — and client configs for re-encrypting to upstreams. Ordinary web PKI
//! certificates, any key format (PKCS#8, PKCS#1 RSA, SEC1 EC). Only the ring provider is used.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::PkiError;
use crate::inspect::CertInfo;
use crate::tls::crypto_provider;

/// One certificate (chain PEM + key PEM) and the names it answers for.
#[derive(Clone)]
pub struct EdgeCertificate {
    pub key: Arc<CertifiedKey>,
    /// SNI names (lowercase; `*.example.com` allowed). From the certificate's DNS SANs (or
    /// CN) when not configured.
    pub names: Vec<String>,
    pub info: CertInfo,
}

impl fmt::Debug for EdgeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeCertificate")
            .field("names", &self.names)
            .field("subject", &self.info.subject)
            .finish()
    }
}

impl EdgeCertificate {
    /// Parse a chain (leaf first) and its private key. `names` empty = take the SANs.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        names: Vec<String>,
    ) -> Result<Self, PkiError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| PkiError::Pem {
                what: "certificate chain",
                reason: e.to_string(),
            })?;
        let first = chain.first().ok_or_else(|| PkiError::Pem {
            what: "certificate chain",
            reason: "no CERTIFICATE block".into(),
        })?;
        let info = CertInfo::from_der(first)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PkiError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
        let certified =
            CertifiedKey::from_der(chain, key, &crypto_provider()).map_err(|e| PkiError::Key {
                what: "private key",
                reason: match e {
                    rustls::Error::InconsistentKeys(_) => "does not match the certificate".into(),
                    other => format!("unusable key: {other}"),
                },
            })?;
        let names = if names.is_empty() {
            let mut from_cert = info.dns_sans.clone();
            if from_cert.is_empty() {
                from_cert.extend(info.common_name.clone());
            }
            from_cert
        } else {
            names
        };
        Ok(Self {
            key: Arc::new(certified),
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
            info,
        })
    }
}

/// Chooses a certificate by SNI: exact name, then `*.parent` (one label, RFC 6125 §6.4.3),
/// then the default (the first certificate), also used when the client sends no SNI.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(certificates: &[EdgeCertificate]) -> Result<Self, PkiError> {
        let default = certificates
            .first()
            .ok_or_else(|| PkiError::Certificate {
                what: "edge certificates",
                reason: "at least one certificate is required".into(),
            })?
            .key
            .clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certificates {
            for name in &cert.names {
                let slot = match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                };
                // The first certificate listed for a name wins.
                slot.or_insert_with(|| cert.key.clone());
            }
        }
        Ok(Self {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for a server name (lowercase).
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(name) {
            return key.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return key.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(|n| n.to_ascii_lowercase());
        Some(self.pick(name.as_deref()))
    }
}

/// Settings of an edge listener's TLS.
#[derive(Debug, Clone)]
pub struct EdgeTlsOptions {
    /// Also accept TLS 1.2 (AEAD ECDHE suites only, which is all rustls offers).
    pub allow_tls12: bool,
    pub alpn: Vec<Vec<u8>>,
    /// Verify client certificates against these roots.
    pub client_roots: Option<Vec<CertificateDer<'static>>>,
    /// With `client_roots`: refuse clients without a certificate.
    pub client_cert_required: bool,
}

/// The server config of an edge listener.
pub fn edge_server_config(
    certificates: &[EdgeCertificate],
    options: &EdgeTlsOptions,
) -> Result<ServerConfig, PkiError> {
    let provider = crypto_provider();
    let versions = if options.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12][..]
    } else {
        &[&rustls::version::TLS13][..]
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let resolver = Arc::new(SniResolver::new(certificates)?);
    let mut config = match &options.client_roots {
        Some(roots) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider);
            let verifier = if options.client_cert_required {
                verifier.build()?
            } else {
                verifier.allow_unauthenticated().build()?
            };
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver)
        }
        None => builder.with_no_client_auth().with_cert_resolver(resolver),
    };
    config.alpn_protocols = options.alpn.clone();
    Ok(config)
}

fn root_store(roots: &[CertificateDer<'static>]) -> Result<RootCertStore, PkiError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    Ok(store)
}

/// Parse every certificate of a PEM text (a CA bundle).
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Pem {
            what: "CA bundle",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: "CA bundle",
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// A client config for TLS to an upstream: verify its chain against `roots` (and its name
/// against the SNI the caller connects with), optionally presenting a client certificate.
pub fn upstream_client_config(
    roots: &[CertificateDer<'static>],
    client_cert: Option<&EdgeCertificate>,
    alpn: Vec<Vec<u8>>,
) -> Result<ClientConfig, PkiError> {
    crate::outbound::outbound_client_config(
        crate::outbound::OutboundTrust::Bundle(roots),
        client_cert,
        alpn,
    )
}

/// Always presents the same client certificate.
#[derive(Debug)]
pub(crate) struct FixedClientCert(pub(crate) Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
