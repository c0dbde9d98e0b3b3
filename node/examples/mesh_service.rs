//! A tiny service for the mesh example (examples/mesh): `GET /` answers
//! `hello from <name>`; `GET /chain` calls `--call <url>` (its sidecar's outbound listener)
//! and answers `<name> -> <what it got>`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Parser)]
struct Args {
    /// The service's name, echoed in answers.
    #[arg(long)]
    name: String,
    /// Where to listen, e.g. 127.0.0.1:9101.
    #[arg(long)]
    listen: SocketAddr,
    /// The URL `/chain` calls, e.g. http://127.0.0.1:15001/ (the sidecar's outbound port).
    #[arg(long)]
    call: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(Args::parse());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("{} listening on {}", args.name, args.listen);
    loop {
        let (stream, _) = listener.accept().await?;
        let args = args.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(args.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    args: Arc<Args>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let name = &args.name;
    let text = match (req.uri().path(), args.call.as_deref()) {
        ("/chain", Some(url)) => match fetch(url).await {
            Ok(body) => format!("{name} -> {body}"),
            Err(e) => {
                let mut response = Response::new(Full::new(Bytes::from(format!(
                    "{name} could not call {url}: {e}\n"
                ))));
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                return Ok(response);
            }
        },
        _ => format!("hello from {name}"),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

async fn fetch(url: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(url.parse()?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
