//! The command line: version, validate's exit codes and field paths, one-line usage errors,
//! and that the shipped examples and documented configs are valid.

use support::harness::run_cli;

fn repo_file(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn version_prints_the_crate_version() {
    let (status, stdout, _) = run_cli(&["--version"]).await;
    assert!(status.success());
    assert_eq!(
        stdout.trim(),
        format!("meshgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn validate_accepts_the_quickstart() {
    let (status, stdout, stderr) =
        run_cli(&["validate", &repo_file("examples/quickstart.yaml")]).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("valid (2 listeners, 4 routes, 1 upstreams)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn validate_prints_every_problem_with_its_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        r#"
listeners:
  - { name: main, address: "not-an-address" }
routes:
  - { match: { paths: ["/ok", "no-slash"] }, proxy: { upstream: users } }
  - { match: { headers: [{ name: x, regex: "(" }] }, respond: { status: 200 } }
upstreams:
  - { name: other, targets: [{ address: "127.0.0.1:1", weight: 0 }] }
"#,
    )
    .unwrap();
    let (status, _, stderr) = run_cli(&["validate", path.to_str().unwrap()]).await;
    assert_eq!(status.code(), Some(2));
    for expected in [
        "listeners[0].address:",
        "routes[0].match.paths[1]: path \"no-slash\" must start with '/'",
        "routes[0].proxy.upstream: unknown upstream \"users\"",
        "routes[1].match.headers[0].regex: invalid regex",
        "upstreams[0].targets[0].weight:",
        "5 problems",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn json_configs_validate_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(
        &path,
        r#"{"listeners":[{"name":"m","address":"127.0.0.1:0"}],"routes":[{"respond":{"status":204}}]}"#,
    )
    .unwrap();
    let (status, stdout, stderr) = run_cli(&["validate", path.to_str().unwrap()]).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("valid"));
}

#[tokio::test]
async fn missing_files_and_unknown_flags_are_one_line_errors() {
    let (status, _, stderr) = run_cli(&["validate", "/no/such/file.yaml"]).await;
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/no/such/file.yaml"), "{stderr}");

    let (status, _, stderr) = run_cli(&["run", "--config", "/no/such/file.yaml"]).await;
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let (status, _, stderr) = run_cli(&["run", "--bogus-flag"]).await;
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--bogus-flag"), "{stderr}");

    let (status, _, stderr) = run_cli(&["frobnicate"]).await;
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Every fenced ```yaml block in docs/*.md that starts with a `# full config` comment is a
/// complete config and must validate.
#[tokio::test]
async fn documented_configs_are_valid() {
    let mut blocks = 0;
    let docs = std::fs::read_dir(repo_file("docs")).unwrap();
    for entry in docs {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let doc = std::fs::read_to_string(&path).unwrap();
        for block in doc.split("```yaml\n").skip(1) {
            let body = block.split("```").next().unwrap();
            if !body.starts_with("# full config") {
                continue;
            }
            blocks += 1;
            let config = meshgate_config::parse_str(body, meshgate_config::Format::Yaml)
                .unwrap_or_else(|e| {
                    panic!("{}: config does not load: {e}\n{body}", path.display())
                });
            meshgate_config::compile(&config).unwrap_or_else(|e| {
                panic!("{}: config does not compile: {e}\n{body}", path.display())
            });
        }
    }
    assert!(blocks >= 3, "expected full config examples in docs/");
}
