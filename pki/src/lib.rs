//! meshgate's mesh PKI: a CA per trust domain, SPIFFE X509-SVID leaves (issued directly or from a
//! CSR), rustls mTLS configs with hot-swappable certificates and SPIFFE ID checks, peer identity,
//! certificate inspection, rotation policy and PEM files on disk. No sockets, no timers.
//!
//! ```
//! use std::sync::Arc;
//! use meshgate_pki::{
//!     CaOptions, CertificateAuthority, ExpectedServer, LeafRequest, SpiffeId, SwappableCert,
//!     TlsOptions, client_config, server_config,
//! };
//!
//! # fn main() -> Result<(), meshgate_pki::PkiError> {
//! let ca = CertificateAuthority::new("mesh.local", &CaOptions::default())?;
//! let bundle = ca.trust_bundle();
//!
//! let orders = SpiffeId::service("mesh.local", "shop", "orders")?;
//! let cert = Arc::new(SwappableCert::new(ca.issue(&LeafRequest::new(orders.clone()))?));
//! let server = server_config(Arc::clone(&cert), &bundle, &TlsOptions::default())?;
//!
//! let client_id = SpiffeId::service("mesh.local", "shop", "frontend")?;
//! let client_cert = Arc::new(SwappableCert::new(ca.issue(&LeafRequest::new(client_id))?));
//! let client = client_config(client_cert, &bundle, ExpectedServer::Id(orders.clone()), &TlsOptions::default())?;
//!
//! // Later, the CertRotator renews: new handshakes present the new leaf, open ones are untouched.
//! cert.store(ca.issue(&LeafRequest::new(orders))?);
//! # let _ = (server, client);
//! # Ok(())
//! # }
//! ```
//!
//! After a handshake, [`peer_spiffe_id`] (or [`PeerIdentity::from_chain`]) on
//! `conn.peer_certificates()` tells who the peer is; authorizing it is the caller's job.

mod bundle;
mod ca;
mod csr;
mod edge;
mod error;
mod files;
mod identity;
mod inspect;
mod leaf;
mod outbound;
mod pem_text;
mod pkcs8;
mod profile;
mod rotation;
mod spiffe;
mod tls;

#[cfg(test)]
mod test_support;

pub use bundle::TrustBundle;
pub use ca::{CaOptions, CaPem, CertificateAuthority};
pub use csr::{IssuedChain, PendingLeaf};
pub use edge::{
    EdgeCertificate, EdgeTlsOptions, SniResolver, certificates_from_pem, edge_server_config,
    upstream_client_config,
};
pub use error::PkiError;
pub use files::{CaFiles, LeafFiles, init_ca_dir, issue_leaf_to_dir};
pub use identity::{PeerIdentity, peer_spiffe_id};
pub use inspect::{CertInfo, inspect, inspect_chain};
pub use leaf::{CertifiedLeaf, LeafRequest};
pub use outbound::{HandshakeFailure, OutboundTrust, handshake_failure, outbound_client_config};
pub use profile::{
    DEFAULT_BACKDATE, DEFAULT_INTERMEDIATE_LIFETIME, DEFAULT_LEAF_LIFETIME, DEFAULT_ROOT_LIFETIME,
    KeyAlgorithm, Validity,
};
pub use rotation::{
    DEFAULT_RENEWAL_FRACTION, DEFAULT_RENEWAL_JITTER, RenewalPolicy, issue_moment, renewal_at,
};
pub use spiffe::SpiffeId;
pub use tls::{
    ALPN_H2, ALPN_HTTP_1_1, ExpectedServer, SwappableCert, TlsOptions, anonymous_client_config,
    client_config, optional_client_auth_server_config, server_config,
};
