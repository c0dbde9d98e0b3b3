//! A real etcd (Debian's `/usr/bin/etcd`, 3.4) for tests: started on free loopback ports with a
//! temporary data dir, ready once a client call succeeds, restartable on the same ports and
//! data, killed on drop. Its log goes to a file in the data dir, never to the test output.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshgate_discovery::{EtcdClient, EtcdConfig};
use tempfile::TempDir;

const ETCD_BINARY: &str = "/usr/bin/etcd";
/// Readiness: this many client calls, `READY_PAUSE` apart.
const READY_ATTEMPTS: u32 = 100;
const READY_PAUSE: Duration = Duration::from_millis(100);

pub struct EtcdServer {
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers a request.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("etcd temp dir");
        let mut server = Self {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        server.spawn().await;
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// meshgate's own etcd client, connected to this server, for tests to read and write keys
    /// behind the code under test's back.
    pub async fn client(&self) -> EtcdClient {
        EtcdClient::connect(&EtcdConfig::new([self.endpoint()]))
            .await
            .expect("connect to etcd")
    }

    /// Kills etcd (no graceful shutdown, like a crash) and starts it again on the same ports
    /// with the same data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Kills etcd; `start_again` brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn().await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn spawn(&mut self) {
        let client_url = format!("http://127.0.0.1:{}", self.client_port);
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new(ETCD_BINARY)
            .arg("--name=meshgate-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=meshgate-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--enable-v2=false")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn /usr/bin/etcd (Debian package etcd-server)");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        for _ in 0..READY_ATTEMPTS {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited with {status}; log:\n{}", self.log_tail());
            }
            let probe = async {
                let client = EtcdClient::connect(&EtcdConfig::new([self.endpoint()]))
                    .await
                    .ok()?;
                client.get("meshgate-readiness-probe").await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(1), probe)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            tokio::time::sleep(READY_PAUSE).await;
        }
        panic!(
            "etcd did not answer within {:?}; log:\n{}",
            READY_PAUSE * READY_ATTEMPTS,
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
