//! Access logs: one JSON line per request carrying the id the client got back, credentials
//! redacted, aborted responses marked, and the file reopened on SIGUSR1 (real binary).

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;
use support::{BOTH, Backend, NodeProcess, Proto, TestClient, TestNode, eventually};

/// The JSON lines of an access-log file.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Wait until the node has written the line of request `id`.
async fn line_of(node: &TestNode, path: &Path, id: &str) -> Value {
    eventually(&format!("the access-log line of {id}"), || async {
        node.handle().telemetry().flush().await;
        lines(path).into_iter().find(|l| l["request_id"] == id)
    })
    .await
}

fn config(backend: &Backend, log: &Path) -> String {
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ name: hello, match: {{ paths: ["/hello"] }}, respond: {{ body: "hi\n" }} }}
  - {{ name: api, match: {{ paths: ["/api/*"] }}, proxy: {{ upstream: b, strip_prefix: /api }} }}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}
telemetry:
  access_log:
    enabled: true
    path: {}
    include_query: true
    headers: [authorization, cookie, x-api-key, x-client-version]
    redact: [x-api-key, password]
"#,
        backend.addr(),
        log.display()
    )
}

#[tokio::test]
async fn each_request_is_one_json_line_with_its_request_id_and_no_secrets() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let node = TestNode::start(&config(&backend, &log)).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let r = c
            .get_with(
                "/api/echo/x?password=hunter2&page=3",
                &[
                    ("authorization", "Bearer top-secret"),
                    ("cookie", "session=s3cr3t"),
                    ("x-api-key", "key-123"),
                    ("x-client-version", "7.1"),
                    ("user-agent", "obs-test/1.0"),
                ],
            )
            .await;
        assert_eq!(r.status, 200);
        let id = r.header("x-request-id").unwrap();
        let line = line_of(&node, &log, id).await;
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/api/echo/x?password=[REDACTED]&page=3");
        assert_eq!(line["status"], 200);
        assert_eq!(line["route"], "api");
        assert_eq!(line["upstream"], "b");
        assert_eq!(line["upstream_endpoint"], backend.addr().to_string());
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["listener"], "main");
        assert_eq!(line["user_agent"], "obs-test/1.0");
        assert_eq!(line["bytes_out"], r.body.len());
        assert!(line["consumer"].is_null() && line["tls_version"].is_null());
        assert_eq!(line["aborted"], false);
        let total = line["duration_ms"].as_f64().unwrap();
        let upstream = line["upstream_ms"].as_f64().unwrap();
        let gateway = line["gateway_ms"].as_f64().unwrap();
        assert!(total > 0.0 && upstream > 0.0 && gateway >= 0.0, "{line}");
        assert!(upstream + gateway <= total + 0.01, "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        let h = &line["headers"];
        assert_eq!(h["authorization"], "[REDACTED]");
        assert_eq!(h["cookie"], "[REDACTED]");
        assert_eq!(h["x-api-key"], "[REDACTED]");
        assert_eq!(h["x-client-version"], "7.1");
        // The backend still got the real values: redaction is for the log only.
        assert_eq!(r.json()["headers"]["x-api-key"], "key-123");
    }
    let c = node.client(Proto::Http1, "main");
    let r = c.get("/nowhere?password=p").await;
    let line = line_of(&node, &log, r.header("x-request-id").unwrap()).await;
    assert_eq!(
        (line["status"].as_u64(), line["route"].as_str()),
        (Some(404), Some("-"))
    );
    assert!(line["upstream"].is_null() && line["upstream_ms"].is_null());
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in ["top-secret", "s3cr3t", "key-123", "hunter2", "password=p"] {
        assert!(
            !text.contains(secret),
            "{secret} reached the access log:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_response_cut_short_is_logged_as_aborted() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let node = TestNode::start(&config(&backend, &log)).await;
    let c = node.client(Proto::Http1, "main");
    let response = c
        .send_streaming(
            c.request(http::Method::GET, "/api/reset")
                .body(support::client::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = response.into_body().into_data_stream();
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => received += bytes.len(),
            Err(_) => break,
        }
    }
    assert!(received < 1024 * 1024, "the body was cut short");
    let line = line_of(&node, &log, &id).await;
    assert_eq!(line["status"], 200);
    assert_eq!(line["aborted"], true, "{line}");
}

#[tokio::test]
async fn sigusr1_reopens_the_file_after_logrotate_renamed_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let config = dir.path().join("meshgate.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ name: hello, match: {{ paths: ["/hello"] }}, respond: {{ body: "hi\n" }} }}
telemetry:
  access_log: {{ enabled: true, path: "{}" }}
"#,
            log.display()
        ),
    )
    .unwrap();
    let mut node = NodeProcess::spawn(&config).await;
    let c = TestClient::new(Proto::Http1, node.addr("main"));
    let first = c.get("/hello").await;
    let first_id = first.header("x-request-id").unwrap().to_string();
    std::fs::rename(&log, &rotated).unwrap();
    node.signal(nix::sys::signal::Signal::SIGUSR1);
    node.wait_for_log("access log reopened").await;
    let second = c.get("/hello").await;
    let second_id = second.header("x-request-id").unwrap().to_string();
    drop(c);
    node.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(node.wait(Duration::from_secs(5)).await.success());
    // The exit flushed everything: the line before the rotation is in the renamed file, the
    // one after it in a new file at the configured path.
    let old: Vec<Value> = lines(&rotated);
    let new: Vec<Value> = lines(&log);
    assert!(
        old.iter().any(|l| l["request_id"] == first_id.as_str()),
        "{old:?}"
    );
    assert!(!old.iter().any(|l| l["request_id"] == second_id.as_str()));
    assert!(
        new.iter().any(|l| l["request_id"] == second_id.as_str()),
        "{new:?}"
    );
    assert!(!new.iter().any(|l| l["request_id"] == first_id.as_str()));
}
