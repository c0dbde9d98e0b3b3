use super::*;

fn self_signed(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn edge(names: &[&str], configured: Vec<String>) -> EdgeCertificate {
    let (cert, key) = self_signed(names);
    EdgeCertificate::from_pem(cert.as_bytes(), key.as_bytes(), configured).unwrap()
}

#[test]
fn names_come_from_sans_unless_configured() {
    let c = edge(&["Example.com", "www.example.com"], vec![]);
    assert_eq!(c.names, vec!["example.com", "www.example.com"]);
    let c = edge(&["example.com"], vec!["*.Other.test".into()]);
    assert_eq!(c.names, vec!["*.other.test"]);
}

#[test]
fn sni_picks_exact_then_one_level_wildcard_then_default() {
    let default = edge(&["default.test"], vec![]);
    let exact = edge(&["api.example.com"], vec![]);
    let wild = edge(&["*.example.com"], vec![]);
    let r = SniResolver::new(&[default.clone(), exact.clone(), wild.clone()]).unwrap();
    let same = |a: &Arc<CertifiedKey>, b: &EdgeCertificate| Arc::ptr_eq(a, &b.key);
    assert!(same(&r.pick(Some("api.example.com")), &exact));
    assert!(same(&r.pick(Some("www.example.com")), &wild));
    // A wildcard covers one label only.
    assert!(same(&r.pick(Some("a.b.example.com")), &default));
    assert!(same(&r.pick(Some("example.com")), &default));
    assert!(same(&r.pick(None), &default));
}

#[test]
fn a_key_that_does_not_match_is_refused() {
    let (cert, _) = self_signed(&["a.test"]);
    let (_, other_key) = self_signed(&["b.test"]);
    let err = EdgeCertificate::from_pem(cert.as_bytes(), other_key.as_bytes(), vec![]).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = EdgeCertificate::from_pem(b"not pem", other_key.as_bytes(), vec![]).unwrap_err();
    assert!(err.to_string().contains("certificate chain"), "{err}");
}

#[test]
fn configs_build_with_and_without_client_auth() {
    let c = edge(&["a.test"], vec![]);
    let options = EdgeTlsOptions {
        allow_tls12: false,
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        client_roots: None,
        client_cert_required: false,
    };
    let config = edge_server_config(std::slice::from_ref(&c), &options).unwrap();
    assert_eq!(config.alpn_protocols.len(), 2);
    let roots = certificates_from_pem(self_signed(&["ca.test"]).0.as_bytes()).unwrap();
    let with_clients = EdgeTlsOptions {
        client_roots: Some(roots.clone()),
        client_cert_required: true,
        ..options
    };
    edge_server_config(std::slice::from_ref(&c), &with_clients).unwrap();
    upstream_client_config(&roots, Some(&c), vec![]).unwrap();
    assert!(edge_server_config(&[], &with_clients).is_err());
}
