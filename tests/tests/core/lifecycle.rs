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

/// Clients on both listeners until `stop`; returns every failure.
fn keep_requesting(
    node: &TestNode,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicUsize>,
) -> tokio::task::JoinSet<Vec<String>> {
    let mut clients = tokio::task::JoinSet::new();
    for (proto, listener) in [
        (Proto::Http1, "main"),
        (Proto::Http2, "main"),
        (Proto::Http1, "second"),
        (Proto::Http2, "second"),
    ] {
        let c = node.client(proto, listener);
        let (stop, sent) = (stop.clone(), sent.clone());
        clients.spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = c.get("/direct").await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    failures.push(format!("{listener} {proto:?}: {} {}", r.status, r.text()));
                }
            }
            failures
        });
    }
    clients
}

/// The next reload verdict after `attempt`.
async fn next_reload(node: &TestNode, attempt: u64) -> meshgate_actors::ReloadEvent {
    let mut reloads = node.handle().view().reloads();
    tokio::time::timeout(support::harness::PATIENCE, async {
        loop {
            let event = reloads.borrow_and_update().clone();
            if event.attempt > attempt {
                return event;
            }
            reloads.changed().await.expect("node stopped");
        }
    })
    .await
    .expect("the config watcher did not react")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_rewritten_in_place_in_pieces_is_never_applied_half_written() {
    use std::io::Write;
    let a = Backend::start("a").await;
    let node = TestNode::start(&config("v1", &a, true)).await;
    let (main, second) = (node.addr("main"), node.addr("second"));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let clients = keep_requesting(&node, &stop, &sent);
    let start = node.handle().view().reloads().borrow().attempt;

    // The same file, rewritten in place (truncate, then write) as `cp` or a careless editor
    // does. The admin line keeps the harness's admin listener unchanged.
    let next = format!(
        "admin:\n  address: \"127.0.0.1:0\"\n{}",
        config("v2", &a, true)
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(node.config_path())
        .unwrap();
    // 1. The writer stalls right after truncating: the empty file is stable, and refused.
    let empty = next_reload(&node, start).await;
    assert!(
        empty
            .result
            .as_ref()
            .unwrap_err()
            .contains("the file is empty"),
        "{empty:?}"
    );
    // 2. It stalls again after the admin section: no listeners, refused.
    let (head, rest) = next.split_at(next.find("listeners:").unwrap());
    file.write_all(head.as_bytes()).unwrap();
    let headless = next_reload(&node, empty.attempt).await;
    assert!(
        headless
            .result
            .as_ref()
            .unwrap_err()
            .contains("listeners: at least one listener is required"),
        "{headless:?}"
    );
    // 3. The rest arrives in small pieces, faster than the stability window: only the whole
    //    file is applied, never a prefix of its listener list.
    for piece in rest.as_bytes().chunks(16) {
        file.write_all(piece).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(file);
    let applied = next_reload(&node, headless.attempt).await;
    assert_eq!(applied.result, Ok(()), "{applied:?}");
    assert_eq!(applied.generation, 2, "one generation: the finished file");
    assert_eq!(applied.attempt, start + 3, "no half-written file was tried");

    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients.join_all().await.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        sent.load(Ordering::Relaxed) >= 40,
        "the clients kept sending"
    );
    assert_eq!(node.addr("main"), main, "listeners stayed on their sockets");
    assert_eq!(node.addr("second"), second);
    assert_eq!(
        node.client(Proto::Http1, "second")
            .get("/direct")
            .await
            .text(),
        "v2"
    );
}

#[tokio::test]
async fn a_reload_that_removes_every_listener_is_refused_unless_allowed() {
    let a = Backend::start("a").await;
    let node = TestNode::start(&config("v1", &a, true)).await;
    let other = "listeners:\n  - { name: other, address: \"127.0.0.1:0\" }\nroutes:\n  - { match: { paths: [\"/direct\"] }, respond: { body: \"other\" } }\n";
    let event = node.rewrite_config(other).await;
    let error = event.result.unwrap_err();
    assert!(
        error.contains("listeners: this reload would remove every listener (main, second)"),
        "{error}"
    );
    assert_eq!(event.generation, 1);
    assert_eq!(
        node.client(Proto::Http2, "second")
            .get("/direct")
            .await
            .text(),
        "v1"
    );

    let allowed = format!("server: {{ allow_removing_all_listeners: true }}\n{other}");
    assert_eq!(node.rewrite_config(&allowed).await.result, Ok(()));
    assert!(node.handle().listener_addr("main").is_none());
    assert_eq!(
        node.client(Proto::Http1, "other")
            .get("/direct")
            .await
            .text(),
        "other"
    );
}

/// Read a whole HTTP/1.1 exchange until the server closes; returns the raw response text.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(support::harness::PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the server closed the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// An h2c request for `path` on stream 1 (prior knowledge, RFC 9113 §3.3), as raw frames:
/// the preface, an empty SETTINGS, and HEADERS with END_STREAM | END_HEADERS whose HPACK block
/// uses static-table names (RFC 7541 Appendix A) and literal values without indexing.
fn h2c_get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(4u8, path), (1u8, "localhost")] {
        block.push(index); // literal without indexing, indexed name (:path, :authority)
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, stream 0
    let len = block.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[0x1, 0x5, 0, 0, 0, 1]); // HEADERS, END_STREAM|END_HEADERS, stream 1
    out.extend_from_slice(&block);
    out
}

/// Every frame (type, flags, stream, payload) the server sent until it closed, answering its
/// SETTINGS and PINGs as a client must (RFC 9113 §6.5.3, §6.7): a graceful shutdown waits for
/// the PING acknowledgement before its final GOAWAY.
async fn h2_frames_to_close(stream: &mut tokio::net::TcpStream) -> Vec<(u8, u8, u32, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut frames = Vec::new();
    let read_all = async {
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if stream.read_exact(&mut payload).await.is_err() {
                return;
            }
            let (kind, flags) = (head[3], head[4]);
            let reply = match (kind, flags & 0x1) {
                (0x4, 0) => Some(vec![0, 0, 0, 0x4, 0x1, 0, 0, 0, 0]),
                (0x6, 0) => {
                    let mut ack = vec![0, 0, 8, 0x6, 0x1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    Some(ack)
                }
                _ => None,
            };
            if let Some(reply) = reply {
                let _ = stream.write_all(&reply).await;
            }
            frames.push((kind, flags, stream_id, payload));
        }
    };
    tokio::time::timeout(support::harness::PATIENCE, read_all)
        .await
        .expect("the server closed the connection");
    frames
}

#[tokio::test]
async fn sigterm_refuses_new_connections_at_once_and_closes_keep_alive_ones_gracefully() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &process_config("x", &backend));
    let mut node = NodeProcess::spawn(&path).await;
    let addr = node.addr("main");

    // Two keep-alive connections with a request in flight: HTTP/1.1 and HTTP/2.
    let mut h1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    h1.write_all(b"GET /slow/1500 HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut h2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    h2.write_all(&h2c_get("/slow/1500")).await.unwrap();
    backend.wait_for_requests(2).await;
    let h1 = tokio::spawn(async move { read_to_close(&mut h1).await });
    let h2 = tokio::spawn(async move { h2_frames_to_close(&mut h2).await });

    let signalled = tokio::time::Instant::now();
    node.signal(nix::sys::signal::Signal::SIGTERM);
    // New connections are refused promptly, while the in-flight requests still run: not
    // accepted by the kernel and left unserved.
    let refused = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) => return e,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "new connections were still accepted a second after SIGTERM; log:\n{}",
            node.log().join("\n")
        )
    });
    // Refused; or reset, for an attempt caught in the handshake as the socket closed.
    assert!(
        matches!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
        ),
        "{refused}"
    );
    assert!(
        !h1.is_finished() && !h2.is_finished(),
        "refused before the drain ended"
    );

    // HTTP/1.1: the in-flight request is answered with `Connection: close`, then closed.
    let response = h1.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{response}"
    );
    assert!(response.ends_with("slow"), "{response}");
    // HTTP/2: GOAWAY (RFC 9113 §6.8), then the in-flight stream completes, then the close.
    let frames = h2.await.unwrap();
    let goaway = frames
        .iter()
        .position(|f| f.0 == 0x7)
        .expect("a GOAWAY frame");
    let error_code = u32::from_be_bytes(frames[goaway].3[4..8].try_into().unwrap());
    assert_eq!(error_code, 0, "NO_ERROR: a graceful shutdown");
    let response_headers = frames
        .iter()
        .position(|f| f.0 == 0x1 && f.2 == 1)
        .expect("the in-flight stream's response");
    assert_eq!(
        frames[response_headers].3[0], 0x88,
        ":status 200 (static index 8)"
    );
    let end_of_stream = frames
        .iter()
        .rposition(|f| f.2 == 1 && f.1 & 0x1 != 0)
        .expect("the in-flight stream ended");
    assert!(end_of_stream > response_headers);

    let status = node.wait(std::time::Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", node.log().join("\n"));
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(8),
        "exited once the in-flight requests finished, well before drain_timeout (10s)"
    );
}
