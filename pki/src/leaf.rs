//! Leaf issuing: `LeafRequest` → `CertifiedLeaf` (key generated here, chain signed by the CA),
//! and `CertifiedLeaf` itself: a chain plus its private key, ready for rustls.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::identity::svid_id;
use crate::pem_text::{certs_from_pem, certs_to_pem, key_from_pem, key_to_pem};
use crate::profile::leaf_params;
use crate::tls::crypto_provider;
use crate::{CertInfo, CertificateAuthority, KeyAlgorithm, PkiError, SpiffeId, Validity};

/// What to put in a new leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    /// The identity: the leaf's single URI SAN.
    pub spiffe_id: SpiffeId,
    /// Extra DNS SANs (e.g. for plain-TLS clients that check host names).
    pub dns_sans: Vec<String>,
    /// Extra IP SANs.
    pub ip_sans: Vec<IpAddr>,
    /// Lifetime (default 24h), backdating (default 1 min) and issuing instant.
    pub validity: Validity,
    /// Algorithm of the new key (ECDSA P-256 by default).
    pub key_algorithm: KeyAlgorithm,
}

impl LeafRequest {
    /// A request for `spiffe_id` with no extra SANs and default validity.
    pub fn new(spiffe_id: SpiffeId) -> LeafRequest {
        LeafRequest {
            spiffe_id,
            dns_sans: Vec::new(),
            ip_sans: Vec::new(),
            validity: Validity::default(),
            key_algorithm: KeyAlgorithm::default(),
        }
    }
}

impl CertificateAuthority {
    /// Issue a leaf with a freshly generated key. The chain is leaf + intermediate (if any).
    pub fn issue(&self, request: &LeafRequest) -> Result<CertifiedLeaf, PkiError> {
        self.check_trust_domain(&request.spiffe_id)?;
        let window = request.validity.window(self.issuer_not_after())?;
        let params = leaf_params(
            &request.spiffe_id,
            &request.dns_sans,
            &request.ip_sans,
            window,
        )?;
        let key = request.key_algorithm.generate()?;
        let chain = self.sign(&params, &key)?;
        CertifiedLeaf::from_parts(chain, PrivatePkcs8KeyDer::from(key.serialize_der()))
    }
}

/// An X509-SVID chain with its private key, checked to match, plus the parsed leaf fields.
pub struct CertifiedLeaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    info: CertInfo,
    spiffe_id: SpiffeId,
    certified_key: Arc<CertifiedKey>,
}

impl CertifiedLeaf {
    /// Build from DER parts: `chain[0]` must be an X509-SVID and `key` its private key.
    pub fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivatePkcs8KeyDer<'static>,
    ) -> Result<CertifiedLeaf, PkiError> {
        let leaf_error = |reason: String| PkiError::Certificate {
            what: "leaf certificate",
            reason,
        };
        let first = chain
            .first()
            .ok_or_else(|| leaf_error("empty certificate chain".into()))?;
        let info = CertInfo::from_der(first).map_err(|e| leaf_error(e.to_string()))?;
        if info.is_ca {
            return Err(leaf_error("is a CA certificate, not a leaf".into()));
        }
        let spiffe_id = svid_id(&info.uri_sans).map_err(|e| leaf_error(e.to_string()))?;
        let certified_key = CertifiedKey::from_der(
            chain.clone(),
            PrivateKeyDer::Pkcs8(key.clone_key()),
            &crypto_provider(),
        )
        .map_err(|e| PkiError::Key {
            what: "leaf private key",
            reason: match e {
                rustls::Error::InconsistentKeys(_) => "does not match the leaf certificate".into(),
                other => format!("unusable key: {other}"),
            },
        })?;
        Ok(CertifiedLeaf {
            chain,
            key,
            info,
            spiffe_id,
            certified_key: Arc::new(certified_key),
        })
    }

    /// Parse a chain PEM (leaf first) and a PKCS#8 key PEM.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<CertifiedLeaf, PkiError> {
        let chain = certs_from_pem(chain_pem, "certificate chain")?;
        let key = key_from_pem(key_pem, "leaf private key")?;
        CertifiedLeaf::from_parts(chain, key)
    }

    /// The SPIFFE ID of the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The parsed leaf certificate fields (serial, validity, SANs).
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// When the leaf expires.
    pub fn not_after(&self) -> SystemTime {
        self.info.not_after
    }

    /// The chain, leaf first, without the root.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The chain as PEM (what `cert.pem` holds).
    pub fn chain_pem(&self) -> String {
        certs_to_pem(&self.chain)
    }

    /// The private key as PKCS#8 PEM (what `key.pem` holds).
    pub fn key_pem(&self) -> String {
        key_to_pem(&self.key)
    }

    /// The private key.
    pub fn key_der(&self) -> &PrivatePkcs8KeyDer<'static> {
        &self.key
    }

    /// The rustls form of chain + key.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified_key)
    }
}

impl Clone for CertifiedLeaf {
    fn clone(&self) -> Self {
        CertifiedLeaf {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            info: self.info.clone(),
            spiffe_id: self.spiffe_id.clone(),
            certified_key: Arc::clone(&self.certified_key),
        }
    }
}

impl fmt::Debug for CertifiedLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedLeaf")
            .field("spiffe_id", &self.spiffe_id)
            .field("serial", &self.info.serial)
            .field("not_after", &self.info.not_after)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_support::{test_ca, test_leaf_request};

    #[test]
    fn issued_leaf_follows_the_svid_profile() {
        let ca = test_ca("leaf.test", true);
        let leaf = ca
            .issue(&test_leaf_request("leaf.test", "default", "orders"))
            .unwrap();
        assert_eq!(leaf.chain().len(), 2);
        assert_eq!(leaf.chain()[1], *ca.intermediate_cert().unwrap());
        assert_eq!(
            leaf.spiffe_id().as_str(),
            "spiffe://leaf.test/ns/default/svc/orders"
        );
        assert!(!leaf.info().is_ca);
        let (_, cert) =
            <x509_parser::certificate::X509Certificate<'_> as x509_parser::prelude::FromDer<
                '_,
                _,
            >>::from_der(leaf.chain()[0].as_ref())
            .unwrap();
        let key_usage = cert.key_usage().unwrap().unwrap().value;
        assert!(
            key_usage.digital_signature() && !key_usage.key_cert_sign() && !key_usage.crl_sign()
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let basic = cert.basic_constraints().unwrap().unwrap().value;
        assert!(!basic.ca);
    }

    #[test]
    fn validity_is_backdated_and_capped_by_the_issuer() {
        let ca = test_ca("leaf.test", false);
        let issued_at = SystemTime::now();
        let mut request = test_leaf_request("leaf.test", "a", "b");
        request.validity.issued_at = Some(issued_at);
        let leaf = ca.issue(&request).unwrap();
        let age = issued_at.duration_since(leaf.info().not_before).unwrap();
        assert!(
            age >= Duration::from_secs(60) && age < Duration::from_secs(61),
            "{age:?}"
        );
        assert_eq!(leaf.info().lifetime(), Duration::from_secs(24 * 3600 + 60));

        request.validity.lifetime = Duration::from_secs(100 * 365 * 24 * 3600);
        let long = ca.issue(&request).unwrap();
        assert!(long.not_after() <= ca.issuer_not_after());
    }

    #[test]
    fn pem_round_trip_and_mismatched_key() {
        let ca = test_ca("leaf.test", true);
        let a = ca.issue(&test_leaf_request("leaf.test", "a", "a")).unwrap();
        let b = ca.issue(&test_leaf_request("leaf.test", "b", "b")).unwrap();
        let again = CertifiedLeaf::from_pem(&a.chain_pem(), &a.key_pem()).unwrap();
        assert_eq!(again.chain(), a.chain());
        assert_eq!(again.spiffe_id(), a.spiffe_id());

        let err = CertifiedLeaf::from_pem(&a.chain_pem(), &b.key_pem()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "leaf private key: does not match the leaf certificate"
        );
    }

    #[test]
    fn go_style_sec1_keys_load_like_pkcs8() {
        let ca = test_ca("leaf.test", true);
        let leaf = ca.issue(&test_leaf_request("leaf.test", "a", "a")).unwrap();
        let sec1 = crate::pkcs8::pkcs8_to_go_sec1(leaf.key_der().secret_pkcs8_der());
        let sec1_pem = pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1));
        let again = CertifiedLeaf::from_pem(&leaf.chain_pem(), &sec1_pem).unwrap();
        assert_eq!(again.spiffe_id(), leaf.spiffe_id());
        // ring's own PKCS#8 leaves the curve out of the inner key; both forms sign.
        let reloaded = CertifiedLeaf::from_pem(&again.chain_pem(), &again.key_pem()).unwrap();
        assert_eq!(reloaded.chain(), leaf.chain());
    }

    #[test]
    fn refuses_other_trust_domains_and_ca_certs_as_leaves() {
        let ca = test_ca("leaf.test", false);
        let err = ca
            .issue(&test_leaf_request("other.test", "a", "b"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot issue spiffe://other.test/"),
            "{err}"
        );

        let pem = ca.to_pem();
        let err =
            CertifiedLeaf::from_pem(&pem.root_cert, pem.root_key.as_deref().unwrap()).unwrap_err();
        assert!(err.to_string().contains("is a CA certificate"), "{err}");
    }
}
