//! Client TLS for connections meshgate opens to systems outside the mesh (identity providers,
//! Redis, Consul, OTLP collectors) and to re-encrypted upstreams: web PKI verification of the
//! server's chain and name (RFC 6125) against a configured CA bundle or the platform's trust
//! store, an optional client certificate, and failed handshakes explained in plain words.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

use crate::PkiError;
use crate::edge::EdgeCertificate;
use crate::tls::crypto_provider;

/// Which CAs a client trusts.
#[derive(Debug, Clone, Copy)]
pub enum OutboundTrust<'a> {
    /// The platform's store: `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else the
    /// distribution's bundle (read with rustls-native-certs).
    Platform,
    /// Exactly these CAs (a configured bundle).
    Bundle(&'a [CertificateDer<'static>]),
}

/// A client config that verifies the server's chain against `trust` and its name against the
/// SNI the caller connects with, optionally presenting a client certificate.
pub fn outbound_client_config(
    trust: OutboundTrust<'_>,
    client_cert: Option<&EdgeCertificate>,
    alpn: Vec<Vec<u8>>,
) -> Result<ClientConfig, PkiError> {
    let roots = match trust {
        OutboundTrust::Platform => platform_roots()?,
        OutboundTrust::Bundle(roots) => bundle_roots(roots)?,
    };
    let provider = crypto_provider();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier);
    let mut config = match client_cert {
        Some(cert) => builder
            .with_client_cert_resolver(Arc::new(crate::edge::FixedClientCert(cert.key.clone()))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Ok(config)
}

fn bundle_roots(roots: &[CertificateDer<'static>]) -> Result<RootCertStore, PkiError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    Ok(store)
}

/// The platform's trust anchors. Certificates the platform lists but webpki cannot use are
/// skipped (as browsers do); an empty result is an error, since nothing could ever verify.
fn platform_roots() -> Result<RootCertStore, PkiError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (_added, _unusable) = store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let reasons: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(PkiError::Certificate {
            what: "platform trust store",
            reason: if reasons.is_empty() {
                "no CA certificates found (set SSL_CERT_FILE, or give a CA bundle)".into()
            } else {
                format!("no usable CA certificates: {}", reasons.join("; "))
            },
        });
    }
    Ok(store)
}

/// Why a TLS handshake with a server failed, in words that point at the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    #[error(
        "the server's certificate is not signed by a trusted CA (set ca to the bundle that signed it): {0}"
    )]
    UnknownIssuer(String),
    #[error("the server's certificate has expired or is not valid yet: {0}")]
    Expired(String),
    #[error(
        "the server's certificate is not valid for the name checked (connect by a name it lists, or set server_name): {0}"
    )]
    WrongName(String),
    #[error("the server refused our client certificate (check client_certificate): {0}")]
    ClientCertificateRefused(String),
    #[error("the server's certificate was refused: {0}")]
    BadCertificate(String),
    #[error("TLS handshake failed: {0}")]
    Other(String),
}

/// Find the rustls error in `error`'s source chain (looking inside `io::Error`s, which is how
/// tokio-rustls reports handshake failures) and say what it means.
pub fn handshake_failure(error: &(dyn std::error::Error + 'static)) -> Option<HandshakeFailure> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut depth = 0;
    while let Some(e) = current
        && depth < 16
    {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(classify(tls));
        }
        // io::Error::source() skips the error it wraps: look at it directly.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(classify(tls));
            }
            current = Some(inner);
        } else {
            current = e.source();
        }
        depth += 1;
    }
    None
}

fn classify(error: &rustls::Error) -> HandshakeFailure {
    let text = error.to_string();
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            // A trusted CA of the same name but another key (a regenerated CA) fails the
            // signature check rather than the issuer lookup: the same fix either way.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                HandshakeFailure::UnknownIssuer(text)
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => HandshakeFailure::Expired(text),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                HandshakeFailure::WrongName(text)
            }
            _ => HandshakeFailure::BadCertificate(text),
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied,
        ) => HandshakeFailure::ClientCertificateRefused(text),
        _ => HandshakeFailure::Other(text),
    }
}

#[cfg(test)]
mod tests;
