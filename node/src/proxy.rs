//! Forwarding a routed request to its upstream: admission (concurrency limits, circuit
//! breaker), then tries — pick an endpoint, send over a pooled connection within the per-try
//! and route deadlines, count each try in the endpoint's outlier run, retry when the policy
//! and the retry budget allow — then the request's final outcome in the breaker, and stream
//! the chosen response back. Who failed ([`Culprit`]) decides what is counted at all.
//! Everything here reads snapshots and updates atomics; rare events go to the pool actor.

pub mod body;
pub mod headers;
pub mod pool;
pub mod retry;
pub mod upgrade;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use meshgate_actors::upstream::{
    Admission, BreakerPermit, BreakerState, Endpoint, InFlight, LimitKind, PickContext, Slot,
    UpstreamHandle, UpstreamPoolMsg, stable_hash,
};
use meshgate_config::UpstreamSpec;
use meshgate_config::compile::{HashOn, HostPolicy, LoadBalancing, PathRewrite, ProxySpec};
use meshgate_config::model::UpstreamProtocol;
use meshgate_config::resilience::UpstreamResilience;
use tokio::time::Instant;
use tracing::Instrument;

use self::body::{Held, ProxyBody, UpstreamBody};
use self::headers::ClientSide;
use self::pool::{Checkout, ConnLimits, ConnPool, Lease, PoolSettings};
use self::retry::{RequestBody, TryFailure};
use crate::error::{Culprit, GatewayError, retry_after_value};
use crate::filters::security::body::BodyGuard;
use crate::server::ConnInfo;
use crate::telemetry::UpstreamCall;
use crate::telemetry::tracing as trace;

/// Everything routing decided about one proxied request.
pub struct ForwardRequest<'a> {
    pub spec: &'a ProxySpec,
    pub params: &'a [(Arc<str>, String)],
    /// The canonical request path (see `router::normalize`).
    pub path: &'a str,
    pub upstream: &'a Arc<UpstreamHandle>,
    pub conn: &'a ConnInfo,
    pub request_id: &'a HeaderValue,
    /// The request's trace span (disabled when not traced): the upstream call is its child.
    pub span: &'a tracing::Span,
    /// Counts the bytes of a request body of unknown length as they are forwarded.
    pub request_bytes: Option<&'a Arc<AtomicU64>>,
    /// The route's body limits and the bytes the WAF already read (`filters::security`).
    pub body_guard: Option<BodyGuard>,
}

/// Proxy `req` and return the response to send to the client (an error response on failure),
/// with what telemetry needs to know about the call.
pub async fn forward(
    req: Request<Incoming>,
    mut f: ForwardRequest<'_>,
) -> (Response<ProxyBody>, UpstreamCall) {
    let span = trace::upstream_span(f.span, &f.upstream.name);
    let mut call = UpstreamCall::default();
    let started = Instant::now();
    let guard = f.body_guard.take();
    let result = try_forward(req, &f, guard, &mut call, &span)
        .instrument(span.clone())
        .await;
    call.elapsed = Some(started.elapsed());
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

/// A try that got response headers.
struct Tried {
    response: Response<Incoming>,
    lease: Lease,
    in_flight: InFlight,
}

async fn try_forward(
    mut req: Request<Incoming>,
    f: &ForwardRequest<'_>,
    guard: Option<BodyGuard>,
    call: &mut UpstreamCall,
    span: &tracing::Span,
) -> Result<Response<ProxyBody>, GatewayError> {
    let deadline = Instant::now() + f.spec.timeout;
    let spec = f.upstream.load().spec.clone();
    let request_slot = f
        .upstream
        .limits
        .try_acquire(LimitKind::Request, spec.resilience.limits.max_requests)
        .ok_or(GatewayError::LimitReached(LimitKind::Request))?;
    let hash_key = hash_key(&spec.load_balancing, &req, f.conn, f.path);
    if upgrade::is_upgrade_request(&req) {
        let client_upgrade = hyper::upgrade::on(&mut req);
        let (parts, _) = req.into_parts();
        let mut head = UpstreamHead::new(parts, f, true)?;
        trace::inject(span, &mut head.headers);
        return Box::pin(forward_upgrade(
            client_upgrade,
            head,
            f,
            &spec,
            hash_key,
            call,
        ))
        .await;
    }
    let (parts, body) = req.into_parts();
    let mut head = UpstreamHead::new(parts, f, false)?;
    trace::inject(span, &mut head.headers);
    let resend_possible = f.spec.retry.non_idempotent || head.method.is_idempotent();
    let mut body = RequestBody::prepare(
        body,
        &f.spec.retry,
        resend_possible,
        deadline,
        f.request_bytes,
        guard,
    )
    .await?;
    let tries = Tries {
        f,
        spec: &spec,
        head: &head,
        hash_key,
        deadline,
    };
    tries.run(&mut body, request_slot, call).await
}

/// One request's tries against its upstream.
struct Tries<'a> {
    f: &'a ForwardRequest<'a>,
    spec: &'a UpstreamSpec,
    head: &'a UpstreamHead,
    hash_key: Option<u64>,
    deadline: Instant,
}

impl Tries<'_> {
    async fn run(
        &self,
        body: &mut RequestBody,
        request_slot: Slot,
        call: &mut UpstreamCall,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let retry = &self.f.spec.retry;
        let resilience = &self.spec.resilience;
        let upstream = self.f.upstream;
        // One permit per request: the circuit judges requests after their retries, not tries.
        let permit = match upstream.breaker.admit(resilience.breaker.as_ref()) {
            Admission::Pass(permit) => permit,
            Admission::Reject { retry_after } => return circuit_open(resilience, retry_after),
        };
        let mut last: Option<(Result<Tried, GatewayError>, Verdict)> = None;
        let mut retry_slot: Option<Slot> = None;
        let mut avoid = None;
        for n in 0..=retry.attempts {
            if n > 0 {
                // The previous retry is over; the next one needs the budget's consent.
                retry_slot = None;
                match self.prepare_retry(n).await {
                    Some(slot) => retry_slot = Some(slot),
                    None => break,
                }
            }
            let state = upstream.load_full();
            let ctx = PickContext {
                hash_key: self.hash_key,
                avoid,
            };
            let Some(endpoint) = state.pick(&ctx).cloned() else {
                if last.is_none() {
                    return Err(GatewayError::NoEndpoint(upstream.name.to_string()));
                }
                break;
            };
            call.endpoint = Some(endpoint.address);
            let outcome = match self
                .try_with_deadline(&endpoint, &state.endpoints, body)
                .await
            {
                Err(e) => {
                    // A body the client broke failed the try, whatever the upstream connection
                    // reported (an HTTP/2 upstream only sees its stream reset).
                    let e = body.client_fault().unwrap_or(e);
                    if e.culprit() != Culprit::Upstream {
                        // The client's fault or our own bound: no verdict on the upstream (the
                        // permit goes unused) and no retry.
                        return Err(e);
                    }
                    Err(e)
                }
                ok => ok,
            };
            let success = outcome
                .as_ref()
                .is_ok_and(|t| !t.response.status().is_server_error());
            let verdict = record_try(upstream, resilience, &endpoint, success);
            let again = self.wants_retry(&outcome, body);
            last = Some((outcome, verdict));
            if !again {
                break;
            }
            avoid = Some(endpoint.address);
        }
        let Some((outcome, verdict)) = last else {
            return Err(GatewayError::NoEndpoint(upstream.name.to_string()));
        };
        judge(upstream, resilience, permit, verdict);
        match outcome {
            Ok(tried) => Ok(respond(tried, self.f, [Some(request_slot), retry_slot])),
            Err(e) => Err(e),
        }
    }

    /// Retry number `n`: the jittered back-off, then a slot of the retry budget. `None` when
    /// the wait would outlast the route deadline, the circuit opened meanwhile (other requests
    /// opened it) or the budget is spent. The slot is taken after the wait: the budget bounds
    /// retries in flight to the upstream, and a request waiting out its back-off is none — so
    /// the retries of requests that failed together (an endpoint dying with requests in
    /// flight) spread over the back-off instead of competing for the same instant.
    async fn prepare_retry(&self, n: u32) -> Option<Slot> {
        let wait = retry::backoff(&self.f.spec.retry, n);
        if Instant::now() + wait >= self.deadline {
            return None;
        }
        tokio::time::sleep(wait).await;
        let upstream = self.f.upstream;
        if upstream.breaker.state() == BreakerState::Open {
            return None;
        }
        let Some(slot) = upstream.limits.try_retry(&self.spec.resilience.limits) else {
            tracing::debug!(upstream = %upstream.name, "retry budget spent; not retrying");
            return None;
        };
        Some(slot)
    }

    /// Whether the policy sends the request again after this outcome.
    fn wants_retry(&self, outcome: &Result<Tried, GatewayError>, body: &RequestBody) -> bool {
        let retry = &self.f.spec.retry;
        let failure = match outcome {
            Ok(t) if retry::is_retried_status(retry, t.response.status()) => TryFailure::Status,
            Ok(_) => return false,
            Err(e) => match TryFailure::of_error(e) {
                Some(failure) => failure,
                None => return false,
            },
        };
        Instant::now() < self.deadline
            && retry::should_retry(retry, failure, &self.head.method, body)
    }

    /// One try, bounded by `per_try_timeout` and by what is left of the route timeout.
    async fn try_with_deadline(
        &self,
        endpoint: &Arc<Endpoint>,
        siblings: &[Arc<Endpoint>],
        body: &mut RequestBody,
    ) -> Result<Tried, GatewayError> {
        let per_try = self.f.spec.retry.per_try_timeout;
        let try_deadline = per_try
            .map(|t| Instant::now() + t)
            .filter(|t| *t < self.deadline);
        let attempt = self.try_once(endpoint, siblings, body);
        match tokio::time::timeout_at(try_deadline.unwrap_or(self.deadline), attempt).await {
            Ok(result) => result,
            // The try's connection is dropped with it: closed, never reused.
            Err(_) => Err(GatewayError::UpstreamTimeout(
                match (try_deadline, per_try) {
                    (Some(_), Some(per_try)) => per_try,
                    _ => self.f.spec.timeout,
                },
            )),
        }
    }

    async fn try_once(
        &self,
        endpoint: &Arc<Endpoint>,
        siblings: &[Arc<Endpoint>],
        body: &mut RequestBody,
    ) -> Result<Tried, GatewayError> {
        let settings = pool_settings(self.spec, self.f.upstream);
        let pool: Arc<ConnPool> = endpoint
            .data_plane(|| {
                Arc::new(ConnPool::new(
                    endpoint.address,
                    endpoint_host(endpoint),
                    &settings,
                ))
            })
            .cloned()
            .ok_or(GatewayError::UpstreamClosed)?;
        let limits = &self.spec.resilience.limits;
        let conn_limits = ConnLimits {
            limits: &self.f.upstream.limits,
            max_connections: limits.max_connections,
            max_pending: limits.max_pending_requests,
            siblings,
        };
        let in_flight = endpoint.start_request();
        let started = Instant::now();
        let exchange = Exchange {
            pool: &pool,
            settings: &settings,
            limits: &conn_limits,
            head: self.head,
            spec: self.f.spec,
            endpoint,
        };
        let (response, lease) = exchange.run(self.spec.protocol, body).await?;
        endpoint.stats.observe_rtt(started.elapsed());
        Ok(Tried {
            response,
            lease,
            in_flight,
        })
    }
}

/// What an upstream try says about the upstream as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Response headers with a status below 500.
    Success,
    /// The upstream failed (5xx, refused, reset, timed out, garbage) on an endpoint that was in
    /// good standing: evidence against the upstream.
    Failure,
    /// It failed on an endpoint already out of rotation or on its way out (its failure run had
    /// reached the outlier threshold): that endpoint's problem, which ejection is handling —
    /// requests it had in flight when it died must not open the whole upstream's circuit.
    EndpointFailure,
}

/// Count a try in its endpoint's outlier run (the try that completes a run of
/// `consecutive_failures` asks the pool, once, to eject the endpoint), and say what it means
/// for the upstream. Only upstream failures reach here: the client's and our own are no
/// endpoint's fault.
fn record_try(
    upstream: &UpstreamHandle,
    resilience: &UpstreamResilience,
    endpoint: &Endpoint,
    success: bool,
) -> Verdict {
    let threshold = resilience.outlier.as_ref().map(|o| o.consecutive_failures);
    if success {
        if threshold.is_some() {
            endpoint.health.record_success();
        }
        return Verdict::Success;
    }
    // Read before this failure is counted: the failure that completes the run still counts.
    let verdict = if endpoint.health.answers_for_upstream(threshold) {
        Verdict::Failure
    } else {
        Verdict::EndpointFailure
    };
    if let Some(threshold) = threshold
        && endpoint.health.record_failure(threshold)
    {
        upstream.report(UpstreamPoolMsg::Eject(endpoint.address));
    }
    verdict
}

/// Give the circuit breaker its one verdict on a request: how its last try went. A failure an
/// endpoint answers for alone is no verdict (a half-open probe is handed back for another
/// request); the breaker's trip is told to the pool once.
fn judge(
    upstream: &UpstreamHandle,
    resilience: &UpstreamResilience,
    permit: BreakerPermit,
    verdict: Verdict,
) {
    let success = match verdict {
        Verdict::Success => true,
        Verdict::Failure => false,
        Verdict::EndpointFailure => return,
    };
    if let Some(trip) = permit.record(resilience.breaker.as_ref(), success) {
        upstream.report(UpstreamPoolMsg::BreakerOpened(trip));
    }
}

/// The answer while the circuit is open: the upstream's fallback, or the standard 503.
fn circuit_open(
    resilience: &UpstreamResilience,
    retry_after: Duration,
) -> Result<Response<ProxyBody>, GatewayError> {
    let Some(fallback) = &resilience.fallback else {
        return Err(GatewayError::CircuitOpen { retry_after });
    };
    let mut response = Response::new(ProxyBody::full(fallback.body.clone()));
    *response.status_mut() = fallback.status;
    *response.headers_mut() = fallback.headers.clone();
    if fallback.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert_with(|| retry_after_value(retry_after));
    }
    Ok(response)
}

fn respond(tried: Tried, f: &ForwardRequest<'_>, slots: [Option<Slot>; 2]) -> Response<ProxyBody> {
    let (mut parts, body) = tried.response.into_parts();
    headers::to_client(&mut parts.headers, parts.version, f.request_id, false);
    parts.version = Version::HTTP_11;
    let held = Held {
        in_flight: tried.in_flight,
        slots,
    };
    Response::from_parts(
        parts,
        ProxyBody::Upstream(UpstreamBody::new(body, tried.lease, held)),
    )
}

fn pool_settings(spec: &UpstreamSpec, upstream: &UpstreamHandle) -> PoolSettings {
    PoolSettings {
        connect_timeout: spec.connect_timeout,
        idle_timeout: spec.idle_timeout,
        max_idle: spec.max_idle_per_endpoint,
        tls: upstream.tls(),
    }
}

/// The endpoint's host without the port: the default TLS server name.
fn endpoint_host(endpoint: &Endpoint) -> &str {
    let host = endpoint.host_header.to_str().unwrap_or("");
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            h.trim_start_matches('[').trim_end_matches(']')
        }
        _ => host,
    }
}

/// A WebSocket (or other upgrade): one try, on a dedicated connection, no retry. The
/// circuit breaker still decides whether it may go.
async fn forward_upgrade(
    client_upgrade: hyper::upgrade::OnUpgrade,
    head: UpstreamHead,
    f: &ForwardRequest<'_>,
    spec: &UpstreamSpec,
    hash_key: Option<u64>,
    call: &mut UpstreamCall,
) -> Result<Response<ProxyBody>, GatewayError> {
    let resilience = &spec.resilience;
    let permit = match f.upstream.breaker.admit(resilience.breaker.as_ref()) {
        Admission::Pass(permit) => permit,
        Admission::Reject { retry_after } => return circuit_open(resilience, retry_after),
    };
    let endpoint = f
        .upstream
        .load()
        .pick(&PickContext {
            hash_key,
            avoid: None,
        })
        .cloned()
        .ok_or_else(|| GatewayError::NoEndpoint(f.upstream.name.to_string()))?;
    call.endpoint = Some(endpoint.address);
    let settings = pool_settings(spec, f.upstream);
    let pool: Arc<ConnPool> = endpoint
        .data_plane(|| {
            Arc::new(ConnPool::new(
                endpoint.address,
                endpoint_host(&endpoint),
                &settings,
            ))
        })
        .cloned()
        .ok_or(GatewayError::UpstreamClosed)?;
    let upstream_req =
        head.request(f.spec, &endpoint, UpstreamProtocol::Http1, ProxyBody::Empty)?;
    let in_flight = endpoint.start_request();
    let result = upgrade::forward(
        client_upgrade,
        upstream_req,
        &pool,
        &settings,
        f.request_id,
        in_flight,
    )
    .await;
    if let Err(e) = &result
        && e.culprit() != Culprit::Upstream
    {
        return result;
    }
    let success = result.as_ref().is_ok_and(|r| !r.status().is_server_error());
    let verdict = record_try(f.upstream, resilience, &endpoint, success);
    judge(f.upstream, resilience, permit, verdict);
    result
}

/// One try's request/response exchange on a pooled connection.
struct Exchange<'a> {
    pool: &'a Arc<ConnPool>,
    settings: &'a PoolSettings,
    limits: &'a ConnLimits<'a>,
    head: &'a UpstreamHead,
    spec: &'a ProxySpec,
    endpoint: &'a Endpoint,
}

impl Exchange<'_> {
    fn request(
        &self,
        protocol: UpstreamProtocol,
        body: &mut RequestBody,
    ) -> Result<Request<ProxyBody>, GatewayError> {
        // A body is only missing when a stream already left, and then no try is made.
        let body = body.take().ok_or(GatewayError::UpstreamClosed)?;
        self.head.request(self.spec, self.endpoint, protocol, body)
    }

    /// A reused HTTP/1.1 connection that turns out dead before the request was written is
    /// replaced once by a fresh one (the keep-alive race); a body never written is given back.
    async fn run(
        &self,
        protocol: UpstreamProtocol,
        body: &mut RequestBody,
    ) -> Result<(Response<Incoming>, Lease), GatewayError> {
        if protocol == UpstreamProtocol::Http2 {
            let Checkout::H2(conn) = self.pool.checkout_h2(self.settings, self.limits).await?
            else {
                return Err(GatewayError::UpstreamClosed);
            };
            let response = conn
                .sender()
                .send_request(self.request(protocol, body)?)
                .await
                .map_err(|e| GatewayError::from_upstream(&e))?;
            return Ok((response, Lease::H2(conn)));
        }
        let mut unsent: Option<Request<ProxyBody>> = None;
        for _attempt in 0..2 {
            let (mut conn, reused) = match self.pool.checkout_h1(self.settings, self.limits).await {
                Ok(Checkout::H1 { conn, reused }) => (conn, reused),
                Ok(Checkout::H2(_)) => return Err(GatewayError::UpstreamClosed),
                Err(e) => {
                    if let Some(req) = unsent {
                        body.restore(req.into_body());
                    }
                    return Err(e);
                }
            };
            let req = match unsent.take() {
                Some(req) => req,
                None => self.request(protocol, body)?,
            };
            match conn.sender().try_send_request(req).await {
                Ok(response) => {
                    let lease = Lease::H1 {
                        conn,
                        pool: self.pool.clone(),
                    };
                    return Ok((response, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(req) if reused => unsent = Some(req),
                    Some(req) => {
                        body.restore(req.into_body());
                        return Err(GatewayError::from_upstream(e.error()));
                    }
                    None => return Err(GatewayError::from_upstream(e.error())),
                },
            }
        }
        if let Some(req) = unsent {
            body.restore(req.into_body());
        }
        Err(GatewayError::UpstreamClosed)
    }
}

/// The upstream request minus what depends on the try (endpoint, body): method, rewritten
/// path, forwarded headers.
struct UpstreamHead {
    method: Method,
    path_and_query: PathAndQuery,
    headers: HeaderMap,
    client_host: Option<HeaderValue>,
}

impl UpstreamHead {
    fn new(
        parts: http::request::Parts,
        f: &ForwardRequest<'_>,
        upgrading: bool,
    ) -> Result<Self, GatewayError> {
        let client_host = client_host(&parts);
        let unchanged = f.spec.rewrite.is_identity() && parts.uri.path() == f.path;
        let path_and_query = match parts.uri.path_and_query() {
            // The common case: the client's target goes upstream as it came (shared bytes).
            Some(target) if unchanged => target.clone(),
            _ => {
                let path = forwarded_path(&f.spec.rewrite, parts.uri.path(), f.path, f.params)?;
                let path_and_query = match parts.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                PathAndQuery::try_from(path_and_query)
                    .map_err(|_| GatewayError::BadRequest("invalid request target"))?
            }
        };
        let mut headers = parts.headers;
        let client = ClientSide {
            ip: &f.conn.peer_ip,
            tls: f.conn.tls,
            version: parts.version,
            host: client_host.as_ref(),
        };
        headers::to_upstream(&mut headers, &client, f.request_id, upgrading);
        Ok(Self {
            method: parts.method,
            path_and_query,
            headers,
            client_host,
        })
    }

    fn request(
        &self,
        spec: &ProxySpec,
        endpoint: &Endpoint,
        protocol: UpstreamProtocol,
        body: ProxyBody,
    ) -> Result<Request<ProxyBody>, GatewayError> {
        let host = match &spec.host {
            HostPolicy::Preserve => self
                .client_host
                .clone()
                .unwrap_or_else(|| endpoint.host_header.clone()),
            HostPolicy::Upstream => endpoint.host_header.clone(),
            HostPolicy::Fixed(value) => value.clone(),
        };
        // hyper sends a GET, HEAD or CONNECT body of unknown length as no body at all unless
        // the request says chunked; the client's body (chunked, or HTTP/2 DATA without
        // content-length) must not be lost silently.
        let chunked = matches!(self.method, Method::GET | Method::HEAD | Method::CONNECT)
            && !http_body::Body::is_end_stream(&body)
            && http_body::Body::size_hint(&body).exact().is_none();
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.headers_mut() = self.headers.clone();
        match protocol {
            UpstreamProtocol::Http1 => {
                *req.uri_mut() = Uri::from(self.path_and_query.clone());
                *req.version_mut() = Version::HTTP_11;
                req.headers_mut().insert(header::HOST, host);
                if chunked {
                    req.headers_mut().insert(
                        header::TRANSFER_ENCODING,
                        HeaderValue::from_static("chunked"),
                    );
                }
            }
            UpstreamProtocol::Http2 => {
                let authority = Authority::try_from(host.as_bytes())
                    .unwrap_or_else(|_| Authority::from_static("upstream"));
                *req.uri_mut() = Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(authority)
                    .path_and_query(self.path_and_query.clone())
                    .build()
                    .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
                *req.version_mut() = Version::HTTP_2;
                req.headers_mut().remove(header::HOST);
            }
        }
        Ok(req)
    }
}

/// The path sent upstream: the client's path in its forwarding form (reserved escapes kept,
/// `router::normalize`), through the route's rewrite.
fn forwarded_path(
    rewrite: &PathRewrite,
    raw: &str,
    routed: &str,
    params: &[(Arc<str>, String)],
) -> Result<String, GatewayError> {
    let forward = crate::router::normalize::forwarding_form(raw)
        .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
    if rewrite.is_identity() {
        return Ok(forward.into_owned());
    }
    if *forward == *routed {
        return Ok(rewrite.apply(routed, params));
    }
    // The client escaped reserved characters. A template is rendered from the decoded
    // parameters, so their reserved characters go escaped (they are data inside a segment);
    // a prefix is cut from the forwarding form when it starts with it (otherwise, when the
    // prefix itself was escaped, from the routed form).
    if rewrite.template.is_some() {
        let escaped: Vec<(Arc<str>, String)> = params
            .iter()
            .map(|(name, value)| (name.clone(), escape_reserved(value)))
            .collect();
        return Ok(rewrite.apply(routed, &escaped));
    }
    let starts = rewrite.strip_prefix.as_deref().is_none_or(|prefix| {
        forward
            .strip_prefix(prefix)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
    });
    Ok(rewrite.apply(if starts { forward.as_ref() } else { routed }, params))
}

/// `value` with RFC 3986 gen-delims and sub-delims percent-encoded.
fn escape_reserved(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if ":/?#[]@!$&'()*+,;=".contains(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The Host the client addressed, as routing read it: the request target's authority
/// (absolute form, HTTP/2 `:authority`) when it has one, else the Host header (RFC 9112
/// §3.2.2, RFC 9113 §8.3.1). A Host that disagrees with the authority was refused before
/// routing (`filters::security::head`).
fn client_host(parts: &http::request::Parts) -> Option<HeaderValue> {
    crate::filters::security::head::effective_host(parts)
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
