//! Re-framing of the traditional private key formats Go's `crypto/x509` writes — SEC1
//! `EC PRIVATE KEY` (RFC 5915) and PKCS#1 `RSA PRIVATE KEY` (RFC 8017) — as PKCS#8
//! (RFC 5208), which is what rcgen and rustls load. DER framing only: no key is checked here
//! (loading the result does that).

/// `id-ecPublicKey` (RFC 5480 §2.1.1), as a DER OID.
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `secp256r1` (RFC 5480 §2.1.1.1).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `secp384r1`.
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// `AlgorithmIdentifier { rsaEncryption, NULL }` (RFC 8017 §A.1).
const RSA_ENCRYPTION: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// PKCS#8 `version 0` (v1).
const VERSION_0: &[u8] = &[0x02, 0x01, 0x00];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
/// `[0] EXPLICIT ECParameters` of an `ECPrivateKey`.
const EC_PARAMETERS: u8 = 0xa0;

/// A SEC1 `ECPrivateKey` (P-256 or P-384) as PKCS#8. The curve comes from the key's
/// `parameters`, or, when they are absent, from the length of the private key.
pub(crate) fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, &'static str> {
    let malformed = "malformed SEC1 ECPrivateKey";
    let (body, rest) = expect(sec1, SEQUENCE).ok_or(malformed)?;
    if !rest.is_empty() {
        return Err(malformed);
    }
    let (version, body) = expect(body, INTEGER).ok_or(malformed)?;
    if version != [1] {
        return Err("not an ECPrivateKey (version is not 1)");
    }
    let (private_key, body) = expect(body, OCTET_STRING).ok_or(malformed)?;
    let curve = match expect(body, EC_PARAMETERS) {
        Some((parameters, _)) if parameters == P256 => P256,
        Some((parameters, _)) if parameters == P384 => P384,
        Some(_) => return Err("unsupported elliptic curve (P-256 and P-384 are supported)"),
        None => match private_key.len() {
            32 => P256,
            48 => P384,
            _ => return Err("unsupported elliptic curve (P-256 and P-384 are supported)"),
        },
    };
    let algorithm = der(SEQUENCE, &[EC_PUBLIC_KEY, curve].concat());
    Ok(der(
        SEQUENCE,
        &[VERSION_0, &algorithm, &der(OCTET_STRING, sec1)].concat(),
    ))
}

/// A PKCS#1 `RSAPrivateKey` as PKCS#8.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>, &'static str> {
    match expect(pkcs1, SEQUENCE) {
        Some((_, [])) => Ok(der(
            SEQUENCE,
            &[VERSION_0, RSA_ENCRYPTION, &der(OCTET_STRING, pkcs1)].concat(),
        )),
        _ => Err("malformed PKCS#1 RSAPrivateKey"),
    }
}

/// The contents of one DER element with tag `tag` at the start of `input`, and what follows.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        (length, rest)
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

/// One DER element: tag, definite length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let length = contents.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|byte| **byte == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// The `ECPrivateKey` inside a PKCS#8 EC key, with the curve `parameters` added as Go's
/// `x509.MarshalECPrivateKey` writes them (tests build Consul-style keys with it).
#[cfg(test)]
pub(crate) fn pkcs8_to_go_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (body, _) = expect(pkcs8, SEQUENCE).unwrap();
    let (_, body) = expect(body, INTEGER).unwrap();
    let (algorithm, body) = expect(body, SEQUENCE).unwrap();
    let curve = &algorithm[EC_PUBLIC_KEY.len()..];
    let (sec1, _) = expect(body, OCTET_STRING).unwrap();
    let (inner, _) = expect(sec1, SEQUENCE).unwrap();
    let (_, after_version) = expect(inner, INTEGER).unwrap();
    let (private_key, public_key) = expect(after_version, OCTET_STRING).unwrap();
    der(
        SEQUENCE,
        &[
            &[0x02, 0x01, 0x01][..],
            &der(OCTET_STRING, private_key),
            &der(EC_PARAMETERS, curve),
            public_key,
        ]
        .concat(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for length in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let contents = vec![7u8; length];
            let encoded = der(OCTET_STRING, &contents);
            let (back, rest) = expect(&encoded, OCTET_STRING).unwrap();
            assert_eq!(back, &contents[..]);
            assert!(rest.is_empty());
        }
        assert!(expect(&[OCTET_STRING, 5, 1, 2], OCTET_STRING).is_none());
        assert!(expect(&[SEQUENCE, 0], OCTET_STRING).is_none());
    }

    #[test]
    fn rejects_what_is_not_a_key() {
        assert!(sec1_to_pkcs8(&[]).is_err());
        assert!(sec1_to_pkcs8(&der(SEQUENCE, &[0x02, 0x01, 0x00])).is_err());
        assert!(pkcs1_to_pkcs8(&[0x04, 0x00]).is_err());
        let wrong_curve = der(
            SEQUENCE,
            &[
                &[0x02, 0x01, 0x01][..],
                &der(OCTET_STRING, &[1; 32]),
                &der(EC_PARAMETERS, &[0x06, 0x03, 0x2b, 0x65, 0x70]),
            ]
            .concat(),
        );
        assert!(sec1_to_pkcs8(&wrong_curve).unwrap_err().contains("curve"));
    }
}
