//! JWS verification keys, each bound to the algorithms it may verify, and [`verify_signature`]:
//! the one signature check every JWT goes through. Parses keys written in the config (PEM,
//! HMAC secrets) and JSON Web Key Sets; never trusts a key that arrives inside a token.
//!
//! Keys are parsed and checked with jsonwebtoken (PEM, its RustCrypto backend validates points
//! and sizes, always through its provider explicitly so no process-wide provider selection can
//! panic). Signatures are verified with *ring* — the crypto rustls already uses here; about
//! twice as fast as the RustCrypto `rsa` crate on an uncached RS256 request in our measurement
//! (~41 µs of CPU per request, all included), and HMAC tags are compared in constant time. The
//! Wycheproof vectors in the tests run through [`verify_signature`] itself.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
pub use jsonwebtoken::{Algorithm, AlgorithmFamily};
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use serde::Deserialize;

/// RFC 7518 §3.3: RSA keys of at least 2048 bits.
pub const MIN_RSA_BITS: usize = 2048;
/// A JWKS with more keys than this is refused (a key set is a handful of keys).
pub const MAX_JWKS_KEYS: usize = 64;

/// Every JWS algorithm meshgate verifies, by its registered name (RFC 7518 §3.1, RFC 8037).
pub const SUPPORTED_ALGORITHMS: [(&str, Algorithm); 12] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// The algorithm with exactly this registered name (case-sensitive: `none`, `None` and `nOnE`
/// are all unknown).
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    SUPPORTED_ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

/// The registered name of an algorithm.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    SUPPORTED_ALGORITHMS
        .iter()
        .find(|(_, a)| *a == alg)
        .map_or("?", |(n, _)| n)
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported algorithm {0:?}")]
    UnknownAlgorithm(String),
    #[error("{alg} needs {expected}")]
    WrongKeyType {
        alg: &'static str,
        expected: &'static str,
    },
    #[error("not a valid {0} public key")]
    Invalid(&'static str),
    #[error("RSA key of {0} bits; at least {MIN_RSA_BITS} are required")]
    RsaTooSmall(usize),
    #[error("{alg} needs a secret of at least {min} bytes, got {got}")]
    SecretTooShort {
        alg: &'static str,
        min: usize,
        got: usize,
    },
    #[error("not a JSON Web Key Set: {0}")]
    NotAJwks(String),
    #[error("the key set has {0} keys; at most {MAX_JWKS_KEYS} are accepted")]
    TooManyKeys(usize),
}

/// A public key or HMAC secret, usable only with the algorithms it is bound to.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    /// Never empty; all of one family.
    pub algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// A public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) for one asymmetric algorithm.
    pub fn from_pem(kid: Option<String>, alg: Algorithm, pem: &str) -> Result<Self, KeyError> {
        let name = algorithm_name(alg);
        let bytes = pem.as_bytes();
        let key = match alg.family() {
            AlgorithmFamily::Rsa => {
                let parsed =
                    DecodingKey::from_rsa_pem(bytes).map_err(|_| KeyError::Invalid("RSA"))?;
                let der = parsed
                    .try_get_as_bytes()
                    .map_err(|_| KeyError::Invalid("RSA"))?;
                let (n, e) = (DEFAULT_PROVIDER
                    .key_utils
                    .rsa_pub_components_from_public_key)(der)
                .map_err(|_| KeyError::Invalid("RSA"))?;
                rsa_key(&n, &e)?
            }
            AlgorithmFamily::Ec => {
                DecodingKey::from_ec_pem(bytes).map_err(|_| KeyError::Invalid(curve_name(alg)))?
            }
            AlgorithmFamily::Ed => {
                DecodingKey::from_ed_pem(bytes).map_err(|_| KeyError::Invalid("Ed25519"))?
            }
            AlgorithmFamily::Hmac => {
                return Err(KeyError::WrongKeyType {
                    alg: name,
                    expected: "a secret, not a PEM public key",
                });
            }
        };
        Self::bound(kid, vec![alg], key)
    }

    /// An HMAC secret for HS256/384/512 (RFC 7518 §3.2: at least the hash's size).
    pub fn from_secret(
        kid: Option<String>,
        alg: Algorithm,
        secret: &[u8],
    ) -> Result<Self, KeyError> {
        let name = algorithm_name(alg);
        let min = match alg {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => {
                return Err(KeyError::WrongKeyType {
                    alg: name,
                    expected: "a PEM public key, not a secret",
                });
            }
        };
        if secret.len() < min {
            return Err(KeyError::SecretTooShort {
                alg: name,
                min,
                got: secret.len(),
            });
        }
        Self::bound(kid, vec![alg], DecodingKey::from_secret(secret))
    }

    /// Check that every algorithm can be used with the key (curve, size, point on the curve).
    fn bound(
        kid: Option<String>,
        algorithms: Vec<Algorithm>,
        key: DecodingKey,
    ) -> Result<Self, KeyError> {
        for alg in &algorithms {
            if alg.family() != key.family() {
                return Err(KeyError::Invalid(algorithm_name(*alg)));
            }
            if (DEFAULT_PROVIDER.verifier_factory)(alg, &key).is_err() {
                return Err(KeyError::Invalid(curve_name(*alg)));
            }
        }
        if algorithms.is_empty() {
            return Err(KeyError::Invalid("(no algorithm)"));
        }
        Ok(Self {
            kid,
            algorithms,
            key,
        })
    }

    pub fn family(&self) -> AlgorithmFamily {
        self.key.family()
    }

    /// A key built from raw parts, for the test vectors: the same checks as config and JWKS
    /// keys except the key-size policy.
    #[cfg(test)]
    pub(crate) fn from_raw_for_tests(alg: Algorithm, key: RawKey<'_>) -> Result<Self, KeyError> {
        let key = match key {
            RawKey::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
            RawKey::Ec { x, y } => DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(x),
                &URL_SAFE_NO_PAD.encode(y),
            )
            .map_err(|_| KeyError::Invalid("EC"))?,
            RawKey::Ed(x) => DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(x))
                .map_err(|_| KeyError::Invalid("Ed25519"))?,
            RawKey::Secret(s) => DecodingKey::from_secret(s),
        };
        Self::bound(None, vec![alg], key)
    }
}

/// Raw key material (test vectors).
#[cfg(test)]
pub(crate) enum RawKey<'a> {
    Rsa { n: &'a [u8], e: &'a [u8] },
    Ec { x: &'a [u8], y: &'a [u8] },
    Ed(&'a [u8]),
    Secret(&'a [u8]),
}

fn curve_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "P-256",
        Algorithm::ES384 => "P-384",
        Algorithm::EdDSA => "Ed25519",
        other => algorithm_name(other),
    }
}

fn rsa_key(n: &[u8], e: &[u8]) -> Result<DecodingKey, KeyError> {
    let bits = bit_length(n);
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall(bits));
    }
    Ok(DecodingKey::from_rsa_raw_components(n, e))
}

fn bit_length(big_endian: &[u8]) -> usize {
    let trimmed: &[u8] = match big_endian.iter().position(|b| *b != 0) {
        Some(i) => &big_endian[i..],
        None => &[],
    };
    match trimmed.first() {
        Some(first) => (trimmed.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// Verify a JWS signature: `signing_input` is `base64url(header) "." base64url(payload)`,
/// `signature` the decoded third segment. False when the key is not bound to `alg` — this is
/// where algorithm confusion (an RSA public key used as an HMAC secret) is refused.
pub fn verify_signature(
    key: &VerificationKey,
    alg: Algorithm,
    signing_input: &[u8],
    signature: &[u8],
) -> bool {
    if signature.is_empty() || !key.algorithms.contains(&alg) || alg.family() != key.key.family() {
        return false;
    }
    use ring::signature as sig;
    let bytes = match key.key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => bytes.as_slice(),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            let params: &sig::RsaParameters = match alg {
                Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            // ring wants minimal big-endian integers.
            let components = sig::RsaPublicKeyComponents {
                n: strip_leading_zeros(n),
                e: strip_leading_zeros(e),
            };
            return components.verify(params, signing_input, signature).is_ok();
        }
    };
    let hmac = |algorithm| {
        ring::hmac::verify(
            &ring::hmac::Key::new(algorithm, bytes),
            signing_input,
            signature,
        )
        .is_ok()
    };
    let public = |algorithm: &'static dyn sig::VerificationAlgorithm| {
        sig::UnparsedPublicKey::new(algorithm, bytes)
            .verify(signing_input, signature)
            .is_ok()
    };
    match alg {
        // ring::hmac::verify compares in constant time.
        Algorithm::HS256 => hmac(ring::hmac::HMAC_SHA256),
        Algorithm::HS384 => hmac(ring::hmac::HMAC_SHA384),
        Algorithm::HS512 => hmac(ring::hmac::HMAC_SHA512),
        Algorithm::ES256 => public(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => public(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => public(&sig::ED25519),
        _ => false,
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A parsed key set: the usable keys and why the others were skipped.
#[derive(Debug, Default)]
pub struct ParsedJwks {
    pub keys: Vec<VerificationKey>,
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK we read (RFC 7517 §4, RFC 7518 §6).
#[derive(Deserialize)]
struct JwkMembers {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Parse a JWKS document (RFC 7517 §5). A key is bound to its `alg` when it names one (which
/// must be among `allowed`), else to the `allowed` algorithms of its type. Symmetric (`oct`)
/// keys are never taken from a key set; keys for encryption are skipped.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Result<ParsedJwks, KeyError> {
    let doc: JwksDocument =
        serde_json::from_slice(body).map_err(|e| KeyError::NotAJwks(e.to_string()))?;
    if doc.keys.len() > MAX_JWKS_KEYS {
        return Err(KeyError::TooManyKeys(doc.keys.len()));
    }
    let mut parsed = ParsedJwks::default();
    for (i, value) in doc.keys.into_iter().enumerate() {
        match serde_json::from_value::<JwkMembers>(value)
            .map_err(|e| format!("not a JWK: {e}"))
            .and_then(|jwk| jwk_to_key(&jwk, allowed))
        {
            Ok(key) => parsed.keys.push(key),
            Err(reason) => parsed.skipped.push(format!("keys[{i}]: {reason}")),
        }
    }
    Ok(parsed)
}

fn jwk_to_key(jwk: &JwkMembers, allowed: &[Algorithm]) -> Result<VerificationKey, String> {
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signature key (use)".into());
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err("key_ops does not include verify".into());
    }
    let b64 = |field: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let text = field.as_deref().ok_or_else(|| format!("missing {name}"))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| format!("{name} is not base64url"))
    };
    let (key, family) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let key = rsa_key(&b64(&jwk.n, "n")?, &b64(&jwk.e, "e")?).map_err(|e| e.to_string())?;
            (key, AlgorithmFamily::Rsa)
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = (b64(&jwk.x, "x")?, b64(&jwk.y, "y")?);
            let size = if crv == "P-256" { 32 } else { 48 };
            if x.len() != size || y.len() != size {
                return Err(format!("{crv} coordinates must be {size} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (DecodingKey::from_ec_der(&point), AlgorithmFamily::Ec)
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64(&jwk.x, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 x must be 32 bytes".into());
            }
            (DecodingKey::from_ed_der(&x), AlgorithmFamily::Ed)
        }
        ("oct", _) => return Err("symmetric keys are not accepted from a key set".into()),
        (kty, crv) => return Err(format!("unsupported key type {kty} {}", crv.unwrap_or(""))),
    };
    let algorithms: Vec<Algorithm> = match &jwk.alg {
        Some(name) => {
            let alg = parse_algorithm(name).ok_or_else(|| format!("unsupported alg {name:?}"))?;
            if !allowed.contains(&alg) {
                return Err(format!("alg {name} is not allowed for this provider"));
            }
            vec![alg]
        }
        None => allowed
            .iter()
            .copied()
            .filter(|a| a.family() == family && curve_matches(*a, jwk.crv.as_deref()))
            .collect(),
    };
    if algorithms.is_empty() {
        return Err("no allowed algorithm fits this key".into());
    }
    VerificationKey::bound(jwk.kid.clone(), algorithms, key).map_err(|e| e.to_string())
}

/// ES256 is P-256 only and ES384 P-384 only (RFC 7518 §3.4).
fn curve_matches(alg: Algorithm, crv: Option<&str>) -> bool {
    match alg {
        Algorithm::ES256 => crv == Some("P-256"),
        Algorithm::ES384 => crv == Some("P-384"),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
