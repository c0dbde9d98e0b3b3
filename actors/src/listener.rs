//! The `Listener` actor: one accept loop on an already-bound socket, handing each connection
//! to the data plane's [`ConnectionHandler`]; and the drain that ends it gracefully. A panic
//! in the loop fails the actor, so the supervisor sees it and restarts it.
//!
//! The socket and the set of live connections live in [`ListenerRuntime`], owned by the
//! supervisor, so a restarted `Listener` keeps accepting on the same socket (no refused
//! connections) and a drain still waits for connections accepted before the restart.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ControlError;
use crate::supervised_task::LinkedLoop;

/// Accept backlog for every listening socket (nginx's default is 511; the kernel caps it).
pub const LISTEN_BACKLOG: i32 = 1024;

/// One accepted client connection.
pub struct AcceptedConnection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: Arc<str>,
    /// Cancelled when the node drains: finish the current request, then close.
    pub graceful: CancellationToken,
    /// Cancelled when the drain deadline passes: close now.
    pub force: CancellationToken,
}

/// The data plane behind a listener (HTTP proxy, admin API).
pub trait ConnectionHandler: Send + Sync + 'static {
    fn serve(&self, conn: AcceptedConnection) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A bound socket and its live connections; survives `Listener` restarts.
pub struct ListenerRuntime {
    pub name: Arc<str>,
    pub local_addr: SocketAddr,
    socket: std::net::TcpListener,
    handler: Arc<dyn ConnectionHandler>,
    connections: TaskTracker,
    graceful: CancellationToken,
    force: CancellationToken,
}

impl std::fmt::Debug for ListenerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerRuntime")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connections.len())
            .finish()
    }
}

impl ListenerRuntime {
    /// Bind `address` (SO_REUSEADDR, non-blocking, backlog [`LISTEN_BACKLOG`]).
    pub fn bind(
        name: Arc<str>,
        address: SocketAddr,
        handler: Arc<dyn ConnectionHandler>,
    ) -> std::io::Result<Arc<Self>> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if address.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let socket: std::net::TcpListener = socket.into();
        let local_addr = socket.local_addr()?;
        Ok(Arc::new(Self {
            name,
            local_addr,
            socket,
            handler,
            connections: TaskTracker::new(),
            graceful: CancellationToken::new(),
            force: CancellationToken::new(),
        }))
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Ask every connection to finish its current request and close, then wait up to
    /// `deadline` for them; past it, close the rest. Returns how many were cut off.
    /// The listening socket closes first: new connection attempts are refused at once instead
    /// of waiting, unserved, in the kernel's accept queue until the process exits.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.stop_accepting();
        self.connections.close();
        if tokio::time::timeout(deadline, self.connections.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let remaining = self.connections.len();
        self.force.cancel();
        self.connections.wait().await;
        remaining
    }

    /// Stop accepting and close the listening socket; open connections are told to finish
    /// their current request and close (`Connection: close` on HTTP/1.1, GOAWAY on HTTP/2).
    pub fn stop_accepting(&self) {
        // The accept loop sees this first and stops without touching the closed socket.
        self.graceful.cancel();
        // shutdown(2) on a listening socket takes it out of LISTEN at once on Linux, for every
        // descriptor of it (the accept loop holds a duplicate): further SYNs are answered with
        // RST, and connections still queued are reset rather than left to time out.
        if let Err(e) = socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Read) {
            tracing::debug!(listener = %self.name, error = %e, "closing the listening socket");
        }
    }

    /// Accept until the listener drains: `Ok(())`. An `Err` (the socket could not be
    /// registered with the runtime) or a panic fails the owning `Listener`.
    async fn accept_loop(self: Arc<Self>) -> Result<(), ControlError> {
        let listener = self
            .socket
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(ControlError::RegisterSocket)?;
        let mut pause = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                _ = self.graceful.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    pause = Duration::from_millis(5);
                    self.dispatch(stream, peer);
                }
                Err(e) if is_per_connection_error(&e) => continue,
                Err(_) if self.graceful.is_cancelled() => return Ok(()),
                Err(e) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    tracing::error!(listener = %self.name, error = %e, "accept failed; pausing");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn dispatch(&self, stream: TcpStream, peer: SocketAddr) {
        // Nagle plus delayed ACKs adds 40 ms stalls to small responses.
        let _ = stream.set_nodelay(true);
        let conn = AcceptedConnection {
            stream,
            peer,
            local: self.local_addr,
            listener: self.name.clone(),
            graceful: self.graceful.clone(),
            force: self.force.clone(),
        };
        self.connections.spawn(self.handler.serve(conn));
    }
}

/// Errors that concern one half-open connection, not the listening socket.
fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// The actor owning one accept loop. The loop runs as a [`LinkedLoop`]: a panic in it (in
/// the handler's `serve`, say) fails this actor, and the supervisor starts a new one on the
/// same socket after its backoff delay.
#[derive(Default)]
pub struct Listener;

#[derive(Debug)]
pub enum ListenerMsg {
    /// The accept loop panicked or ended without a drain.
    AcceptLoopFailed(String),
}

pub struct ListenerState {
    pub runtime: Arc<ListenerRuntime>,
    /// Stops the accept loop when the actor stops, fails or is killed.
    _accepting: LinkedLoop,
}

impl Actor for Listener {
    type Msg = ListenerMsg;
    type State = ListenerState;
    type Arguments = Arc<ListenerRuntime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        runtime: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let accepting = LinkedLoop::spawn(
            &myself,
            "the accept loop",
            runtime.clone().accept_loop(),
            ListenerMsg::AcceptLoopFailed,
        );
        tracing::debug!(listener = %runtime.name, address = %runtime.local_addr, "accepting");
        Ok(ListenerState {
            runtime,
            _accepting: accepting,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ListenerMsg::AcceptLoopFailed(reason) = message;
        Err(format!("listener {}: {reason}", state.runtime.name).into())
    }
}
