//! The node over time: hot reloads under load, rejected reloads, listeners added and removed,
//! actors crashing and coming back, SIGTERM draining and SIGHUP reloading the real binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{Backend, NodeProcess, Proto, TestNode};

fn config(body: &str, upstream: &Backend, extra_listener: bool) -> String {
    let extra = if extra_listener {
        "  - { name: second, address: \"127.0.0.1:0\" }\n"
    } else {
        ""
    };
    format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
{extra}routes:
  - {{ name: direct, match: {{ paths: ["/direct"] }}, respond: {{ body: "{body}" }} }}
  - {{ name: proxied, match: {{ paths: ["/*"] }}, proxy: {{ upstream: b }} }}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}
"#,
        upstream.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_continuous_traffic_fail_nothing() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let node = TestNode::start(&config("v0", &a, false)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for proto in [Proto::Http1, Proto::Http2, Proto::Http1] {
        let c = node.client(proto, "main");
        let stop = stop.clone();
        let sent = sent.clone();
        clients.spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for path in ["/direct", "/hello"] {
                    let r = c.get(path).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 {
                        failures.push(format!("{path}: {} {}", r.status, r.text()));
                    }
                }
            }
            failures
        });
    }
    for i in 1..=20 {
        let upstream = if i % 2 == 0 { &a } else { &b };
        let event = node
            .rewrite_config(&config(&format!("v{i}"), upstream, i % 3 == 0))
            .await;
        assert_eq!(event.result, Ok(()), "reload {i}");
        assert_eq!(event.generation, i + 1);
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    while let Some(done) = clients.join_next().await {
        failures.extend(done.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        sent.load(Ordering::Relaxed) >= 40,
        "the clients kept sending throughout"
    );
    let c = node.client(Proto::Http1, "main");
    assert_eq!(c.get("/direct").await.text(), "v20");
    assert!(a.requests() > 0 && b.requests() > 0);
}

#[tokio::test]
async fn an_invalid_reload_is_rejected_and_the_old_config_keeps_serving() {
    let a = Backend::start("a").await;
    let node = TestNode::start(&config("good", &a, false)).await;
    let broken = config("bad", &a, false).replace("upstream: b }", "upstream: missing }");
    let event = node.rewrite_config(&broken).await;
    let error = event.result.unwrap_err();
    assert!(
        error.contains("routes[1].proxy.upstream: unknown upstream \"missing\""),
        "{error}"
    );
    assert_eq!(event.generation, 1, "still the first generation");
    let c = node.client(Proto::Http1, "main");
    assert_eq!(c.get("/direct").await.text(), "good");
    assert_eq!(c.get("/hello").await.status, 200);
    let status = node_status(&node).await;
    assert_eq!(status["last_reload"]["ok"], false);
    assert_eq!(status["config_generation"], 1);
    // A later valid file is taken.
    let event = node.rewrite_config(&config("fixed", &a, false)).await;
    assert_eq!(event.result, Ok(()));
    assert_eq!(c.get("/direct").await.text(), "fixed");
}

async fn node_status(node: &TestNode) -> serde_json::Value {
    support::TestClient::new(Proto::Http1, node.admin())
        .get("/status")
        .await
        .json()
}

#[tokio::test]
async fn reloads_bind_new_listeners_and_drain_removed_ones() {
    let a = Backend::start("a").await;
    let node = TestNode::start(&config("x", &a, false)).await;
    assert!(node.handle().listener_addr("second").is_none());
    assert_eq!(
        node.rewrite_config(&config("x", &a, true)).await.result,
        Ok(())
    );
    let second = node.addr("second");
    assert_eq!(
        support::TestClient::new(Proto::Http1, second)
            .get("/direct")
            .await
            .text(),
        "x"
    );
    assert_eq!(
        node.rewrite_config(&config("x", &a, false)).await.result,
        Ok(())
    );
    assert!(node.handle().listener_addr("second").is_none());
    // The retired socket closes once its (idle) connections drained.
    let refused = tokio::time::timeout(support::harness::PATIENCE, async {
        loop {
            match tokio::net::TcpStream::connect(second).await {
                Err(_) => return,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the removed listener still accepts connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_actors_are_restarted_while_traffic_flows() {
    let a = Backend::start("a").await;
    let node = TestNode::start(&config("up", &a, false)).await;
    let c = node.client(Proto::Http1, "main");
    let mut restarts = node.handle().view().restarts();
    let children = node.handle().children().await;
    let victims: Vec<_> = children
        .iter()
        .filter(|(key, _)| {
            matches!(
                key,
                meshgate_actors::ChildKey::UpstreamPool(_) | meshgate_actors::ChildKey::Listener(_)
            )
        })
        .collect();
    assert_eq!(victims.len(), 2, "{children:?}");
    for (_, cell) in &victims {
        cell.kill();
    }
    // Traffic keeps flowing while the supervisor restarts them.
    for _ in 0..20 {
        assert_eq!(c.get("/hello").await.status, 200);
    }
    tokio::time::timeout(support::harness::PATIENCE, restarts.wait_for(|n| *n >= 2))
        .await
        .expect("supervisor restarted both actors")
        .unwrap();
    let after = node.handle().children().await;
    for (key, old) in &victims {
        let (_, new) = after.iter().find(|(k, _)| k == key).expect("child is back");
        assert_ne!(new.get_id(), old.get_id());
    }
    // New connections are accepted by the restarted listener.
    let fresh = node.client(Proto::Http1, "main");
    assert_eq!(fresh.get("/direct").await.text(), "up");
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("meshgate.yaml");
    let tmp = dir.join(".tmp.yaml");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn process_config(body: &str, upstream: &Backend) -> String {
    format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\nserver: {{ watch_config: false, drain_timeout: 10s }}\n{}",
        config(body, upstream, false)
    )
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_then_exits_zero() {
    let backend = Backend::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &process_config("x", &backend));
    let mut node = NodeProcess::spawn(&path).await;
    let c = support::TestClient::new(Proto::Http1, node.addr("main"));
    let in_flight = tokio::spawn(async move { c.get("/slow/1500").await });
    backend.wait_for_requests(1).await;
    node.signal(nix::sys::signal::Signal::SIGTERM);
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slow");
    let status = node.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", node.log().join("\n"));
}

#[tokio::test]
async fn sighup_reloads_the_binary_and_a_broken_file_is_reported() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &process_config("before", &backend));
    let node = NodeProcess::spawn(&path).await;
    let c = support::TestClient::new(Proto::Http1, node.addr("main"));
    assert_eq!(c.get("/direct").await.text(), "before");

    write_config(dir.path(), &process_config("after", &backend));
    node.signal(nix::sys::signal::Signal::SIGHUP);
    node.wait_for_log("config reloaded").await;
    assert_eq!(c.get("/direct").await.text(), "after");

    write_config(dir.path(), "routes: [{ respond: { status: 999 } }]\n");
    node.signal(nix::sys::signal::Signal::SIGHUP);
    let line = node.wait_for_log("config rejected").await;
    assert!(line.contains("routes[0].respond.status"), "{line}");
    assert_eq!(c.get("/direct").await.text(), "after");
}
