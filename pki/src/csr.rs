//! CSR flow for a CA service: the workload keeps its key (`PendingLeaf`), the CA signs only the
//! identity the caller allows (`CertificateAuthority::sign_csr`). The CA never sees a private key
//! and never copies SANs from the CSR.

use std::fmt;

use rcgen::{CertificateSigningRequestParams, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::pem_text::{certs_from_pem, certs_to_pem};
use crate::profile::{csr_params, leaf_params};
use crate::{CertificateAuthority, CertifiedLeaf, KeyAlgorithm, PkiError, SpiffeId, Validity};

/// A key generated locally plus the CSR to send to the CA; [`PendingLeaf::complete`] joins the
/// signed chain with the key.
pub struct PendingLeaf {
    spiffe_id: SpiffeId,
    key: KeyPair,
    csr_pem: String,
}

impl PendingLeaf {
    /// Generate a key and a CSR requesting `spiffe_id` (its single URI SAN).
    pub fn generate(
        spiffe_id: &SpiffeId,
        key_algorithm: KeyAlgorithm,
    ) -> Result<PendingLeaf, PkiError> {
        let key = key_algorithm.generate()?;
        let csr_pem = csr_params(spiffe_id)?
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(PkiError::generate("CSR"))?;
        Ok(PendingLeaf {
            spiffe_id: spiffe_id.clone(),
            key,
            csr_pem,
        })
    }

    /// The CSR (PEM); the only thing that goes to the CA.
    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// The identity requested.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// Join the CA's signed chain (PEM, leaf first) with the local key. Fails if the chain names
    /// another identity or another key.
    pub fn complete(self, chain_pem: &str) -> Result<CertifiedLeaf, PkiError> {
        let chain = certs_from_pem(chain_pem, "issued certificate chain")?;
        let key = PrivatePkcs8KeyDer::from(self.key.serialize_der());
        let leaf = CertifiedLeaf::from_parts(chain, key)?;
        if leaf.spiffe_id() != &self.spiffe_id {
            return Err(PkiError::Certificate {
                what: "issued certificate chain",
                reason: format!(
                    "names {} but the CSR asked for {}",
                    leaf.spiffe_id(),
                    self.spiffe_id
                ),
            });
        }
        Ok(leaf)
    }
}

impl fmt::Debug for PendingLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLeaf")
            .field("spiffe_id", &self.spiffe_id)
            .finish_non_exhaustive()
    }
}

/// A chain signed by the CA from a CSR: leaf first, intermediate after (no key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedChain {
    certs: Vec<CertificateDer<'static>>,
}

impl IssuedChain {
    /// The certificates, leaf first.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The chain as PEM, for the wire or `cert.pem`.
    pub fn to_pem(&self) -> String {
        certs_to_pem(&self.certs)
    }
}

impl CertificateAuthority {
    /// Sign a CSR for `allowed`, the identity the caller has authenticated the requester as.
    ///
    /// The CSR must request exactly one SAN, the URI SAN `allowed`; anything else is refused.
    /// Only the CSR's public key is used: subject, extensions and validity come from meshgate's
    /// leaf profile, so a requester cannot widen what it gets.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        allowed: &SpiffeId,
        validity: &Validity,
    ) -> Result<IssuedChain, PkiError> {
        let rejected = |reason: String| PkiError::CsrRejected { reason };
        self.check_trust_domain(allowed)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| rejected(format!("cannot parse or verify the CSR: {e}")))?;
        let requested = match csr.params.subject_alt_names.as_slice() {
            [SanType::URI(uri)] => SpiffeId::parse(uri.as_str())
                .map_err(|e| rejected(format!("requested URI SAN is not a SPIFFE ID: {e}")))?,
            [] => return Err(rejected("the CSR requests no SPIFFE ID".into())),
            sans => {
                return Err(rejected(format!(
                    "the CSR requests {} SANs; only its single SPIFFE ID URI SAN is allowed",
                    sans.len()
                )));
            }
        };
        if &requested != allowed {
            return Err(rejected(format!(
                "requests {requested} but the caller is allowed {allowed}"
            )));
        }
        let window = validity.window(self.issuer_not_after())?;
        let params = leaf_params(allowed, &[], &[], window)?;
        Ok(IssuedChain {
            certs: self.sign(&params, &csr.public_key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test_ca;

    fn id(service: &str) -> SpiffeId {
        SpiffeId::service("csr.test", "default", service).unwrap()
    }

    #[test]
    fn signs_the_allowed_identity_without_seeing_the_key() {
        let ca = test_ca("csr.test", true);
        let pending = PendingLeaf::generate(&id("orders"), KeyAlgorithm::EcdsaP256).unwrap();
        assert!(!pending.csr_pem().contains("PRIVATE KEY"));
        assert!(
            pending
                .csr_pem()
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );

        let chain = ca
            .sign_csr(pending.csr_pem(), &id("orders"), &Validity::default())
            .unwrap();
        assert_eq!(chain.certs().len(), 2);
        let leaf = pending.complete(&chain.to_pem()).unwrap();
        assert_eq!(leaf.spiffe_id(), &id("orders"));
        assert_eq!(leaf.info().uri_sans, vec![id("orders").to_string()]);
        assert!(leaf.info().dns_sans.is_empty());
    }

    #[test]
    fn refuses_a_csr_for_another_identity() {
        let ca = test_ca("csr.test", false);
        let pending = PendingLeaf::generate(&id("admin"), KeyAlgorithm::EcdsaP256).unwrap();
        let err = ca
            .sign_csr(pending.csr_pem(), &id("orders"), &Validity::default())
            .unwrap_err();
        assert!(matches!(err, PkiError::CsrRejected { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("requests spiffe://csr.test/ns/default/svc/admin"),
            "{err}"
        );
    }

    #[test]
    fn refuses_extra_sans_missing_ids_and_garbage() {
        let ca = test_ca("csr.test", false);
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();

        let mut extra = csr_params(&id("orders")).unwrap();
        extra
            .subject_alt_names
            .push(SanType::DnsName("evil.example.com".try_into().unwrap()));
        let csr = extra.serialize_request(&key).unwrap().pem().unwrap();
        let err = ca
            .sign_csr(&csr, &id("orders"), &Validity::default())
            .unwrap_err();
        assert!(err.to_string().contains("requests 2 SANs"), "{err}");

        let mut none = csr_params(&id("orders")).unwrap();
        none.subject_alt_names.clear();
        let csr = none.serialize_request(&key).unwrap().pem().unwrap();
        let err = ca
            .sign_csr(&csr, &id("orders"), &Validity::default())
            .unwrap_err();
        assert!(err.to_string().contains("no SPIFFE ID"), "{err}");

        let err = ca
            .sign_csr("not a csr", &id("orders"), &Validity::default())
            .unwrap_err();
        assert!(matches!(err, PkiError::CsrRejected { .. }), "{err}");

        let foreign = SpiffeId::service("other.test", "default", "orders").unwrap();
        let pending = PendingLeaf::generate(&foreign, KeyAlgorithm::EcdsaP256).unwrap();
        assert!(
            ca.sign_csr(pending.csr_pem(), &foreign, &Validity::default())
                .is_err()
        );
    }

    #[test]
    fn complete_refuses_a_chain_for_another_key() {
        let ca = test_ca("csr.test", false);
        let mine = PendingLeaf::generate(&id("orders"), KeyAlgorithm::EcdsaP256).unwrap();
        let theirs = PendingLeaf::generate(&id("orders"), KeyAlgorithm::EcdsaP256).unwrap();
        let chain = ca
            .sign_csr(theirs.csr_pem(), &id("orders"), &Validity::default())
            .unwrap();
        let err = mine.complete(&chain.to_pem()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
