//! Harnesses that run meshgate for a test: [`TestNode`] in this process (fast; reloads by
//! rewriting its config file) and [`NodeProcess`], the real binary (signals, exit codes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use meshgate::NodeHandle;
use meshgate_actors::ReloadEvent;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::client::{Proto, TestClient};

/// How long a harness waits for something that should happen promptly before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Prepend an admin listener on a free port unless the config has one.
fn with_test_admin(yaml: &str) -> String {
    if yaml.lines().any(|l| l.starts_with("admin:")) {
        yaml.to_string()
    } else {
        format!("admin:\n  address: \"127.0.0.1:0\"\n{yaml}")
    }
}

/// A node running inside the test process, with its config in a temp file it watches.
pub struct TestNode {
    handle: Option<NodeHandle>,
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestNode {
    /// Start a node from YAML (an admin listener on a free port is added when absent).
    pub async fn start(yaml: &str) -> Self {
        Self::try_start(yaml)
            .await
            .unwrap_or_else(|e| panic!("node did not start: {e}"))
    }

    pub async fn try_start(yaml: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("meshgate.yaml");
        std::fs::write(&path, with_test_admin(yaml)).map_err(|e| e.to_string())?;
        let config = meshgate_config::load_file(&path).map_err(|e| e.to_string())?;
        let compiled = meshgate_config::compile(&config).map_err(|e| e.to_string())?;
        let handle = meshgate::Node::start(compiled, Some(path.clone()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            handle: Some(handle),
            dir,
            path,
        })
    }

    pub fn handle(&self) -> &NodeHandle {
        self.handle.as_ref().expect("node already shut down")
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.handle()
            .listener_addr(listener)
            .unwrap_or_else(|| panic!("no listener named {listener}"))
    }

    pub fn admin(&self) -> SocketAddr {
        self.handle().admin_addr().expect("admin listener disabled")
    }

    pub fn client(&self, proto: Proto, listener: &str) -> TestClient {
        TestClient::new(proto, self.addr(listener))
    }

    pub fn config_path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replace the config file (atomically, by rename, as editors and deploy tools do) and
    /// wait for the watcher's verdict on it.
    pub async fn rewrite_config(&self, yaml: &str) -> ReloadEvent {
        let mut reloads = self.handle().view().reloads();
        let before = reloads.borrow_and_update().attempt;
        let tmp = self.dir.path().join(".meshgate.yaml.tmp");
        // The admin stays on "127.0.0.1:0": an unchanged configured address keeps its socket.
        std::fs::write(&tmp, with_test_admin(yaml)).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
        tokio::time::timeout(PATIENCE, async {
            loop {
                reloads.changed().await.expect("node stopped");
                let event = reloads.borrow_and_update().clone();
                if event.attempt > before {
                    return event;
                }
            }
        })
        .await
        .expect("the config watcher did not react to the rewritten file")
    }

    /// Drain and stop; returns the number of connections cut off at the deadline.
    pub async fn shutdown(mut self, deadline: Duration) -> usize {
        match self.handle.take() {
            Some(handle) => handle.shutdown(deadline).await,
            None => 0,
        }
    }
}

/// The `meshgate` binary built next to this test binary (`cargo test --workspace` builds it).
pub fn meshgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("meshgate");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p meshgate)",
        bin.display()
    );
    bin
}

/// The real binary, started with a config file; knows its bound addresses from the
/// "meshgate ready" log line.
pub struct NodeProcess {
    child: Child,
    pub listeners: HashMap<String, SocketAddr>,
    pub admin: Option<SocketAddr>,
    log: Arc<watch::Sender<Vec<String>>>,
}

impl NodeProcess {
    /// Spawn `meshgate run --config <path>` and wait until it is ready.
    pub async fn spawn(config: &Path) -> Self {
        let mut child = Command::new(meshgate_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("MESHGATE_LOG_FORMAT", "json")
            .env("MESHGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn meshgate");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(watch::Sender::new(Vec::new()));
        let ready = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                log.send_modify(|l| l.push(line.clone()));
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "meshgate ready"
                {
                    return Some(event);
                }
            }
            None
        })
        .await;
        let event = match ready {
            Ok(Some(event)) => event,
            _ => panic!(
                "meshgate did not become ready; its log:\n{}",
                log.borrow().join("\n")
            ),
        };
        let collector = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collector.send_modify(|l| l.push(line));
            }
        });
        let listeners = event["listeners"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(name, addr)| Some((name.to_string(), addr.parse().ok()?)))
            .collect();
        let admin = event["admin"].as_str().and_then(|a| a.parse().ok());
        Self {
            child,
            listeners,
            admin,
            log,
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self
            .listeners
            .get(listener)
            .unwrap_or_else(|| panic!("no listener named {listener}"))
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("process still running") as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("send signal");
    }

    /// Wait for the process to exit (bounded by `PATIENCE` plus `extra`).
    pub async fn wait(&mut self, extra: Duration) -> ExitStatus {
        tokio::time::timeout(PATIENCE + extra, self.child.wait())
            .await
            .expect("meshgate did not exit in time")
            .expect("wait for meshgate")
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// Wait until a log line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let mut lines = self.log.subscribe();
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(line) = lines
                    .borrow_and_update()
                    .iter()
                    .find(|l| l.contains(needle))
                {
                    return line.clone();
                }
                if lines.changed().await.is_err() {
                    panic!("log ended without a line containing {needle:?}");
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line containing {needle:?}"))
    }
}

/// Run the binary to completion with arguments; returns (status, stdout, stderr).
pub async fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    let output = tokio::time::timeout(PATIENCE, Command::new(meshgate_bin()).args(args).output())
        .await
        .expect("meshgate CLI did not finish")
        .expect("run meshgate");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// How often [`eventually`] checks again.
const RECHECK: Duration = Duration::from_millis(10);

/// Check until `check` returns `Some` (bounded by [`PATIENCE`]), for effects a test cannot
/// await: a node records a request when the server drops its response body, which may happen
/// just after the client has read the last byte.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(RECHECK).await;
    }
}
