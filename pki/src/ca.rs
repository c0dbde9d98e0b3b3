//! `CertificateAuthority`: a mesh root CA (optionally with an issuing intermediate) for one
//! trust domain; creation, loading from PEM, and the trust bundle. Issuing lives in `leaf`/`csr`.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::pem_text::{certs_from_pem, certs_to_pem, key_from_pem};
use crate::profile::{self, DEFAULT_INTERMEDIATE_LIFETIME, DEFAULT_ROOT_LIFETIME};
use crate::{CertInfo, KeyAlgorithm, PkiError, SpiffeId, TrustBundle, Validity};

/// How to create a new CA.
#[derive(Clone, Debug)]
pub struct CaOptions {
    /// Key algorithm of the root and intermediate keys (ECDSA P-256 by default).
    pub key_algorithm: KeyAlgorithm,
    /// Also create an intermediate that signs leaves, so the root key can be kept offline.
    pub with_intermediate: bool,
    /// Root certificate lifetime.
    pub root_lifetime: Duration,
    /// Intermediate certificate lifetime (capped by the root's).
    pub intermediate_lifetime: Duration,
    /// The creation instant; `None` means now.
    pub issued_at: Option<SystemTime>,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            key_algorithm: KeyAlgorithm::default(),
            with_intermediate: false,
            root_lifetime: DEFAULT_ROOT_LIFETIME,
            intermediate_lifetime: DEFAULT_INTERMEDIATE_LIFETIME,
            issued_at: None,
        }
    }
}

/// The PEM texts of a CA. `root_key` may be absent when an intermediate issues (offline root).
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    /// The self-signed root certificate; this is also the trust bundle.
    pub root_cert: String,
    /// The root's PKCS#8 key; required unless an intermediate is present.
    pub root_key: Option<String>,
    /// The intermediate certificate, signed by the root.
    pub intermediate_cert: Option<String>,
    /// The intermediate's PKCS#8 key; present iff `intermediate_cert` is.
    pub intermediate_key: Option<String>,
}

impl fmt::Debug for CaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let elided = |key: &Option<String>| key.as_ref().map(|_| "[private key elided]");
        f.debug_struct("CaPem")
            .field("root_cert", &self.root_cert)
            .field("root_key", &elided(&self.root_key))
            .field("intermediate_cert", &self.intermediate_cert)
            .field("intermediate_key", &elided(&self.intermediate_key))
            .finish()
    }
}

struct CaCert {
    der: CertificateDer<'static>,
    info: CertInfo,
}

/// A CA that issues X509-SVIDs for one trust domain.
pub struct CertificateAuthority {
    trust_domain: SpiffeId,
    root: CaCert,
    intermediate: Option<CaCert>,
    /// The key that signs leaves: the intermediate's when there is one, else the root's.
    issuer: Issuer<'static, KeyPair>,
    /// The root key when an intermediate issues (None when the root is kept offline).
    root_key: Option<KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain())
            .field("root", &self.root.info.subject)
            .field(
                "intermediate",
                &self.intermediate.as_ref().map(|i| &i.info.subject),
            )
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Create a new self-signed root for `trust_domain` (and an intermediate if asked).
    pub fn new(trust_domain: &str, options: &CaOptions) -> Result<CertificateAuthority, PkiError> {
        let trust_domain_id = SpiffeId::trust_domain_id(trust_domain)?;
        let root_key = options.key_algorithm.generate()?;
        let root = new_root(&trust_domain_id, &root_key, options)?;
        if !options.with_intermediate {
            return Self::assemble(trust_domain_id, root, None, root_key, None);
        }
        let key = options.key_algorithm.generate()?;
        let intermediate = new_intermediate(&trust_domain_id, &key, (&root, &root_key), options)?;
        Self::assemble(
            trust_domain_id,
            root,
            Some(intermediate),
            key,
            Some(root_key),
        )
    }

    /// Load a CA from PEM, checking that each key matches its certificate and that the
    /// intermediate (if any) is signed by the root.
    pub fn from_pem(pem: &CaPem) -> Result<CertificateAuthority, PkiError> {
        let root = single_ca_cert(&pem.root_cert, "root CA certificate")?;
        verify_signed_by(&root.der, None, "root CA certificate")?;
        let trust_domain = trust_domain_of(&root.info, "root CA certificate")?;
        let root_key = pem
            .root_key
            .as_deref()
            .map(|text| matching_key(text, &root.der, "root CA key"))
            .transpose()?;

        match (&pem.intermediate_cert, &pem.intermediate_key) {
            (None, None) => {
                let Some(root_key) = root_key else {
                    return Err(PkiError::InvalidCa {
                        reason: "no root CA key and no intermediate: nothing can sign".into(),
                    });
                };
                Self::assemble(trust_domain, root, None, root_key, None)
            }
            (Some(cert), Some(key)) => {
                let intermediate = single_ca_cert(cert, "intermediate CA certificate")?;
                verify_signed_by(
                    &intermediate.der,
                    Some(&root.der),
                    "intermediate CA certificate",
                )?;
                let td = trust_domain_of(&intermediate.info, "intermediate CA certificate")?;
                if td != trust_domain {
                    return Err(PkiError::InvalidCa {
                        reason: format!("intermediate is for {td}, root is for {trust_domain}"),
                    });
                }
                let key = matching_key(key, &intermediate.der, "intermediate CA key")?;
                Self::assemble(trust_domain, root, Some(intermediate), key, root_key)
            }
            _ => Err(PkiError::InvalidCa {
                reason: "intermediate certificate and intermediate key must be given together"
                    .into(),
            }),
        }
    }

    fn assemble(
        trust_domain: SpiffeId,
        root: CaCert,
        intermediate: Option<CaCert>,
        signing_key: KeyPair,
        root_key: Option<KeyPair>,
    ) -> Result<CertificateAuthority, PkiError> {
        let issuing = intermediate.as_ref().unwrap_or(&root);
        let issuer = Issuer::from_ca_cert_der(&issuing.der, signing_key)
            .map_err(PkiError::generate("CA issuer"))?;
        Ok(CertificateAuthority {
            trust_domain,
            root,
            intermediate,
            issuer,
            root_key,
        })
    }

    /// The CA as PEM texts (keys included: handle with care).
    pub fn to_pem(&self) -> CaPem {
        let signing_key = self.issuer.key().serialize_pem();
        match &self.intermediate {
            None => CaPem {
                root_cert: certs_to_pem(std::slice::from_ref(&self.root.der)),
                root_key: Some(signing_key),
                intermediate_cert: None,
                intermediate_key: None,
            },
            Some(intermediate) => CaPem {
                root_cert: certs_to_pem(std::slice::from_ref(&self.root.der)),
                root_key: self.root_key.as_ref().map(KeyPair::serialize_pem),
                intermediate_cert: Some(certs_to_pem(std::slice::from_ref(&intermediate.der))),
                intermediate_key: Some(signing_key),
            },
        }
    }

    /// The trust domain, e.g. `mesh.local`.
    pub fn trust_domain(&self) -> &str {
        self.trust_domain.trust_domain()
    }

    /// The bundle peers use to verify leaves of this CA: the root.
    pub fn trust_bundle(&self) -> TrustBundle {
        TrustBundle::from_checked_roots(vec![self.root.der.clone()])
    }

    /// The root certificate.
    pub fn root_cert(&self) -> &CertificateDer<'static> {
        &self.root.der
    }

    /// The intermediate certificate, if leaves are issued by one.
    pub fn intermediate_cert(&self) -> Option<&CertificateDer<'static>> {
        self.intermediate.as_ref().map(|i| &i.der)
    }

    /// When the issuing certificate expires; leaves never outlive it.
    pub fn issuer_not_after(&self) -> SystemTime {
        self.issuing().info.not_after
    }

    fn issuing(&self) -> &CaCert {
        self.intermediate.as_ref().unwrap_or(&self.root)
    }

    /// Sign leaf parameters for `public_key`; returns the chain (leaf, then intermediate if any).
    pub(crate) fn sign(
        &self,
        params: &rcgen::CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        let leaf = params
            .signed_by(public_key, &self.issuer)
            .map_err(PkiError::generate("leaf certificate"))?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.intermediate_cert().cloned());
        Ok(chain)
    }

    /// Refuse identities outside this CA's trust domain.
    pub(crate) fn check_trust_domain(&self, id: &SpiffeId) -> Result<(), PkiError> {
        if id.trust_domain() == self.trust_domain() {
            return Ok(());
        }
        Err(PkiError::ForeignTrustDomain {
            trust_domain: self.trust_domain().to_owned(),
            id: id.to_string(),
        })
    }
}

/// The last instant an X.509 GeneralizedTime can carry: 9999-12-31T23:59:59Z (RFC 5280 §4.1.2.5).
const MAX_X509_TIME: Duration = Duration::from_secs(253_402_300_799);

fn new_root(
    trust_domain_id: &SpiffeId,
    key: &KeyPair,
    options: &CaOptions,
) -> Result<CaCert, PkiError> {
    let window = Validity {
        lifetime: options.root_lifetime,
        backdate: profile::DEFAULT_BACKDATE,
        issued_at: options.issued_at,
    }
    .window(SystemTime::UNIX_EPOCH + MAX_X509_TIME)?;
    let der = profile::ca_params(trust_domain_id, "meshgate root CA", 1, window)?
        .self_signed(key)
        .map_err(PkiError::generate("root CA certificate"))?
        .der()
        .clone();
    ca_cert(der, "root CA certificate")
}

fn new_intermediate(
    trust_domain_id: &SpiffeId,
    key: &KeyPair,
    (root, root_key): (&CaCert, &KeyPair),
    options: &CaOptions,
) -> Result<CaCert, PkiError> {
    let window = Validity {
        lifetime: options.intermediate_lifetime,
        backdate: profile::DEFAULT_BACKDATE,
        issued_at: options.issued_at,
    }
    .window(root.info.not_after)?;
    let root_issuer = Issuer::from_ca_cert_der(&root.der, root_key)
        .map_err(PkiError::generate("root CA issuer"))?;
    let der = profile::ca_params(trust_domain_id, "meshgate intermediate CA", 0, window)?
        .signed_by(key, &root_issuer)
        .map_err(PkiError::generate("intermediate CA certificate"))?
        .der()
        .clone();
    ca_cert(der, "intermediate CA certificate")
}

fn ca_cert(der: CertificateDer<'static>, what: &'static str) -> Result<CaCert, PkiError> {
    let info = CertInfo::from_der(&der).map_err(|e| PkiError::Certificate {
        what,
        reason: e.to_string(),
    })?;
    if !info.is_ca {
        return Err(PkiError::Certificate {
            what,
            reason: "not a CA certificate (basicConstraints cA is not true)".into(),
        });
    }
    Ok(CaCert { der, info })
}

fn single_ca_cert(pem: &str, what: &'static str) -> Result<CaCert, PkiError> {
    let mut certs = certs_from_pem(pem, what)?.into_iter();
    match (certs.next(), certs.next()) {
        (Some(der), None) => ca_cert(der, what),
        _ => Err(PkiError::Pem {
            what,
            reason: "expected exactly one CERTIFICATE block".into(),
        }),
    }
}

/// The trust domain a meshgate CA names in its `spiffe://<trust-domain>` URI SAN.
fn trust_domain_of(info: &CertInfo, what: &'static str) -> Result<SpiffeId, PkiError> {
    match &info.spiffe_id {
        Some(id) if id.path().is_empty() => Ok(id.clone()),
        _ => Err(PkiError::Certificate {
            what,
            reason: "no spiffe://<trust-domain> URI SAN naming the trust domain".into(),
        }),
    }
}

/// Check the signature of `der` with `issuer`'s public key (its own key when `None`).
fn verify_signed_by(
    der: &CertificateDer<'_>,
    issuer: Option<&CertificateDer<'_>>,
    what: &'static str,
) -> Result<(), PkiError> {
    let cert = parse_x509(der, what)?;
    let issuer = issuer.map(|der| parse_x509(der, what)).transpose()?;
    let (signer, expected) = match &issuer {
        Some(issuer) => (issuer.public_key(), "the root CA"),
        None => (cert.public_key(), "its own key (self-signed)"),
    };
    cert.verify_signature(Some(signer))
        .map_err(|e| PkiError::Certificate {
            what,
            reason: format!("signature does not verify with {expected}: {e}"),
        })
}

fn parse_x509<'a>(
    der: &'a CertificateDer<'_>,
    what: &'static str,
) -> Result<X509Certificate<'a>, PkiError> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::Certificate {
            what,
            reason: format!("cannot parse DER: {e}"),
        })
}

fn matching_key(
    pem: &str,
    cert: &CertificateDer<'_>,
    what: &'static str,
) -> Result<KeyPair, PkiError> {
    let der = key_from_pem(pem, what)?;
    let key = KeyPair::try_from(&der).map_err(|e| PkiError::Key {
        what,
        reason: format!("unusable key: {e}"),
    })?;
    let parsed = parse_x509(cert, what)?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::Key {
            what,
            reason: "does not match its certificate".into(),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
