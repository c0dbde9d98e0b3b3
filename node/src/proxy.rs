//! Forwarding a routed request to its upstream: pick an endpoint, rewrite path and headers,
//! send over a pooled connection within the route's timeout, stream the response back.

pub mod body;
pub mod headers;
pub mod pool;
pub mod upgrade;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use meshgate_actors::upstream::{Endpoint, PickContext, UpstreamHandle, stable_hash};
use meshgate_config::compile::{HashOn, HostPolicy, LoadBalancing, ProxySpec};
use meshgate_config::model::UpstreamProtocol;
use tracing::Instrument;

use self::body::{ProxyBody, UpstreamBody};
use self::headers::ClientSide;
use self::pool::{Checkout, ConnPool, Lease, PoolSettings};
use crate::error::GatewayError;
use crate::server::ConnInfo;
use crate::telemetry::UpstreamCall;
use crate::telemetry::tracing as trace;

/// Everything routing decided about one proxied request.
pub struct ForwardRequest<'a> {
    pub spec: &'a ProxySpec,
    pub params: &'a [(Arc<str>, String)],
    /// The canonical request path (see `router::normalize`).
    pub path: &'a str,
    pub upstream: &'a UpstreamHandle,
    pub conn: &'a ConnInfo,
    pub request_id: &'a HeaderValue,
    /// The request's trace span (disabled when not traced): the upstream call is its child.
    pub span: &'a tracing::Span,
    /// Counts the bytes of a request body of unknown length as they are forwarded.
    pub request_bytes: Option<&'a Arc<AtomicU64>>,
}

/// Proxy `req` and return the response to send to the client (an error response on failure),
/// with what telemetry needs to know about the call.
pub async fn forward(
    req: Request<Incoming>,
    f: ForwardRequest<'_>,
) -> (Response<ProxyBody>, UpstreamCall) {
    let span = trace::upstream_span(f.span, &f.upstream.name);
    let mut call = UpstreamCall::default();
    let result = try_forward(req, &f, &mut call, &span)
        .instrument(span.clone())
        .await;
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(upstream = %f.upstream.name, error = %e, "proxy error");
            e.to_response(f.request_id)
        }
    };
    trace::record_status(&span, response.status().as_u16());
    (response, call)
}

async fn try_forward(
    req: Request<Incoming>,
    f: &ForwardRequest<'_>,
    call: &mut UpstreamCall,
    span: &tracing::Span,
) -> Result<Response<ProxyBody>, GatewayError> {
    let (endpoint, spec) = {
        let state = f.upstream.load();
        let ctx = PickContext {
            hash_key: hash_key(&state.spec.load_balancing, &req, f.conn, f.path),
            avoid: None,
        };
        let endpoint = state
            .pick(&ctx)
            .cloned()
            .ok_or_else(|| GatewayError::NoEndpoint(f.upstream.name.to_string()))?;
        (endpoint, state.spec.clone())
    };
    call.endpoint = Some(endpoint.address);
    let settings = PoolSettings {
        connect_timeout: spec.connect_timeout,
        idle_timeout: spec.idle_timeout,
        max_idle: spec.max_idle_per_endpoint,
    };
    let pool: Arc<ConnPool> = endpoint
        .data_plane(|| Arc::new(ConnPool::new(endpoint.address, settings)))
        .cloned()
        .ok_or(GatewayError::UpstreamClosed)?;
    let mut req = req;
    let upgrading = upgrade::is_upgrade_request(&req);
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let protocol = if upgrading {
        UpstreamProtocol::Http1
    } else {
        spec.protocol
    };
    let mut upstream_req = build_upstream_request(req, f, &endpoint, protocol, upgrading)?;
    trace::inject(span, upstream_req.headers_mut());
    let in_flight = endpoint.start_request();
    let started = tokio::time::Instant::now();
    if let Some(client_upgrade) = client_upgrade {
        let upgraded = upgrade::forward(
            client_upgrade,
            upstream_req,
            &pool,
            &settings,
            f.request_id,
            in_flight,
        )
        .await;
        call.elapsed = Some(started.elapsed());
        return upgraded;
    }
    let sent = tokio::time::timeout(
        f.spec.timeout,
        send(&pool, &settings, protocol, upstream_req),
    )
    .await;
    call.elapsed = Some(started.elapsed());
    let (response, lease) = match sent {
        Ok(result) => result?,
        Err(_) => return Err(GatewayError::UpstreamTimeout(f.spec.timeout)),
    };
    endpoint.stats.observe_rtt(started.elapsed());
    let (mut parts, body) = response.into_parts();
    headers::to_client(&mut parts.headers, parts.version, f.request_id, false);
    parts.version = Version::HTTP_11;
    Ok(Response::from_parts(
        parts,
        ProxyBody::Upstream(UpstreamBody::new(body, lease, in_flight)),
    ))
}

/// Send on a pooled connection. A reused HTTP/1.1 connection that turns out dead before the
/// request was written is replaced once by a fresh one (the keep-alive race).
async fn send(
    pool: &Arc<ConnPool>,
    settings: &PoolSettings,
    protocol: UpstreamProtocol,
    req: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Lease), GatewayError> {
    match protocol {
        UpstreamProtocol::Http2 => {
            let Checkout::H2(conn) = pool.checkout_h2(settings).await? else {
                return Err(GatewayError::UpstreamClosed);
            };
            let response = conn
                .sender()
                .send_request(req)
                .await
                .map_err(|e| GatewayError::from_upstream(&e))?;
            Ok((response, Lease::H2(conn)))
        }
        UpstreamProtocol::Http1 => {
            let mut req = req;
            for _attempt in 0..2 {
                let Checkout::H1 { mut conn, reused } = pool.checkout_h1(settings).await? else {
                    return Err(GatewayError::UpstreamClosed);
                };
                match conn.sender().try_send_request(req).await {
                    Ok(response) => {
                        return Ok((
                            response,
                            Lease::H1 {
                                conn,
                                pool: pool.clone(),
                            },
                        ));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) if reused => req = unsent,
                        _ => return Err(GatewayError::from_upstream(e.error())),
                    },
                }
            }
            Err(GatewayError::UpstreamClosed)
        }
    }
}

fn build_upstream_request(
    req: Request<Incoming>,
    f: &ForwardRequest<'_>,
    endpoint: &Endpoint,
    protocol: UpstreamProtocol,
    upgrading: bool,
) -> Result<Request<ProxyBody>, GatewayError> {
    let client_host = client_host(&req);
    let path = if f.spec.rewrite.is_identity() {
        f.path.to_string()
    } else {
        f.spec.rewrite.apply(f.path, f.params)
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let path_and_query = PathAndQuery::try_from(path_and_query)
        .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
    let host = match &f.spec.host {
        HostPolicy::Preserve => client_host
            .clone()
            .unwrap_or_else(|| endpoint.host_header.clone()),
        HostPolicy::Upstream => endpoint.host_header.clone(),
        HostPolicy::Fixed(value) => value.clone(),
    };
    let (mut parts, body) = req.into_parts();
    // An upgrade request carries no body; its connection becomes the tunnel.
    let body = match (upgrading, f.request_bytes) {
        (true, _) => ProxyBody::Empty,
        (false, Some(counter)) => ProxyBody::Counted(body, counter.clone()),
        (false, None) => ProxyBody::Incoming(body),
    };
    parts.extensions = http::Extensions::new();
    let client = ClientSide {
        ip: f.conn.peer.ip(),
        tls: f.conn.tls,
        version: parts.version,
        host: client_host.as_ref(),
    };
    headers::to_upstream(&mut parts.headers, &client, f.request_id, upgrading);
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.uri = Uri::from(path_and_query);
            parts.version = Version::HTTP_11;
            parts.headers.insert(header::HOST, host);
        }
        UpstreamProtocol::Http2 => {
            let authority = Authority::try_from(host.as_bytes())
                .unwrap_or_else(|_| Authority::from_static("upstream"));
            parts.uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(authority)
                .path_and_query(path_and_query)
                .build()
                .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
        }
    }
    Ok(Request::from_parts(parts, body))
}

/// The Host the client addressed: the Host header, or the HTTP/2 authority.
fn client_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

fn hash_key<B>(lb: &LoadBalancing, req: &Request<B>, conn: &ConnInfo, path: &str) -> Option<u64> {
    let LoadBalancing::ConsistentHash(on) = lb else {
        return None;
    };
    match on {
        HashOn::Header(name) => req.headers().get(name).map(|v| stable_hash(v.as_bytes())),
        HashOn::Cookie(name) => cookie(req, name).map(|v| stable_hash(v.as_bytes())),
        HashOn::ClientIp => Some(stable_hash(conn.peer.ip().to_string().as_bytes())),
        HashOn::Path => Some(stable_hash(path.as_bytes())),
    }
}

fn cookie<'r, B>(req: &'r Request<B>, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
