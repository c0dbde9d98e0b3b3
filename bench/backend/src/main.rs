//! The benchmark backend: the smallest useful HTTP/1.1 origin (hyper on a single-threaded
//! runtime, 13-byte body, keep-alive, TCP_NODELAY). It counts accepted connections so that
//! `bench/run` can check that a proxy keeps its upstream connections alive; it must stay
//! cheaper than any proxy in front of it, so it does nothing else.
//!
//! `GET /__stats` answers `{"accepted":N,"requests":M}`; SIGTERM prints the same line on
//! stdout and exits.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const BODY: &[u8; 13] = b"Hello, World!";
const STATS_PATH: &str = "/__stats";

/// Counters of one process; the runtime is single-threaded, so plain cells suffice.
#[derive(Default)]
struct Counters {
    accepted: Cell<u64>,
    requests: Cell<u64>,
}

impl Counters {
    fn json(&self) -> String {
        format!(
            "{{\"accepted\":{},\"requests\":{}}}",
            self.accepted.get(),
            self.requests.get()
        )
    }
}

fn main() -> ExitCode {
    let listen = match parse_listen(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("meshgate-bench-backend: {message}");
            eprintln!("usage: meshgate-bench-backend --listen IP:PORT");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshgate-bench-backend: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, serve(listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshgate-bench-backend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_listen(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut listen = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen needs IP:PORT")?;
                listen = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--listen {value}: {e}"))?,
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    listen.ok_or_else(|| "--listen is required".to_string())
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let counters = Rc::new(Counters::default());
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // EMFILE and friends: keep serving the connections we have.
                Err(_) => continue,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        counters.accepted.set(counters.accepted.get() + 1);
        let _ = stream.set_nodelay(true);
        let counters = counters.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let counters = counters.clone();
                async move { Ok::<_, Infallible>(answer(&req, &counters)) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    println!("{}", counters.json());
    Ok(())
}

fn answer(req: &Request<Incoming>, counters: &Counters) -> Response<Full<Bytes>> {
    if req.uri().path() == STATS_PATH {
        return Response::new(Full::new(Bytes::from(counters.json())));
    }
    counters.requests.set(counters.requests.get() + 1);
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}
