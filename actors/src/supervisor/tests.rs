//! Tests of the `Supervisor` with the real `Listener`: a panic in a listener's accept loop
//! (raised by the connection handler) reaches the supervisor, which restarts the listener on
//! the same socket, and new connections are served again.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use meshgate_config::{Config, compile, load_text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::listener::AcceptedConnection;
use crate::snapshot::Snapshot;

const PATIENCE: Duration = Duration::from_secs(10);

/// Panics on its first connection (inside the accept loop, which calls `serve`), then answers
/// "served" on each.
struct PanicsOnce {
    panicked: AtomicBool,
}

impl ConnectionHandler for PanicsOnce {
    fn serve(&self, conn: AcceptedConnection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("injected handler failure");
        }
        Box::pin(async move {
            let mut stream = conn.stream;
            let _ = stream.write_all(b"served\n").await;
            let _ = stream.shutdown().await;
        })
    }
}

fn compiled(yaml: &str) -> Arc<CompiledConfig> {
    let config = load_text(yaml, Path::new("test.yaml")).expect("test config loads");
    Arc::new(compile(&config).expect("test config compiles"))
}

fn empty_view() -> Arc<NodeView> {
    let config = compile(&Config::default()).expect("empty config compiles");
    NodeView::new(Snapshot {
        generation: 0,
        config: Arc::new(config),
        upstreams: Vec::new(),
        bound: Vec::new(),
        tls: Vec::new(),
        mesh: None,
        ca_address: None,
        loaded_at: std::time::SystemTime::now(),
        extension: None,
    })
}

async fn read_all(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the listening socket stays open");
    let mut text = String::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_string(&mut text))
        .await
        .expect("the connection is answered or closed");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_accept_loop_is_seen_and_the_listener_serves_again() {
    let handler: Arc<dyn ConnectionHandler> = Arc::new(PanicsOnce {
        panicked: AtomicBool::new(false),
    });
    let view = empty_view();
    let args = SupervisorArgs {
        config: compiled(
            "listeners:\n  - { name: main, address: \"127.0.0.1:0\" }\nroutes:\n  - { name: r, match: { paths: [\"/*\"] }, respond: { body: \"x\" } }\n",
        ),
        view: view.clone(),
        services: NodeServices {
            proxy: handler.clone(),
            admin: handler.clone(),
            ca: handler,
            extension: None,
        },
        config_path: None,
    };
    let (supervisor, _) = Actor::spawn(None, Supervisor, args)
        .await
        .expect("the tree starts");
    let address = view.load().bound_address("main").expect("main is bound");
    let mut restarts = view.restarts();

    // The first connection hits the panic: the accept loop dies and the connection with it.
    assert_eq!(read_all(address).await, "");
    tokio::time::timeout(PATIENCE, restarts.wait_for(|n| *n >= 1))
        .await
        .expect("the supervisor restarted the listener")
        .expect("view alive");
    // The restarted listener accepts on the same socket.
    assert_eq!(read_all(address).await, "served\n");
    let children = match supervisor
        .call(SupervisorMsg::Children, Some(PATIENCE))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(children)) => children,
        other => panic!("the supervisor did not list its children: {other:?}"),
    };
    assert!(
        children
            .iter()
            .any(|(key, _)| *key == ChildKey::Listener("main".into())),
        "{children:?}"
    );
    supervisor.stop(None);
}
