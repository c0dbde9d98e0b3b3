//! `SwappableCert`: the leaf a TLS config presents, replaceable at runtime without touching
//! open connections (new handshakes read the current one through `arc-swap`).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::CertifiedLeaf;

/// The current leaf of a server or client config; [`SwappableCert::store`] hot-swaps it.
///
/// Used as both `ResolvesServerCert` and `ResolvesClientCert`. A handshake takes one lock-free
/// load; connections already established keep the certificate they were set up with. A TLS
/// session resumed after a swap still reports the certificate of its original full handshake
/// (resumption tickets outlive a swap until they expire).
///
/// ```
/// # use std::sync::Arc;
/// # use meshgate_pki::*;
/// # fn main() -> Result<(), PkiError> {
/// # let ca = CertificateAuthority::new("mesh.local", &CaOptions::default())?;
/// # let id = SpiffeId::service("mesh.local", "shop", "orders")?;
/// let cert = Arc::new(SwappableCert::new(ca.issue(&LeafRequest::new(id.clone()))?));
/// let config = server_config(Arc::clone(&cert), &ca.trust_bundle(), &TlsOptions::default())?;
/// // ... serve with `config`; later, the CertRotator renews:
/// cert.store(ca.issue(&LeafRequest::new(id))?);
/// # let _ = config;
/// # Ok(())
/// # }
/// ```
pub struct SwappableCert {
    current: ArcSwap<CertifiedLeaf>,
}

impl SwappableCert {
    /// Start with `leaf`.
    pub fn new(leaf: CertifiedLeaf) -> SwappableCert {
        SwappableCert {
            current: ArcSwap::from_pointee(leaf),
        }
    }

    /// Replace the leaf; the next handshake presents it.
    pub fn store(&self, leaf: CertifiedLeaf) {
        self.current.store(Arc::new(leaf));
    }

    /// The leaf new handshakes present.
    pub fn current(&self) -> Arc<CertifiedLeaf> {
        self.current.load_full()
    }

    /// When the current leaf expires (what the `CertRotator` schedules renewal from).
    pub fn not_after(&self) -> SystemTime {
        self.current.load().not_after()
    }

    fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current.load().certified_key()
    }
}

impl fmt::Debug for SwappableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SwappableCert")
            .field(&*self.current.load())
            .finish()
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

impl ResolvesClientCert for SwappableCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
