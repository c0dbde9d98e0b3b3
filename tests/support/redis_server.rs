//! A real Redis (Debian's `/usr/bin/redis-server`) for tests: started on a free loopback port
//! with no persistence in a temporary directory, ready once it answers `PING`, killable and
//! restartable on the same port (to test outages), killed on drop. Its log goes to a file in
//! the temporary directory, never to the test output.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REDIS_BINARY: &str = "/usr/bin/redis-server";
/// Readiness: this many `PING`s, `READY_PAUSE` apart.
const READY_ATTEMPTS: u32 = 100;
const READY_PAUSE: Duration = Duration::from_millis(50);

pub struct RedisServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    /// Extra `redis-server` arguments (TLS, ACL users).
    extra: Vec<String>,
    /// The TLS port, when started with [`RedisServer::start_tls`].
    tls_port: Option<u16>,
}

/// How [`RedisServer::start_tls`] secures Redis.
pub struct RedisTls<'a> {
    /// Server certificate and key.
    pub server: &'a crate::tls::IssuedFiles,
    /// The CA that signed it (Redis also wants one to verify client certificates by).
    pub ca: &'a Path,
    /// The only ACL user allowed in (the `default` user is switched off).
    pub user: &'a str,
    pub password: &'a str,
}

impl RedisServer {
    /// Starts Redis and waits until it answers `PING`.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("redis temp dir");
        let mut server = Self {
            dir,
            port: free_port(),
            child: None,
            extra: Vec::new(),
            tls_port: None,
        };
        server.spawn().await;
        server
    }

    /// Redis with TLS on a second port (client certificates not required) and one ACL user
    /// with a password; the plain port stays for readiness checks, which get `NOAUTH`.
    pub async fn start_tls(tls: &RedisTls<'_>) -> Self {
        let dir = tempfile::tempdir().expect("redis temp dir");
        let tls_port = free_port();
        let path = |p: &Path| p.display().to_string();
        let extra = [
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(&tls.server.cert),
            "--tls-key-file".into(),
            path(&tls.server.key),
            "--tls-ca-cert-file".into(),
            path(tls.ca),
            "--tls-auth-clients".into(),
            "no".into(),
            "--user".into(),
            tls.user.into(),
            "on".into(),
            format!(">{}", tls.password),
            "~*".into(),
            "&*".into(),
            "+@all".into(),
            "--user".into(),
            "default".into(),
            "off".into(),
        ];
        let mut server = Self {
            dir,
            port: free_port(),
            child: None,
            extra: extra.to_vec(),
            tls_port: Some(tls_port),
        };
        server.spawn().await;
        server
    }

    /// `rediss://127.0.0.1:TLS_PORT` (servers from [`RedisServer::start_tls`]).
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}",
            self.tls_port.expect("started with start_tls")
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills Redis at once (SIGKILL, like a crash); `start_again` brings it back empty.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port (when it is not running).
    pub async fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn().await;
        }
    }

    /// Freezes Redis (SIGSTOP): connections stay open and requests go unanswered, like a
    /// server stuck in a long command. `resume` lets it go on.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("redis is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal redis");
    }

    /// Kills and starts Redis again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Sends one command (inline protocol) and returns the raw reply.
    pub async fn command(&self, command: &str) -> String {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .await
            .expect("connect to redis");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("write to redis");
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("redis answers")
            .expect("read from redis");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Keys matching `pattern` (`KEYS`; tests only).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&format!("KEYS {pattern}")).await;
        // *N\r\n then $len\r\nkey\r\n pairs.
        reply
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.starts_with('$') && !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    async fn spawn(&mut self) {
        let child = Command::new(REDIS_BINARY)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn /usr/bin/redis-server (Debian package redis-server)");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        for _ in 0..READY_ATTEMPTS {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("redis exited with {status}; log:\n{}", self.log_tail());
            }
            if self.ping().await {
                return;
            }
            tokio::time::sleep(READY_PAUSE).await;
        }
        panic!(
            "redis did not answer within {:?}; log:\n{}",
            READY_PAUSE * READY_ATTEMPTS,
            self.log_tail()
        );
    }

    async fn ping(&self) -> bool {
        let probe = async {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .ok()?;
            stream.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 16];
            let n = stream.read(&mut buf).await.ok()?;
            // A server that requires AUTH answers, too: it is up.
            (buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")).then_some(())
        };
        tokio::time::timeout(Duration::from_secs(1), probe)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
