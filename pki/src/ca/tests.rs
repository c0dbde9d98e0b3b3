//! CA creation, PEM round trips (including an offline root) and refusal of inconsistent material.

use super::*;
use crate::test_support::{test_ca, test_leaf_request};

#[test]
fn root_only_ca_round_trips_through_pem() {
    let ca = test_ca("ca.test", false);
    assert_eq!(ca.trust_domain(), "ca.test");
    assert!(ca.intermediate_cert().is_none());
    let pem = ca.to_pem();
    assert!(
        pem.root_key.is_some() && pem.intermediate_cert.is_none() && pem.intermediate_key.is_none()
    );

    let loaded = CertificateAuthority::from_pem(&pem).unwrap();
    assert_eq!(loaded.root_cert(), ca.root_cert());
    assert_eq!(loaded.trust_domain(), "ca.test");
    assert_eq!(loaded.to_pem(), pem);
    let leaf = loaded
        .issue(&test_leaf_request("ca.test", "a", "b"))
        .unwrap();
    assert_eq!(leaf.chain().len(), 1);
    assert_eq!(
        leaf.info().issuer,
        CertInfo::from_der(ca.root_cert()).unwrap().subject
    );
}

#[test]
fn root_names_the_trust_domain_and_is_a_ca() {
    let ca = test_ca("ca.test", true);
    let root = CertInfo::from_der(ca.root_cert()).unwrap();
    assert!(root.is_ca);
    assert_eq!(root.uri_sans, vec!["spiffe://ca.test".to_owned()]);
    assert_eq!(root.subject, root.issuer, "self-signed");
    let intermediate = CertInfo::from_der(ca.intermediate_cert().unwrap()).unwrap();
    assert!(intermediate.is_ca);
    assert_eq!(intermediate.issuer, root.subject);
    assert!(intermediate.not_after <= root.not_after);
    assert_eq!(ca.issuer_not_after(), intermediate.not_after);
    assert_eq!(
        ca.trust_bundle().roots(),
        std::slice::from_ref(ca.root_cert())
    );
}

#[test]
fn intermediate_ca_loads_with_the_root_key_offline() {
    let ca = test_ca("ca.test", true);
    let mut pem = ca.to_pem();
    assert!(
        pem.root_key.is_some() && pem.intermediate_cert.is_some() && pem.intermediate_key.is_some()
    );

    pem.root_key = None;
    let offline = CertificateAuthority::from_pem(&pem).unwrap();
    let leaf = offline
        .issue(&test_leaf_request("ca.test", "a", "b"))
        .unwrap();
    assert_eq!(leaf.chain()[1], *ca.intermediate_cert().unwrap());
    assert_eq!(offline.to_pem().root_key, None);
}

#[test]
fn inconsistent_material_is_refused_with_the_reason() {
    let ca = test_ca("ca.test", true);
    let other = test_ca("ca.test", true);
    let good = ca.to_pem();
    let expect_error = |pem: CaPem, needle: &str| {
        let err = CertificateAuthority::from_pem(&pem)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    };

    expect_error(
        CaPem {
            root_key: other.to_pem().root_key,
            ..good.clone()
        },
        "root CA key: does not match its certificate",
    );
    expect_error(
        CaPem {
            intermediate_key: other.to_pem().intermediate_key,
            ..good.clone()
        },
        "intermediate CA key: does not match its certificate",
    );
    expect_error(
        CaPem {
            intermediate_cert: other.to_pem().intermediate_cert,
            intermediate_key: other.to_pem().intermediate_key,
            ..good.clone()
        },
        "signature does not verify with the root CA",
    );
    expect_error(
        CaPem {
            intermediate_key: None,
            ..good.clone()
        },
        "must be given together",
    );
    expect_error(
        CaPem {
            root_key: None,
            intermediate_cert: None,
            intermediate_key: None,
            ..good.clone()
        },
        "nothing can sign",
    );
    let leaf = ca.issue(&test_leaf_request("ca.test", "a", "b")).unwrap();
    expect_error(
        CaPem {
            root_cert: leaf.chain_pem(),
            ..good.clone()
        },
        "root CA certificate",
    );
    expect_error(
        CaPem {
            root_cert: String::new(),
            ..good
        },
        "root CA certificate: no CERTIFICATE block",
    );
}

#[test]
fn every_key_algorithm_creates_loads_and_issues() {
    for algorithm in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
    ] {
        let options = CaOptions {
            key_algorithm: algorithm,
            with_intermediate: true,
            ..CaOptions::default()
        };
        let ca = CertificateAuthority::new("ca.test", &options).unwrap();
        let loaded = CertificateAuthority::from_pem(&ca.to_pem())
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
        let mut request = test_leaf_request("ca.test", "a", "b");
        request.key_algorithm = algorithm;
        let leaf = loaded.issue(&request).unwrap();
        assert_eq!(
            leaf.chain()[1],
            *ca.intermediate_cert().unwrap(),
            "{algorithm:?}"
        );
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CertificateAuthority>();
    send_sync::<crate::CertifiedLeaf>();
    send_sync::<crate::SwappableCert>();
    send_sync::<crate::PendingLeaf>();
    send_sync::<PkiError>();
}

#[test]
fn invalid_trust_domain_is_refused() {
    let err = CertificateAuthority::new("Mesh.Local", &CaOptions::default()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidSpiffeId { .. }), "{err}");
}

#[test]
fn ca_pem_debug_elides_keys() {
    let text = format!("{:?}", test_ca("ca.test", true).to_pem());
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(text.contains("[private key elided]"));
}
