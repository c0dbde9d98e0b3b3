//! `meshgate hash-key` through the real binary, and a config using its output.

use support::Proto;
use support::harness::meshgate_bin;

use super::{echo_route, node_yaml, start};

async fn hash_key(args: &[&str], stdin: &str) -> (std::process::ExitStatus, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(meshgate_bin())
        .arg("hash-key")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(support::harness::PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn hash_key_output_authenticates_that_key() {
    let key = "partner.Zq8-vN3rT5yU7iO9pA1s";
    let (status, stdout, stderr) = hash_key(&[], &format!("{key}\n")).await;
    assert!(status.success(), "{stderr}");
    let phc = stdout.trim();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    let consumers = format!(
        "consumers:\n  - username: partner\n    credentials: [{{ api_key: {{ id: partner, hash: \"{phc}\" }} }}]"
    );
    let node = start(&node_yaml(
        "",
        &consumers,
        &echo_route("p", "/p", "{ methods: [api_key] }"),
    ))
    .await;
    let c = node.client(Proto::Http1, "main");
    assert_eq!(c.get_with("/p", &[("x-api-key", key)]).await.status, 200);
    assert_eq!(
        c.get_with("/p", &[("x-api-key", "partner.Zq8-vN3rT5yU7iO9pA1t")])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn hash_key_refuses_malformed_keys_and_generates_good_ones() {
    let (status, stdout, stderr) = hash_key(&["no-id-here"], "").await;
    assert_eq!(status.code(), Some(2));
    assert!(stdout.is_empty());
    assert!(stderr.contains("<id>.<secret>"), "{stderr}");
    let (status, stdout, _) = hash_key(&["--generate", "svc-1"], "").await;
    assert!(status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("svc-1.") && lines[1].starts_with("$argon2id$"));
    let (status, stdout, _) = hash_key(&["--basic"], "hunter2\n").await;
    assert!(status.success());
    assert!(stdout.starts_with("$argon2id$"));
}

/// The full example in docs/authentication.md loads and compiles.
#[tokio::test]
async fn the_documented_auth_config_is_valid() {
    let path = format!("{}/../docs/authentication.md", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(path).unwrap();
    let body = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    assert!(body.starts_with("# full config"), "{body}");
    let config = meshgate_config::parse_str(body, meshgate_config::Format::Yaml)
        .unwrap_or_else(|e| panic!("documented config does not load: {e}"));
    let compiled = meshgate_config::compile(&config).unwrap();
    assert_eq!(compiled.auth.consumers.len(), 5);
    assert!(compiled.auth.api_keys.contains_key("partner"));
    // The documented key really matches the documented hash.
    let stored = &compiled.auth.api_keys["partner"].phc;
    assert!(meshgate::filters::auth::secrets::verify_phc(
        b"partner.Zq8vN3rT5yU7iO9pA1sX4",
        stored
    ));
}
