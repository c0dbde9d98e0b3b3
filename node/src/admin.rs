//! The admin listener: `GET /status` (version, uptime, config generation, listeners, last
//! reload), `GET /health` (liveness and readiness) and `GET /upstreams[/{name}/health]`
//! (endpoint health, circuit breakers). Read-only views of the published state.

mod upstreams;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use meshgate_actors::{AcceptedConnection, ConnectionHandler, NodeView};
use serde_json::{Value, json};

use crate::error::error_response;
use crate::proxy::body::ProxyBody;
use crate::server::request_id;

pub struct AdminService {
    view: Arc<NodeView>,
}

impl AdminService {
    pub fn new(view: Arc<NodeView>) -> Arc<Self> {
        Arc::new(Self { view })
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<ProxyBody> {
        let request_id = request_id::take_or_generate(req.headers());
        let path = req.uri().path();
        let upstream = path
            .strip_prefix("/upstreams/")
            .and_then(|rest| rest.strip_suffix("/health"))
            .filter(|name| !name.is_empty() && !name.contains('/'));
        let mut response = match (req.method(), path, upstream) {
            (&Method::GET, "/status", _) => json_response(StatusCode::OK, self.status()),
            (&Method::GET, "/health", _) => self.health(),
            (&Method::GET, "/mesh", _) => json_response(StatusCode::OK, self.mesh()),
            (&Method::GET, "/upstreams", _) => {
                json_response(StatusCode::OK, upstreams::all(&self.view.load()))
            }
            (&Method::GET, _, Some(name)) => match upstreams::one(&self.view.load(), name) {
                Some(body) => json_response(StatusCode::OK, body),
                None => error_response(StatusCode::NOT_FOUND, "no such upstream", &request_id),
            },
            (_, "/status" | "/health" | "/upstreams" | "/mesh", _) | (_, _, Some(_)) => {
                error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed",
                    &request_id,
                )
            }
            _ => error_response(StatusCode::NOT_FOUND, "no such admin endpoint", &request_id),
        };
        response
            .headers_mut()
            .insert(request_id::HEADER, request_id);
        response
    }

    fn status(&self) -> Value {
        let snapshot = self.view.load();
        let uptime = SystemTime::now()
            .duration_since(self.view.started_at)
            .unwrap_or_default();
        let last = self.view.last_reload();
        let listeners: Vec<Value> = snapshot
            .bound
            .iter()
            .map(|b| json!({"name": &*b.name, "address": b.address.to_string()}))
            .collect();
        let admin = (**self.view.admin_address.load()).map(|a| a.to_string());
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "mode": format!("{:?}", snapshot.config.mode).to_lowercase(),
            "uptime_seconds": uptime.as_secs(),
            "config_generation": snapshot.generation,
            "draining": self.view.is_draining(),
            "listeners": listeners,
            "admin": admin,
            "actor_restarts": *self.view.restarts().borrow(),
            "routes": snapshot.config.routes.len(),
            "upstreams": snapshot.config.upstreams.len(),
            "last_reload": {
                "attempt": last.attempt,
                "generation": last.generation,
                "ok": last.result.is_ok(),
                "error": last.result.err(),
            },
        })
    }

    fn mesh(&self) -> Value {
        let snapshot = self.view.load();
        let Some(mesh) = &snapshot.mesh else {
            return json!({"enabled": false});
        };
        let identity = &mesh.identity;
        json!({
            "enabled": true,
            "identity": identity.spiffe_id.to_string(),
            "not_after": humantime::format_rfc3339_seconds(identity.not_after()).to_string(),
            "seconds_to_expiry": identity.seconds_to_expiry(),
            "renewals": identity.renewals(),
            "last_renewal_error": identity.last_error(),
            "ca_service": snapshot.ca_address.map(|a| a.to_string()),
        })
    }

    fn health(&self) -> Response<ProxyBody> {
        if self.view.is_draining() {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "draining"}),
            )
        } else {
            json_response(StatusCode::OK, json!({"status": "ok"}))
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<ProxyBody> {
    let mut text = body.to_string();
    text.push('\n');
    let mut response = Response::new(ProxyBody::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl ConnectionHandler for AdminService {
    fn serve(&self, conn: AcceptedConnection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let admin = Arc::new(AdminService {
            view: self.view.clone(),
        });
        Box::pin(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(&req)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(conn.stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = conn.graceful.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = conn.force.cancelled() => {}
                    }
                }
            }
        })
    }
}
