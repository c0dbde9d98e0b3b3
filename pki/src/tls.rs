//! rustls configs for mesh mTLS: a server that requires client certificates from the trust
//! bundle, a client that checks the server's SPIFFE ID, both with hot-swappable leaves.
//! Only the ring crypto provider is used.
//!
//! Leaf rotation needs no new config: [`SwappableCert::store`]. A new trust bundle does: build
//! new configs from it and publish them (the `CertRotator` swaps its `ArcSwap<ServerConfig>`);
//! connections set up under the old config keep it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

use crate::{PkiError, SpiffeId, TrustBundle};

mod swap;
mod verifier;

pub use swap::SwappableCert;
use verifier::SpiffeServerVerifier;

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Options shared by [`server_config`] and [`client_config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// ALPN protocols in preference order (default `h2`, `http/1.1`); empty disables ALPN.
    pub alpn: Vec<Vec<u8>>,
    /// Also accept TLS 1.2 (default: TLS 1.3 only).
    pub allow_tls12: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            alpn: vec![ALPN_H2.to_vec(), ALPN_HTTP_1_1.to_vec()],
            allow_tls12: false,
        }
    }
}

impl TlsOptions {
    fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        static TLS13_AND_TLS12: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        if self.allow_tls12 {
            TLS13_AND_TLS12
        } else {
            TLS13_ONLY
        }
    }
}

/// Whom a client accepts as the server, after the chain verified against the trust bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedServer {
    /// Exactly this SPIFFE ID.
    Id(SpiffeId),
    /// Any SPIFFE ID in this trust domain.
    TrustDomain(String),
    /// This service of this namespace in this trust domain, in either service shape:
    /// meshgate's `/ns/<ns>/svc/<service>` or Consul Connect's `/ns/<ns>/dc/<any>/svc/<service>`
    /// (a service keeps its name across datacenters).
    Service {
        trust_domain: String,
        namespace: String,
        service: String,
    },
}

impl ExpectedServer {
    /// `Ok` when `presented` is acceptable.
    pub fn check(&self, presented: &SpiffeId) -> Result<(), PkiError> {
        let accepted = match self {
            ExpectedServer::Id(expected) => presented == expected,
            ExpectedServer::TrustDomain(domain) => presented.trust_domain() == domain,
            ExpectedServer::Service {
                trust_domain,
                namespace,
                service,
            } => {
                presented.trust_domain() == trust_domain
                    && presented.namespace() == Some(namespace.as_str())
                    && presented.service_name() == Some(service.as_str())
            }
        };
        if accepted {
            return Ok(());
        }
        Err(PkiError::UnexpectedPeer {
            expected: match self {
                ExpectedServer::Id(id) => id.to_string(),
                ExpectedServer::TrustDomain(domain) => format!("any ID in trust domain {domain}"),
                ExpectedServer::Service {
                    trust_domain,
                    namespace,
                    service,
                } => format!(
                    "service {service} of namespace {namespace} in trust domain {trust_domain}"
                ),
            },
            actual: presented.to_string(),
        })
    }
}

impl From<SpiffeId> for ExpectedServer {
    fn from(id: SpiffeId) -> Self {
        ExpectedServer::Id(id)
    }
}

/// The crypto provider of every meshgate TLS config: ring (never aws-lc).
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config that presents `cert` and REQUIRES a client certificate chaining to `trust`.
///
/// The client's identity is read after the handshake with
/// [`peer_spiffe_id`](crate::peer_spiffe_id)`(conn.peer_certificates())`; authorizing it is
/// the caller's job. Swap the leaf through `cert`; a new trust bundle needs a new config.
pub fn server_config(
    cert: Arc<SwappableCert>,
    trust: &TrustBundle,
    options: &TlsOptions,
) -> Result<ServerConfig, PkiError> {
    mtls_server_config(cert, trust, options, true)
}

fn mtls_server_config(
    cert: Arc<SwappableCert>,
    trust: &TrustBundle,
    options: &TlsOptions,
    client_cert_required: bool,
) -> Result<ServerConfig, PkiError> {
    let provider = crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(trust.root_store()?, Arc::clone(&provider));
    let client_verifier = if client_cert_required {
        verifier.build()?
    } else {
        verifier.allow_unauthenticated().build()?
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(options.versions())?
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = options.alpn.clone();
    Ok(config)
}

/// A client config that presents `cert`, verifies the server chain against `trust` and accepts
/// the server only if its SPIFFE ID satisfies `expected`.
///
/// The `ServerName` passed to `connect` is sent as SNI but not checked against the certificate:
/// in the mesh the identity is the URI SAN (X509-SVID §5), not a DNS name.
pub fn client_config(
    cert: Arc<SwappableCert>,
    trust: &TrustBundle,
    expected: ExpectedServer,
    options: &TlsOptions,
) -> Result<ClientConfig, PkiError> {
    spiffe_client_config(Some(cert), trust, expected, options)
}

fn spiffe_client_config(
    cert: Option<Arc<SwappableCert>>,
    trust: &TrustBundle,
    expected: ExpectedServer,
    options: &TlsOptions,
) -> Result<ClientConfig, PkiError> {
    let provider = crypto_provider();
    let verifier = SpiffeServerVerifier::new(
        trust.root_store()?,
        expected,
        provider.signature_verification_algorithms,
    );
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(options.versions())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match cert {
        Some(cert) => builder.with_client_cert_resolver(cert),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.clone();
    Ok(config)
}

#[cfg(test)]
mod tests;

/// Like [`client_config`] but presenting no certificate: how a sidecar reaches the CA service
/// before it has one (it authenticates with a bootstrap token instead).
pub fn anonymous_client_config(
    trust: &TrustBundle,
    expected: ExpectedServer,
    options: &TlsOptions,
) -> Result<ClientConfig, PkiError> {
    spiffe_client_config(None, trust, expected, options)
}

/// A server config presenting `cert` that ASKS for a client certificate (verified against
/// `trust` when given) but lets clients without one through — the CA service, where first-time
/// sidecars authenticate with a token and renewing ones with their current certificate.
pub fn optional_client_auth_server_config(
    cert: Arc<SwappableCert>,
    trust: &TrustBundle,
    options: &TlsOptions,
) -> Result<ServerConfig, PkiError> {
    mtls_server_config(cert, trust, options, false)
}
