//! `TrustBundle`: the root certificates a mesh member trusts. Holds no keys.
//!
//! Rotating a root: publish a bundle holding both the old and the new root (see
//! [`TrustBundle::extend`]), rebuild the rustls configs from it and swap them in (existing
//! connections keep their config), switch issuing to the new root, and drop the old root once
//! every leaf it signed has expired.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;

use crate::pem_text::{certs_from_pem, certs_to_pem};
use crate::{CertInfo, PkiError};

/// A set of trusted root CA certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundle {
    roots: Vec<CertificateDer<'static>>,
}

impl TrustBundle {
    /// A bundle of DER roots; each must parse and be a CA certificate.
    pub fn new(roots: Vec<CertificateDer<'static>>) -> Result<TrustBundle, PkiError> {
        if roots.is_empty() {
            return Err(PkiError::Certificate {
                what: "trust bundle",
                reason: "no root certificate".into(),
            });
        }
        for root in &roots {
            if !CertInfo::from_der(root)?.is_ca {
                return Err(PkiError::Certificate {
                    what: "trust bundle",
                    reason: "a bundle certificate is not a CA (basicConstraints cA=false)".into(),
                });
            }
        }
        Ok(TrustBundle { roots })
    }

    /// Roots already known to be CA certificates (e.g. a loaded CA's own root).
    pub(crate) fn from_checked_roots(roots: Vec<CertificateDer<'static>>) -> TrustBundle {
        TrustBundle { roots }
    }

    /// Parse a PEM bundle (one or more `CERTIFICATE` blocks).
    pub fn from_pem(pem: &str) -> Result<TrustBundle, PkiError> {
        TrustBundle::new(certs_from_pem(pem, "trust bundle")?)
    }

    /// The bundle as PEM.
    pub fn to_pem(&self) -> String {
        certs_to_pem(&self.roots)
    }

    /// The root certificates.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Add the roots of `other` that are not already present (root rotation overlap).
    pub fn extend(&mut self, other: &TrustBundle) {
        for root in &other.roots {
            if !self.roots.contains(root) {
                self.roots.push(root.clone());
            }
        }
    }

    /// The bundle as a rustls root store.
    pub fn root_store(&self) -> Result<Arc<RootCertStore>, PkiError> {
        let mut store = RootCertStore::empty();
        for root in &self.roots {
            store.add(root.clone())?;
        }
        Ok(Arc::new(store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{test_ca, test_leaf_request};

    #[test]
    fn pem_round_trip_and_extend_deduplicates() {
        let a = test_ca("a.test", false).trust_bundle();
        let b = test_ca("b.test", true).trust_bundle();
        assert_eq!(TrustBundle::from_pem(&a.to_pem()).unwrap(), a);

        let mut both = a.clone();
        both.extend(&b);
        both.extend(&a);
        assert_eq!(both.roots().len(), 2);
        assert_eq!(both.root_store().unwrap().len(), 2);
        assert_eq!(TrustBundle::from_pem(&both.to_pem()).unwrap(), both);
    }

    #[test]
    fn leaf_certificates_are_not_roots() {
        let ca = test_ca("a.test", false);
        let leaf = ca.issue(&test_leaf_request("a.test", "ns", "svc")).unwrap();
        let err = TrustBundle::from_pem(&leaf.chain_pem()).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
        assert!(TrustBundle::new(Vec::new()).is_err());
    }
}
