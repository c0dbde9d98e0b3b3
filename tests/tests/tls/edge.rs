//! Edge TLS termination on a listener.

use support::TestNode;
use support::tls::{IssuedFiles, TestCa, TlsClientOptions, dns_names, https_get};

fn tls_config(certs: &[(&IssuedFiles, &[&str])], min_version: &str, extra_tls: &str) -> String {
    let certificates: Vec<String> = certs
        .iter()
        .map(|(f, names)| {
            let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            format!(
                "{{ cert: \"{}\", key: \"{}\", server_names: [{}] }}",
                f.cert.display(),
                f.key.display(),
                names.join(", ")
            )
        })
        .collect();
    format!(
        r#"
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates: [{}]
      min_version: "{min_version}"
      hsts: {{ max_age: 1d, include_subdomains: true }}
{extra_tls}
routes:
  - {{ match: {{ paths: ["/echo"] }}, respond: {{ echo: true }} }}
  - {{ respond: {{ body: "secure" }} }}
"#,
        certificates.join(", ")
    )
}

#[tokio::test]
async fn terminates_tls13_with_hsts_and_picks_certificates_by_sni() {
    let ca = TestCa::new("edge CA");
    let main = ca.server(&["gateway.test"]);
    let wild = ca.server(&["*.wild.test"]);
    let node = TestNode::start(&tls_config(&[(&main, &[]), (&wild, &[])], "1.3", "")).await;
    let addr = node.addr("https");
    let client = TlsClientOptions::trusting(&ca);

    let r = https_get(addr, "gateway.test", "/echo", &client)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(
        r.headers["strict-transport-security"],
        "max-age=86400; includeSubDomains"
    );
    assert_eq!(dns_names(&r.server_cert), vec!["gateway.test"]);

    let r = https_get(addr, "api.wild.test", "/", &client)
        .await
        .unwrap();
    assert_eq!(dns_names(&r.server_cert), vec!["*.wild.test"]);
    assert_eq!(&r.body[..], b"secure");

    // An unknown name gets the default (first) certificate, which the client then rejects.
    let err = https_get(addr, "other.test", "/", &client)
        .await
        .unwrap_err();
    assert!(err.contains("handshake"), "{err}");
}

#[tokio::test]
async fn alpn_selects_h2_and_tls12_is_refused_unless_enabled() {
    let ca = TestCa::new("edge CA");
    let cert = ca.server(&["gateway.test"]);
    let node = TestNode::start(&tls_config(&[(&cert, &[])], "1.3", "")).await;
    let addr = node.addr("https");

    let h2 = TlsClientOptions {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..TlsClientOptions::trusting(&ca)
    };
    let r = https_get(addr, "gateway.test", "/", &h2).await.unwrap();
    assert_eq!(r.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(r.status, 200);

    let tls12 = TlsClientOptions {
        tls12_only: true,
        ..TlsClientOptions::trusting(&ca)
    };
    let err = https_get(addr, "gateway.test", "/", &tls12)
        .await
        .unwrap_err();
    assert!(err.contains("handshake"), "{err}");

    let permissive = TestNode::start(&tls_config(&[(&cert, &[])], "1.2", "")).await;
    let r = https_get(permissive.addr("https"), "gateway.test", "/", &tls12)
        .await
        .unwrap();
    assert_eq!(r.version, rustls::ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let ca = TestCa::new("edge CA");
    let clients = TestCa::new("client CA");
    let cert = ca.server(&["gateway.test"]);
    let extra = format!(
        "      client_auth: {{ ca: \"{}\", required: true }}",
        clients.ca_path().display()
    );
    let node = TestNode::start(&tls_config(&[(&cert, &[])], "1.3", &extra)).await;
    let addr = node.addr("https");

    let anonymous = TlsClientOptions::trusting(&ca);
    assert!(
        https_get(addr, "gateway.test", "/", &anonymous)
            .await
            .is_err()
    );

    let wrong_ca = TlsClientOptions {
        client_cert: Some(ca.client("mallory")),
        ..TlsClientOptions::trusting(&ca)
    };
    assert!(
        https_get(addr, "gateway.test", "/", &wrong_ca)
            .await
            .is_err()
    );

    let good = TlsClientOptions {
        client_cert: Some(clients.client("alice")),
        ..TlsClientOptions::trusting(&ca)
    };
    let r = https_get(addr, "gateway.test", "/", &good).await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn certificates_reload_without_a_restart_and_broken_files_are_rejected() {
    let ca = TestCa::new("edge CA");
    let first = ca.server(&["gateway.test"]);
    let node = TestNode::start(&tls_config(&[(&first, &[])], "1.3", "")).await;
    let addr = node.addr("https");
    let client = TlsClientOptions::trusting(&ca);
    let before = https_get(addr, "gateway.test", "/", &client)
        .await
        .unwrap()
        .server_cert;

    // Renewed files at the same paths; the reload (file change or SIGHUP) reads them again.
    let renewed = ca.server(&["gateway.test"]);
    std::fs::copy(&renewed.cert, &first.cert).unwrap();
    std::fs::copy(&renewed.key, &first.key).unwrap();
    let config = tls_config(&[(&first, &[])], "1.3", "");
    let compiled = meshgate_config::compile(
        &meshgate_config::parse_str(
            &format!("admin: {{ address: \"127.0.0.1:0\" }}\n{config}"),
            meshgate_config::Format::Yaml,
        )
        .unwrap(),
    )
    .unwrap();
    node.handle().apply(compiled).await.unwrap();
    let after = https_get(addr, "gateway.test", "/", &client)
        .await
        .unwrap()
        .server_cert;
    assert_ne!(before, after, "the renewed certificate is served");

    let missing = IssuedFiles {
        cert: node.dir().join("nope.pem"),
        key: first.key.clone(),
    };
    let event = node
        .rewrite_config(&tls_config(&[(&missing, &[])], "1.3", ""))
        .await;
    let error = event.result.unwrap_err();
    assert!(
        error.contains("listeners[0].tls.certificates[0].cert: cannot read"),
        "{error}"
    );
    // Still serving the previous certificate.
    assert_eq!(
        https_get(addr, "gateway.test", "/", &client)
            .await
            .unwrap()
            .server_cert,
        after
    );
}

#[tokio::test]
async fn forwarded_proto_is_https_behind_tls() {
    let backend = support::Backend::start("b").await;
    let ca = TestCa::new("edge CA");
    let cert = ca.server(&["gateway.test"]);
    let config = format!(
        r#"
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls: {{ certificates: [{{ cert: "{}", key: "{}" }}] }}
routes:
  - {{ proxy: {{ upstream: b }} }}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}
"#,
        cert.cert.display(),
        cert.key.display(),
        backend.addr()
    );
    let node = TestNode::start(&config).await;
    let r = https_get(
        node.addr("https"),
        "gateway.test",
        "/echo",
        &TlsClientOptions::trusting(&ca),
    )
    .await
    .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
}

/// An independent check of the edge TLS settings: sslyze against Mozilla's "modern" profile.
#[tokio::test]
async fn edge_tls_meets_the_mozilla_modern_profile() {
    let ca = TestCa::new("sslyze CA");
    let cert = ca.server(&["localhost"]);
    let node = TestNode::start(&tls_config(&[(&cert, &[])], "1.3", "")).await;
    let target = format!("localhost:{}", node.addr("https").port());
    let output = tokio::process::Command::new("sslyze")
        .args(["--mozilla_config=modern", "--certinfo_ca_file"])
        .arg(ca.ca_path())
        .arg(&target)
        .output()
        .await
        .expect("sslyze is installed by scripts/install-deps (pip install sslyze)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("OK - Compliant"),
        "sslyze says:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
