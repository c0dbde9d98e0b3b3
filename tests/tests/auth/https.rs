//! Identity providers over HTTPS: a JWKS and an introspection endpoint behind real TLS (a test
//! CA, the platform trust store, a server-name override, a client certificate), and the
//! failures a real deployment meets — wrong CA, expired certificate, wrong name — each logged
//! with the setting to fix while the node keeps serving everything else.

use std::path::Path;
use std::process::Stdio;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::harness::{NodeProcess, PATIENCE, meshgate_bin};
use support::idp::{INTROSPECTION_CLIENT, SigningKey, TestIdp, now};
use support::tls::{TestCa, server_config};
use support::{BOTH, Proto, TestClient};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{echo_route, node_yaml, start};

const CONSUMERS: &str = "consumers:\n  - username: alice\n    credentials: [{ jwt: { provider: corp, subject: alice } }, { oauth2: { provider: oauth, subject: app-42 } }]";

fn token(rsa: &SigningKey) -> String {
    rsa.sign(&json!({"sub": "alice", "exp": now() + 300}))
}

/// An https IdP whose certificate (for 127.0.0.1) `ca` signed, with an RS256 key and an active
/// opaque token `opaque-1`.
async fn https_idp(ca: &TestCa, names: &[&str]) -> (TestIdp, SigningKey) {
    let idp = TestIdp::start_https(server_config(&ca.server(names), None)).await;
    let rsa = SigningKey::load("rsa-a", Algorithm::RS256, "a");
    idp.set_keys(vec![rsa.jwk()]);
    idp.set_token(
        "opaque-1",
        json!({"active": true, "client_id": "app-42", "exp": now() + 300}),
    );
    (idp, rsa)
}

fn jwt_provider(name: &str, url: &str, tls: &str) -> String {
    format!(
        "    - {{ name: {name}, algorithms: [RS256], jwks: {{ url: \"{url}\", timeout: 2s, refresh_interval: 1h, min_refetch_interval: 1h{tls} }} }}\n"
    )
}

fn introspection(url: &str, tls: &str, secret: &str) -> String {
    format!(
        "    - {{ name: oauth, endpoint: \"{url}\", client_id: {id}, {secret}, timeout: 2s{tls} }}\n",
        id = INTROSPECTION_CLIENT.0
    )
}

fn tls_ca(ca: &Path) -> String {
    format!(", tls: {{ ca: \"{}\" }}", ca.display())
}

fn routes() -> String {
    [
        echo_route("jwt", "/jwt", "{ methods: [{ jwt: corp }] }"),
        echo_route(
            "opaque",
            "/opaque",
            "{ methods: [{ introspection: oauth }] }",
        ),
        echo_route("open", "/open", ""),
    ]
    .concat()
}

async fn assert_both_methods_authenticate(c: &TestClient, jwt: &str) {
    let r = c
        .get_with("/jwt", &[("authorization", &format!("Bearer {jwt}"))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-consumer-username"], "alice");
    let r = c
        .get_with("/opaque", &[("authorization", "Bearer opaque-1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-consumer-username"], "alice");
}

#[tokio::test]
async fn jwks_and_introspection_over_https_with_a_configured_ca() {
    let ca = TestCa::new("idp-ca");
    let (idp, rsa) = https_idp(&ca, &["127.0.0.1"]).await;
    // The client secret comes from a file (with the trailing newline `echo` leaves).
    let secret_file = ca.dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{}\n", INTROSPECTION_CLIENT.1)).unwrap();
    let secret = format!("client_secret_file: \"{}\"", secret_file.display());
    let auth = format!(
        "auth:\n  jwt:\n{}  introspection:\n{}",
        jwt_provider("corp", &idp.jwks_url(), &tls_ca(&ca.ca_path())),
        introspection(&idp.introspection_url(), &tls_ca(&ca.ca_path()), &secret),
    );
    let node = start(&node_yaml(&auth, CONSUMERS, &routes())).await;
    for proto in BOTH {
        assert_both_methods_authenticate(&node.client(proto, "main"), &token(&rsa)).await;
    }
    assert_eq!(idp.jwks_fetches(), 1);
    assert_eq!(idp.introspection_calls(), 1);
    assert_eq!(idp.tls_failures(), 0);
}

#[tokio::test]
async fn server_name_override_and_a_client_certificate() {
    let ca = TestCa::new("idp-ca");
    let client_ca = TestCa::new("gateway-clients");
    let client = client_ca.client("gateway");
    // The IdP is reached at 127.0.0.1 but its certificate names idp.internal, and it requires
    // a client certificate from `client_ca`.
    let idp = TestIdp::start_https(server_config(
        &ca.server(&["idp.internal"]),
        Some(&client_ca),
    ))
    .await;
    let rsa = SigningKey::load("rsa-a", Algorithm::RS256, "a");
    idp.set_keys(vec![rsa.jwk()]);
    idp.set_token(
        "opaque-1",
        json!({"active": true, "client_id": "app-42", "exp": now() + 300}),
    );
    let tls = format!(
        ", tls: {{ ca: \"{}\", server_name: idp.internal, client_certificate: {{ cert: \"{}\", key: \"{}\" }} }}",
        ca.ca_path().display(),
        client.cert.display(),
        client.key.display()
    );
    let secret = format!("client_secret: \"{}\"", INTROSPECTION_CLIENT.1);
    let auth = format!(
        "auth:\n  jwt:\n{}  introspection:\n{}",
        jwt_provider("corp", &idp.jwks_url(), &tls),
        introspection(&idp.introspection_url(), &tls, &secret),
    );
    let node = start(&node_yaml(&auth, CONSUMERS, &routes())).await;
    assert_both_methods_authenticate(&node.client(Proto::Http1, "main"), &token(&rsa)).await;
    assert_eq!(idp.tls_failures(), 0);
}

/// A config for the real binary: its admin listener on a free port too (the default port may be
/// taken by another test's node).
fn process_yaml(auth: &str, routes: &str) -> String {
    format!(
        "admin:\n  address: \"127.0.0.1:0\"\n{}",
        node_yaml(auth, CONSUMERS, routes)
    )
}

/// The real binary with extra environment variables (the platform trust store is read from
/// `SSL_CERT_FILE`); returns the process and its `main` listener once it is ready.
async fn spawn_with_env(
    config: &Path,
    env: &[(&str, &Path)],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut command = tokio::process::Command::new(meshgate_bin());
    command
        .args(["run", "--config"])
        .arg(config)
        .env("MESHGATE_LOG_FORMAT", "json")
        .env("MESHGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn meshgate");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["message"] == "meshgate ready"
            {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("meshgate did not become ready");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = ready["listeners"]
        .as_str()
        .unwrap()
        .split(',')
        .find_map(|pair| pair.strip_prefix("main="))
        .unwrap()
        .parse()
        .unwrap();
    (child, addr)
}

#[tokio::test]
async fn without_a_ca_the_platform_trust_store_is_used() {
    let ca = TestCa::new("platform-ca");
    let (idp, rsa) = https_idp(&ca, &["127.0.0.1"]).await;
    let secret = format!("client_secret: \"{}\"", INTROSPECTION_CLIENT.1);
    let auth = format!(
        "auth:\n  jwt:\n{}  introspection:\n{}",
        jwt_provider("corp", &idp.jwks_url(), ""),
        introspection(&idp.introspection_url(), "", &secret),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshgate.yaml");
    std::fs::write(&config, process_yaml(&auth, &routes())).unwrap();
    // The test CA is the whole platform store of this process.
    let (_child, addr) =
        spawn_with_env(&config, &[("SSL_CERT_FILE", ca.ca_path().as_path())]).await;
    assert_both_methods_authenticate(&TestClient::new(Proto::Http1, addr), &token(&rsa)).await;
}

#[tokio::test]
async fn tls_failures_name_the_setting_and_only_that_provider_is_refused() {
    let ca = TestCa::new("idp-ca");
    let other_ca = TestCa::new("unrelated-ca");
    let (good, rsa) = https_idp(&ca, &["127.0.0.1"]).await;
    let expired =
        TestIdp::start_https(server_config(&ca.expired_server(&["127.0.0.1"]), None)).await;
    expired.set_keys(vec![rsa.jwk()]);
    let misnamed = TestIdp::start_https(server_config(&ca.server(&["idp.example"]), None)).await;
    misnamed.set_keys(vec![rsa.jwk()]);
    let trusted = tls_ca(&ca.ca_path());
    let secret = format!("client_secret: \"{}\"", INTROSPECTION_CLIENT.1);
    let auth = format!(
        "auth:\n  jwt:\n{}{}{}  introspection:\n{}",
        jwt_provider("corp", &good.jwks_url(), &tls_ca(&other_ca.ca_path())),
        jwt_provider("expired", &expired.jwks_url(), &trusted),
        jwt_provider("misnamed", &misnamed.jwks_url(), &trusted),
        introspection(
            &good.introspection_url(),
            &tls_ca(&other_ca.ca_path()),
            &secret
        ),
    );
    let routes = [
        routes(),
        echo_route("expired", "/expired", "{ methods: [{ jwt: expired }] }"),
        echo_route("misnamed", "/misnamed", "{ methods: [{ jwt: misnamed }] }"),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshgate.yaml");
    std::fs::write(&config, process_yaml(&auth, &routes)).unwrap();
    let node = NodeProcess::spawn(&config).await;
    for needle in [
        "auth.jwt[0].jwks.tls: the server's certificate is not signed by a trusted CA",
        "auth.jwt[1].jwks.tls: the server's certificate has expired",
        "auth.jwt[2].jwks.tls: the server's certificate is not valid for the name checked",
    ] {
        node.wait_for_log(needle).await;
    }
    let jwt = format!("Bearer {}", token(&rsa));
    for proto in BOTH {
        let c = TestClient::new(proto, node.addr("main"));
        for path in ["/jwt", "/expired", "/misnamed"] {
            // No key set could be loaded: the token cannot be verified (401, RFC 6750 §3.1).
            let r = c.get_with(path, &[("authorization", &jwt)]).await;
            assert_eq!(r.status, 401, "{path}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], 401);
        }
        // The introspection endpoint cannot be reached safely: the IdP is unavailable (503).
        let r = c
            .get_with("/opaque", &[("authorization", "Bearer opaque-1")])
            .await;
        assert_eq!(r.status, 503, "{}", r.text());
        let body = r.json();
        assert_eq!(body["error"]["code"], 503);
        assert_eq!(
            body["error"]["message"],
            "authentication service unavailable"
        );
        assert!(body["error"]["request_id"].is_string());
        // Everything that does not need those providers keeps serving.
        assert_eq!(c.get("/open").await.status, 200);
    }
    node.wait_for_log(
        "auth.introspection[0].tls: the server's certificate is not signed by a trusted CA",
    )
    .await;
    assert_eq!(
        good.jwks_fetches(),
        0,
        "no request crossed an untrusted handshake"
    );
    assert_eq!(good.introspection_calls(), 0);
}
