//! PEM text ⇄ DER for certificates and private keys (PKCS#8; SEC1 and PKCS#1 keys are
//! re-framed as PKCS#8); knows nothing about what the DER means.

use pem::{EncodeConfig, LineEnding, Pem};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::PkiError;
use crate::pkcs8::{pkcs1_to_pkcs8, sec1_to_pkcs8};

const CERTIFICATE_TAG: &str = "CERTIFICATE";
const PKCS8_KEY_TAG: &str = "PRIVATE KEY";
/// LF line endings everywhere, like rcgen's own PEM output.
const ENCODE: EncodeConfig = EncodeConfig::new().set_line_ending(LineEnding::LF);

/// All `CERTIFICATE` blocks, in order. Any other block kind is an error (a key pasted into a
/// certificate file is a mistake worth reporting, not skipping).
pub(crate) fn certs_from_pem(
    text: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let blocks = pem::parse_many(text).map_err(|e| PkiError::Pem {
        what,
        reason: format!("malformed PEM: {e}"),
    })?;
    if blocks.is_empty() {
        return Err(PkiError::Pem {
            what,
            reason: "no CERTIFICATE block in PEM".into(),
        });
    }
    blocks
        .into_iter()
        .map(|block| match block.tag() {
            CERTIFICATE_TAG => Ok(CertificateDer::from(block.into_contents())),
            other => Err(PkiError::Pem {
                what,
                reason: format!("unexpected {other:?} block; expected only CERTIFICATE blocks"),
            }),
        })
        .collect()
}

/// Exactly one private key block: PKCS#8 `PRIVATE KEY`, or the traditional SEC1
/// `EC PRIVATE KEY` / PKCS#1 `RSA PRIVATE KEY` that Go (and so Consul's Connect CA) writes,
/// converted to PKCS#8.
pub(crate) fn key_from_pem(
    text: &str,
    what: &'static str,
) -> Result<PrivatePkcs8KeyDer<'static>, PkiError> {
    let pem_error = |reason: String| PkiError::Pem { what, reason };
    let mut blocks = pem::parse_many(text)
        .map_err(|e| pem_error(format!("malformed PEM: {e}")))?
        .into_iter();
    let (Some(block), None) = (blocks.next(), blocks.next()) else {
        return Err(pem_error("expected exactly one PRIVATE KEY block".into()));
    };
    match block.tag() {
        PKCS8_KEY_TAG => Ok(PrivatePkcs8KeyDer::from(block.into_contents())),
        tag @ ("EC PRIVATE KEY" | "RSA PRIVATE KEY") => {
            let converted = if tag == "EC PRIVATE KEY" {
                sec1_to_pkcs8(block.contents())
            } else {
                pkcs1_to_pkcs8(block.contents())
            };
            converted
                .map(PrivatePkcs8KeyDer::from)
                .map_err(|reason| pem_error(format!("{tag}: {reason}")))
        }
        other => Err(pem_error(format!(
            "unexpected {other:?} block; expected PRIVATE KEY"
        ))),
    }
}

pub(crate) fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    let blocks: Vec<Pem> = certs
        .iter()
        .map(|cert| Pem::new(CERTIFICATE_TAG, cert.as_ref()))
        .collect();
    pem::encode_many_config(&blocks, ENCODE)
}

pub(crate) fn key_to_pem(key: &PrivatePkcs8KeyDer<'_>) -> String {
    pem::encode_config(&Pem::new(PKCS8_KEY_TAG, key.secret_pkcs8_der()), ENCODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_round_trip_and_wrong_blocks_are_named() {
        let certs = vec![
            CertificateDer::from(vec![1, 2, 3]),
            CertificateDer::from(vec![4, 5]),
        ];
        let text = certs_to_pem(&certs);
        assert_eq!(certs_from_pem(&text, "chain").unwrap(), certs);

        let err = certs_from_pem("", "chain").unwrap_err().to_string();
        assert_eq!(err, "chain: no CERTIFICATE block in PEM");

        let key = key_to_pem(&PrivatePkcs8KeyDer::from(vec![9, 9]));
        let err = certs_from_pem(&key, "chain").unwrap_err().to_string();
        assert!(err.contains("unexpected \"PRIVATE KEY\" block"), "{err}");
    }

    #[test]
    fn keys_round_trip_and_other_formats_are_explained() {
        let key = PrivatePkcs8KeyDer::from(vec![7, 7, 7]);
        let text = key_to_pem(&key);
        assert_eq!(
            key_from_pem(&text, "key").unwrap().secret_pkcs8_der(),
            &[7, 7, 7]
        );

        let sec1 = pem::encode(&Pem::new("EC PRIVATE KEY", vec![1]));
        let err = key_from_pem(&sec1, "key").unwrap_err().to_string();
        assert!(err.contains("malformed SEC1"), "{err}");

        let two = format!("{text}{text}");
        assert!(key_from_pem(&two, "key").is_err());
    }
}
