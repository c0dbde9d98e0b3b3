//! Peer identity: who is on the other end of an authenticated TLS connection, read from the
//! peer's (already verified) certificate chain. Does not verify the chain itself.

use rustls_pki_types::CertificateDer;

use crate::{CertInfo, PkiError, SpiffeId};

/// The identity facts of a peer certificate, for authorization and consumer mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The SPIFFE ID when the certificate is an X509-SVID (exactly one URI SAN, a valid SPIFFE ID).
    pub spiffe_id: Option<SpiffeId>,
    /// The subject distinguished name, e.g. `CN=alice,O=Example`.
    pub subject: String,
    /// The subject CommonName, if any (edge mTLS consumers are often keyed by it).
    pub common_name: Option<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// URI SANs.
    pub uri_sans: Vec<String>,
}

impl PeerIdentity {
    /// Read the identity of the end-entity certificate (the first of `chain`).
    ///
    /// `chain` is what `ServerConnection::peer_certificates()` / `ClientConnection::peer_certificates()`
    /// return, i.e. certificates rustls has already verified.
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Result<PeerIdentity, PkiError> {
        let info = end_entity(chain)?;
        Ok(PeerIdentity {
            spiffe_id: info.spiffe_id,
            subject: info.subject,
            common_name: info.common_name,
            dns_sans: info.dns_sans,
            uri_sans: info.uri_sans,
        })
    }
}

/// The SPIFFE ID of a peer, strictly: the chain must be non-empty and its end-entity certificate
/// must carry exactly one URI SAN that is a valid SPIFFE ID.
pub fn peer_spiffe_id(chain: &[CertificateDer<'_>]) -> Result<SpiffeId, PkiError> {
    svid_id(&end_entity(chain)?.uri_sans)
}

fn end_entity(chain: &[CertificateDer<'_>]) -> Result<CertInfo, PkiError> {
    let first = chain.first().ok_or(PkiError::NoPeerCertificate)?;
    CertInfo::from_der(first)
}

/// X509-SVID §2: an SVID has exactly one URI SAN, and it is the SPIFFE ID.
pub(crate) fn svid_id(uri_sans: &[String]) -> Result<SpiffeId, PkiError> {
    match uri_sans {
        [] => Err(PkiError::NoSpiffeId),
        [uri] if uri.starts_with("spiffe://") => SpiffeId::parse(uri),
        [_] => Err(PkiError::NoSpiffeId),
        many => Err(PkiError::AmbiguousSpiffeId { count: many.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{test_ca, test_leaf_request};

    #[test]
    fn identity_of_an_issued_leaf() {
        let ca = test_ca("identity.test", false);
        let mut request = test_leaf_request("identity.test", "web", "frontend");
        request.dns_sans = vec!["frontend.web".into()];
        let leaf = ca.issue(&request).unwrap();

        assert_eq!(peer_spiffe_id(leaf.chain()).unwrap(), request.spiffe_id);
        let identity = PeerIdentity::from_chain(leaf.chain()).unwrap();
        assert_eq!(identity.spiffe_id.as_ref(), Some(&request.spiffe_id));
        assert_eq!(identity.subject, "CN=frontend");
        assert_eq!(identity.common_name.as_deref(), Some("frontend"));
        assert_eq!(identity.dns_sans, vec!["frontend.web".to_owned()]);
        assert_eq!(identity.uri_sans, vec![request.spiffe_id.to_string()]);
    }

    #[test]
    fn svid_rules() {
        let one = |s: &str| vec![s.to_owned()];
        assert!(matches!(
            peer_spiffe_id(&[]),
            Err(PkiError::NoPeerCertificate)
        ));
        assert!(matches!(svid_id(&[]), Err(PkiError::NoSpiffeId)));
        assert!(matches!(
            svid_id(&one("https://example.org")),
            Err(PkiError::NoSpiffeId)
        ));
        assert!(matches!(
            svid_id(&one("spiffe://Bad/x")),
            Err(PkiError::InvalidSpiffeId { .. })
        ));
        let two = vec!["spiffe://td/a".to_owned(), "spiffe://td/b".to_owned()];
        assert!(matches!(
            svid_id(&two),
            Err(PkiError::AmbiguousSpiffeId { count: 2 })
        ));
        assert_eq!(
            svid_id(&one("spiffe://td/a")).unwrap().as_str(),
            "spiffe://td/a"
        );
    }
}
