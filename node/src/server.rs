//! The proxy listener's data plane: serve one client connection with hyper (HTTP/1.1 and h2c),
//! and run each request through routing to a direct response or the upstream proxy.

pub mod admission;
pub mod conn_limit;
pub mod context;
pub mod direct;
pub mod http_settings;
pub mod proxy_protocol;
pub mod request_id;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use meshgate_actors::{AcceptedConnection, ConnectionHandler, NodeView};
use meshgate_config::RouteAction;
use tracing::Instrument;

use self::context::RequestContext;
use self::http_settings::{HttpSettings, RequestActivity};
use crate::error::GatewayError;
use crate::filters::{self, FilterRuntime};
use crate::proxy::body::ProxyBody;
use crate::proxy::{self, ForwardRequest};
use crate::router;
use crate::telemetry::{self, GenerationTelemetry, ObservedBody, RequestObservation};

/// HTTP/2 streams a client may open at once (Envoy and nginx use 100–128).
const H2_MAX_CONCURRENT_STREAMS: u32 = 128;

/// What the gateway knows about the connection a request came in on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's IP as a header value, formatted once per connection (`X-Forwarded-For`).
    pub peer_ip: http::HeaderValue,
    pub local: SocketAddr,
    pub listener: Arc<str>,
    pub tls: bool,
    /// Set on TLS connections.
    pub tls_info: Option<Arc<TlsInfo>>,
    /// `TLSv1.3`, … once TLS termination exists (access log).
    pub tls_version: Option<&'static str>,
}

/// `ip` as a header value (an IP's text is always a valid one).
pub fn ip_header_value(ip: std::net::IpAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(&ip.to_string())
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

/// The request pipeline shared by every proxy connection.
pub struct Gateway {
    view: Arc<NodeView>,
    filters: Arc<FilterRuntime>,
}

impl Gateway {
    pub fn new(view: Arc<NodeView>, filters: Arc<FilterRuntime>) -> Arc<Self> {
        Arc::new(Self { view, filters })
    }

    /// Handle one request; always produces a response (errors become the standard JSON body).
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        conn: &Arc<ConnInfo>,
    ) -> Response<ObservedBody> {
        let mut ctx =
            RequestContext::new(request_id::take_or_generate(req.headers()), conn.clone());
        ctx.observe = RequestObservation::begin(self.telemetry(), &mut req);
        let response = self.dispatch(req, &mut ctx).await;
        let response = finish(response, &mut ctx);
        telemetry::completion::complete(response, ctx)
    }

    /// The serving generation's telemetry handles, when it records anything.
    fn telemetry(&self) -> Option<Arc<GenerationTelemetry>> {
        let snapshot = self.view.load();
        let extension = snapshot.extension.as_ref()?;
        if !extension.downcast_ref::<GenerationTelemetry>()?.is_active() {
            return None;
        }
        extension.clone().downcast().ok()
    }

    async fn dispatch(
        &self,
        mut req: Request<Incoming>,
        ctx: &mut RequestContext,
    ) -> Response<ProxyBody> {
        let security = self
            .view
            .load()
            .listener(&ctx.conn.listener)
            .map(|l| l.security.clone());
        let stats = &self.filters.security;
        if let Some(s) = &security
            && let Err(refused) = filters::security::before_routing(&s.policy, stats, ctx, &mut req)
        {
            return *refused;
        }
        if req.method() == http::Method::OPTIONS && req.uri().path() == "*" {
            return server_options(security.as_deref(), stats, ctx, &req);
        }
        // A cheap clone (shared bytes) so the canonical path can outlive moving `req`.
        let uri = req.uri().clone();
        let path = match router::normalize(uri.path()) {
            Ok(path) => path,
            Err(e) => {
                return crate::error::error_response(
                    http::StatusCode::BAD_REQUEST,
                    &format!("malformed request: {e}"),
                    &ctx.request_id,
                );
            }
        };
        let routing = telemetry::tracing::routing_span(&ctx.observe.span);
        let (matched, upstream) = {
            let _routing = routing.enter();
            let snapshot = self.view.load();
            if let Err((status, message)) = crate::mesh::authorize(&snapshot, &ctx.conn) {
                return crate::error::error_response(status, &message, &ctx.request_id);
            }
            let Some(table) = snapshot.route_table(&ctx.conn.listener) else {
                return GatewayError::NoRoute.to_response(&ctx.request_id);
            };
            let Some(matched) = router::find_route(table, &req, &path) else {
                // Unrouted requests meet the listener's IP, bot and WAF rules before their 404.
                if let Some(s) = &security
                    && let Err(refused) =
                        filters::security::check_head(&s.policy, stats, ctx, &req, &path)
                {
                    return *refused;
                }
                return GatewayError::NoRoute.to_response(&ctx.request_id);
            };
            let upstream = match &matched.route.action {
                RouteAction::Proxy(spec) => snapshot.upstreams.get(spec.upstream).cloned(),
                RouteAction::Respond(_) => None,
            };
            ctx.observe.route_matched(&snapshot, &matched.route);
            (matched, upstream)
        };
        drop(routing);
        ctx.route = Some(matched.route.clone());
        ctx.params = matched.params.clone();
        // Only the upgrades the route allows go upstream (WebSocket by default, never h2c).
        let upgrading = proxy::upgrade::restrict(&mut req, |protocol| {
            security
                .as_ref()
                .is_some_and(|s| s.for_route(matched.route.index).allows_upgrade(protocol))
        });
        let body_guard = match &security {
            Some(s) => {
                let policy = s.for_route(matched.route.index);
                let proxied = matches!(matched.route.action, RouteAction::Proxy(_));
                match filters::security::after_routing(policy, stats, ctx, &mut req, &path, proxied)
                    .await
                {
                    Ok(guard) => guard,
                    Err(refused) => return *refused,
                }
            }
            None => None,
        };
        let body_verdict = body_guard.as_ref().map(|g| g.verdict.clone());
        let filtering = telemetry::tracing::filters_span(&ctx.observe.span);
        if let Err(response) = filters::before_action(&self.filters, ctx, &mut req)
            .instrument(filtering)
            .await
        {
            return response;
        }
        match &matched.route.action {
            RouteAction::Respond(spec) => {
                direct::respond(spec, &matched, req, &path, &ctx.conn, &ctx.request_id).await
            }
            RouteAction::Proxy(spec) => match upstream {
                Some(upstream) => {
                    // Boxed: the proxy's future is most of a request's state, and the
                    // request future is moved (copied) as it is built and polled.
                    let (response, call) = Box::pin(proxy::forward(
                        req,
                        ForwardRequest {
                            spec,
                            params: &matched.params,
                            path: &path,
                            upstream: &upstream,
                            conn: &ctx.conn,
                            request_id: &ctx.request_id,
                            span: &ctx.observe.span,
                            request_bytes: ctx.observe.request_body_counter(),
                            body_guard,
                        },
                    ))
                    .await;
                    ctx.observe.upstream = call;
                    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS && !upgrading {
                        // Nothing asked to switch: a 101 here would turn the client's
                        // connection into a tunnel past routing and every check.
                        return GatewayError::UpstreamProtocol(
                            "101 to a request without an allowed upgrade".into(),
                        )
                        .to_response(&ctx.request_id);
                    }
                    match body_verdict.and_then(|v| v.get()) {
                        // The body broke a limit while streaming and the try failed for it
                        // (HTTP/2 upstreams report a reset rather than our error).
                        Some(r) if response.status().is_server_error() => {
                            *filters::security::cut(stats, r, ctx)
                        }
                        Some(_) => {
                            stats.count_cut_body();
                            response
                        }
                        None => response,
                    }
                }
                None => GatewayError::NoEndpoint(spec.upstream_name.to_string())
                    .to_response(&ctx.request_id),
            },
        }
    }
}

/// `OPTIONS *` asks about the server, not a resource (RFC 9110 §9.3.7): after the listener's
/// checks (as for an unrouted request), 200 with the methods the gateway forwards.
fn server_options(
    security: Option<&meshgate_config::security::ListenerSecurity>,
    stats: &filters::security::SecurityStats,
    ctx: &RequestContext,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    if let Some(s) = security
        && let Err(refused) = filters::security::check_head(&s.policy, stats, ctx, req, "*")
    {
        return *refused;
    }
    let mut response = Response::new(ProxyBody::Empty);
    response.headers_mut().insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
    );
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(0));
    response
}

/// The last step of every request: the request id and the filters' headers go on the response.
fn finish(mut response: Response<ProxyBody>, ctx: &mut RequestContext) -> Response<ProxyBody> {
    let headers = response.headers_mut();
    headers.insert(request_id::HEADER, ctx.request_id.clone());
    if let Some(hsts) = ctx.conn.tls_info.as_ref().and_then(|t| t.hsts.as_ref()) {
        headers.insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    let mut current = None;
    for (name, value) in std::mem::take(&mut ctx.response_headers) {
        // The map yields a name once, then `None` for each further value of it.
        if let Some(name) = name {
            headers.remove(&name);
            current = Some(name);
        }
        if let Some(name) = &current {
            headers.append(name.clone(), value);
        }
    }
    response
}

/// Serves client connections on proxy listeners.
pub struct ProxyService {
    gateway: Arc<Gateway>,
    view: Arc<NodeView>,
    /// Live connections per listener and client IP (kept across reloads).
    per_ip: Arc<conn_limit::PerIpConnections>,
}

impl ProxyService {
    pub fn new(view: Arc<NodeView>, filters: Arc<FilterRuntime>) -> Arc<Self> {
        Arc::new(Self {
            gateway: Gateway::new(view.clone(), filters),
            view,
            per_ip: conn_limit::PerIpConnections::new(),
        })
    }
}

impl ConnectionHandler for ProxyService {
    fn serve(&self, conn: AcceptedConnection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let gateway = self.gateway.clone();
        let per_ip = self.per_ip.clone();
        let (settings, tls, counted, security) = {
            let snapshot = self.view.load();
            let security = snapshot
                .listener(&conn.listener)
                .map(|l| l.security.clone());
            let settings = HttpSettings::new(
                snapshot.listener_http2(&conn.listener),
                snapshot.config.server.header_read_timeout,
                security.as_ref().map(|s| &*s.policy),
            );
            let counted = snapshot
                .extension::<GenerationTelemetry>()
                .and_then(|t| t.listener(&conn.listener))
                .map(|l| l.open());
            (
                settings,
                snapshot.listener_tls(&conn.listener).cloned(),
                counted,
                security,
            )
        };
        Box::pin(async move {
            let AcceptedConnection {
                stream,
                peer,
                local,
                listener,
                graceful,
                force,
            } = conn;
            let gate = admission::Gate {
                listener: &listener,
                security: security.as_deref(),
                header_timeout: settings.header_read_timeout,
                per_ip: &per_ip,
                stats: &gateway.filters.security,
            };
            let Some(admitted) = admission::admit(stream, peer, gate).await else {
                return;
            };
            let conn = ClientConnection {
                peer: admitted.peer,
                local,
                listener,
                graceful,
                force,
            };
            match tls {
                None => {
                    let info = Arc::new(ConnInfo {
                        peer: conn.peer,
                        peer_ip: ip_header_value(conn.peer.ip()),
                        local: conn.local,
                        listener: conn.listener.clone(),
                        tls: false,
                        tls_info: None,
                        tls_version: None,
                    });
                    let io = TokioIo::new(admitted.stream);
                    serve_http(gateway, io, info, settings, &conn.graceful, &conn.force).await;
                }
                // Boxed: the handshake's state would otherwise be part of every plain
                // connection's future (its memory is held for the connection's life).
                Some(tls) => {
                    Box::pin(serve_tls(gateway, admitted.stream, conn, tls, settings)).await
                }
            }
            drop(admitted.permit);
            drop(counted);
        })
    }
}

/// An admitted client connection (its peer is the PROXY protocol source when there is one).
struct ClientConnection {
    peer: SocketAddr,
    local: SocketAddr,
    listener: Arc<str>,
    graceful: tokio_util::sync::CancellationToken,
    force: tokio_util::sync::CancellationToken,
}

/// What a TLS handshake established.
#[derive(Debug)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    pub alpn: Option<Vec<u8>>,
    pub server_name: Option<String>,
    /// The client's certificate chain when it presented one (edge client auth).
    pub peer_certificates: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
    /// The client's SPIFFE id, when its certificate carries one (mesh callers).
    pub peer_spiffe_id: Option<String>,
    /// The listener's `Strict-Transport-Security` value, if configured.
    pub hsts: Option<http::HeaderValue>,
}

async fn serve_tls(
    gateway: Arc<Gateway>,
    stream: admission::ClientStream,
    conn: ClientConnection,
    tls: Arc<meshgate_actors::tls::ListenerTls>,
    settings: HttpSettings,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
    let handshake = tokio::time::timeout(tls.handshake_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %conn.peer, "TLS handshake timed out");
                return;
            }
        },
        _ = conn.force.cancelled() => return,
    };
    let session = stream.get_ref().1;
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLSv1.3",
    };
    let peer_spiffe_id = session
        .peer_certificates()
        .and_then(|chain| meshgate_pki::peer_spiffe_id(chain).ok())
        .map(|id| id.to_string());
    let tls_info = TlsInfo {
        peer_spiffe_id,
        version,
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        server_name: session.server_name().map(str::to_string),
        peer_certificates: session
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect()),
        hsts: tls.hsts.clone(),
    };
    let settings = HttpSettings {
        // ALPN decides; without ALPN, sniff the preface as on plain connections.
        http2: match tls_info.alpn.as_deref() {
            Some(b"h2") => true,
            Some(_) => false,
            None => settings.http2,
        },
        ..settings
    };
    let info = Arc::new(ConnInfo {
        peer: conn.peer,
        peer_ip: ip_header_value(conn.peer.ip()),
        local: conn.local,
        listener: conn.listener.clone(),
        tls: true,
        tls_version: Some(tls_info.version),
        tls_info: Some(Arc::new(tls_info)),
    });
    serve_http(
        gateway,
        TokioIo::new(stream),
        info,
        settings,
        &conn.graceful,
        &conn.force,
    )
    .await;
}

async fn serve_http<I>(
    gateway: Arc<Gateway>,
    io: TokioIo<I>,
    info: Arc<ConnInfo>,
    settings: HttpSettings,
    graceful: &tokio_util::sync::CancellationToken,
    force: &tokio_util::sync::CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    let activity = Arc::new(RequestActivity::default());
    let seen_by_service = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        seen_by_service.record(req.version());
        let gateway = gateway.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(gateway.handle(req, &info).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_buf_size.max(8192))
        .max_headers(settings.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.h2_max_header_list_size)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    if !settings.http2 {
        builder = builder.http1_only();
    }
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    // hyper's header timeout covers HTTP/1.1 once it knows the protocol; this watchdog covers
    // the rest: a connection that completes no request head within the timeout (nothing sent,
    // a stalled h2c preface, or an HTTP/2 client trickling header frames) is closed, and an
    // HTTP/2 connection that starts no new request for that long gets a GOAWAY (streams in
    // flight finish) — the HTTP/2 equivalent of HTTP/1.1's keep-alive limit.
    let timeout = settings.header_read_timeout;
    let mut deadline = tokio::time::Instant::now() + timeout;
    let mut seen = 0;
    let mut idle_closed = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(%peer, error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = graceful.cancelled() => break,
            _ = tokio::time::sleep_until(deadline), if !idle_closed => {
                let (requests, h2) = activity.read();
                if requests == 0 {
                    tracing::debug!(%peer, ?timeout, "no complete request head in time; connection closed");
                    return;
                }
                if requests == seen && h2 {
                    connection.as_mut().graceful_shutdown();
                    idle_closed = true;
                }
                seen = requests;
                deadline = tokio::time::Instant::now() + timeout;
            }
        }
    }
    // Draining: finish what is in flight, refuse new requests, then close.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = force.cancelled() => {}
    }
}
