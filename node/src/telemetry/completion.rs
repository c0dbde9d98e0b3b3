//! The end of a request as telemetry sees it: what is noted while the request moves through
//! the pipeline ([`RequestObservation`]), and the response body wrapper ([`ObservedBody`])
//! that records metrics, hands the access-log/analytics record to the telemetry thread and
//! closes the trace span when the last byte has been sent (bodies stream, so that is the only
//! moment the total time and the byte count are known). Off = one `None` check per frame.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use meshgate_actors::Snapshot;
use meshgate_config::CompiledRoute;
use tokio::time::Instant;
use tracing::Span;

use super::GenerationTelemetry;
use super::metrics::{Outcome, RouteMetrics, method_index};
use super::recorder::FinishedRequest;
use super::tracing::{record_route, record_status, trace_id};
use crate::proxy::body::{BoxError, ProxyBody};
use crate::server::context::RequestContext;

/// Upstream time in milliseconds (Kong's `X-Kong-Upstream-Latency`).
pub const UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-upstream-latency");
/// Time the gateway itself spent, in milliseconds (Kong's `X-Kong-Proxy-Latency`).
pub const GATEWAY_LATENCY: HeaderName = HeaderName::from_static("x-gateway-latency");

/// What the proxy learned about its upstream call.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamCall {
    pub endpoint: Option<SocketAddr>,
    /// From sending (connect included) to the response headers, or to the failure.
    pub elapsed: Option<Duration>,
}

/// Telemetry's notes on one request, kept in its [`RequestContext`].
#[derive(Debug)]
pub struct RequestObservation {
    /// `None` = nothing to record (all telemetry off, or no snapshot yet).
    generation: Option<Arc<GenerationTelemetry>>,
    route: Option<Arc<RouteMetrics>>,
    latency_headers: bool,
    method: Method,
    /// For the access log only (moved into the one allocation made per request, `Pending`).
    logged: Option<LoggedRequest>,
    /// Declared body length (Content-Length, or 0 for no body).
    request_bytes: Option<u64>,
    /// Bytes of a body of unknown length, counted as it is forwarded.
    counted_bytes: Option<Arc<AtomicU64>>,
    pub upstream: UpstreamCall,
    /// The request's server span; disabled unless this request is traced.
    pub span: Span,
}

impl Default for RequestObservation {
    fn default() -> Self {
        Self {
            generation: None,
            route: None,
            latency_headers: false,
            method: Method::GET,
            logged: None,
            request_bytes: None,
            counted_bytes: None,
            upstream: UpstreamCall::default(),
            span: Span::none(),
        }
    }
}

/// Request fields only the access log needs.
#[derive(Debug)]
struct LoggedRequest {
    uri: Uri,
    user_agent: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl RequestObservation {
    /// Start observing a request under `generation`'s settings; may add a `traceparent` (an
    /// unsampled trace root) to the request.
    pub fn begin<B: Body>(
        generation: Option<Arc<GenerationTelemetry>>,
        req: &mut Request<B>,
    ) -> Self {
        let Some(generation) = generation.filter(|g| g.is_active()) else {
            return Self::default();
        };
        let span = match &generation.sampling {
            Some(sampling) => {
                let (method, path) = (req.method().clone(), req.uri().path().to_string());
                sampling.request_span(&method, &path, req.headers_mut())
            }
            None => Span::none(),
        };
        let logged = generation.logs_requests().then(|| LoggedRequest {
            uri: req.uri().clone(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            headers: generation
                .log_headers
                .iter()
                .filter_map(|name| Some((name.clone(), req.headers().get(name)?.clone())))
                .collect(),
        });
        let request_bytes = req.body().size_hint().exact();
        let counted_bytes = request_bytes.is_none().then(|| Arc::new(AtomicU64::new(0)));
        Self {
            method: req.method().clone(),
            route: None,
            latency_headers: false,
            logged,
            request_bytes,
            counted_bytes,
            upstream: UpstreamCall::default(),
            span,
            generation: Some(generation),
        }
    }

    /// Routing chose `route` in `snapshot` (the same snapshot, so indices agree).
    pub fn route_matched(&mut self, snapshot: &Snapshot, route: &CompiledRoute) {
        if self.generation.is_none() {
            return;
        }
        if let Some(handles) = snapshot
            .extension::<GenerationTelemetry>()
            .and_then(|g| g.route(route.index))
        {
            self.route = Some(handles.metrics.clone());
            self.latency_headers = handles.latency_headers;
        }
        record_route(&self.span, &self.method, &route.name);
    }

    /// Where the proxy counts the bytes of a request body of unknown length.
    pub fn request_body_counter(&self) -> Option<&Arc<AtomicU64>> {
        self.counted_bytes.as_ref()
    }

    /// The route's metric handle, for filters (`auth_rejected`, `rate_limited`).
    pub fn route_metrics(&self) -> Option<&Arc<RouteMetrics>> {
        self.route.as_ref()
    }
}

/// The response headers are ready: add latency headers, and wrap the body so that the rest is
/// recorded when it ends.
pub fn complete(mut response: Response<ProxyBody>, ctx: RequestContext) -> Response<ObservedBody> {
    let RequestContext {
        request_id,
        conn,
        client_ip,
        started,
        consumer,
        observe,
        ..
    } = ctx;
    let Some(generation) = observe.generation.clone() else {
        return response.map(ObservedBody::unobserved);
    };
    let upstream_time = observe.upstream.elapsed;
    let gateway_time = started
        .elapsed()
        .saturating_sub(upstream_time.unwrap_or_default());
    if observe.latency_headers {
        let headers = response.headers_mut();
        if let Some(upstream) = upstream_time {
            headers.insert(
                UPSTREAM_LATENCY,
                HeaderValue::from(upstream.as_millis() as u64),
            );
        }
        headers.insert(
            GATEWAY_LATENCY,
            HeaderValue::from(gateway_time.as_millis() as u64),
        );
    }
    let status = response.status().as_u16();
    record_status(&observe.span, status);
    let route = observe
        .route
        .clone()
        .unwrap_or_else(|| generation.unrouted.clone());
    let pending = Pending {
        route,
        method_index: method_index(&observe.method),
        status,
        started,
        upstream_time,
        gateway_time,
        request_id,
        client_ip,
        listener: conn.listener.clone(),
        tls_version: conn.tls_version,
        consumer: consumer.map(|c| c.id.clone()),
        generation,
        observe,
    };
    response.map(|body| ObservedBody {
        inner: body,
        pending: Some(Box::new(pending)),
        bytes_out: 0,
    })
}

/// Everything needed to record a request once its body ends.
#[derive(Debug)]
struct Pending {
    generation: Arc<GenerationTelemetry>,
    route: Arc<RouteMetrics>,
    method_index: usize,
    status: u16,
    started: Instant,
    upstream_time: Option<Duration>,
    gateway_time: Duration,
    request_id: HeaderValue,
    client_ip: std::net::IpAddr,
    listener: Arc<str>,
    tls_version: Option<&'static str>,
    consumer: Option<Arc<str>>,
    observe: RequestObservation,
}

impl Pending {
    fn finish(self: Box<Self>, bytes_out: u64, aborted: bool) {
        let total = self.started.elapsed();
        let bytes_in = self.observe.request_bytes.unwrap_or(0)
            + self
                .observe
                .counted_bytes
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed));
        if self.generation.metrics {
            self.route.record(&Outcome {
                method: self.method_index,
                status: self.status,
                total,
                upstream: self.upstream_time,
                gateway: self.gateway_time,
                request_bytes: bytes_in,
                response_bytes: bytes_out,
            });
        }
        let Some(recorder) = &self.generation.recorder else {
            return;
        };
        let logged = self.observe.logged;
        let (uri, user_agent, headers) = match logged {
            Some(l) => (l.uri, l.user_agent, l.headers),
            None => (Uri::default(), None, Vec::new()),
        };
        let upstream = (&*self.route.upstream != super::metrics::NO_ROUTE)
            .then(|| self.route.upstream.clone());
        recorder.push(FinishedRequest {
            time: {
                let now = SystemTime::now();
                now.checked_sub(total).unwrap_or(now)
            },
            request_id: self.request_id,
            client_ip: self.client_ip,
            method: self.observe.method,
            uri,
            status: self.status,
            bytes_in,
            bytes_out,
            total,
            upstream_time: self.upstream_time,
            gateway_time: self.gateway_time,
            route: self.route.route.clone(),
            upstream,
            endpoint: self.observe.upstream.endpoint,
            consumer: self.consumer,
            user_agent,
            tls_version: self.tls_version,
            listener: self.listener,
            trace_id: trace_id(&self.observe.span),
            headers,
            aborted,
        });
        // The span ends here, with the response.
    }
}

/// The response body as sent to the client, counting bytes and recording at its end.
#[derive(Debug)]
pub struct ObservedBody {
    inner: ProxyBody,
    pending: Option<Box<Pending>>,
    bytes_out: u64,
}

impl ObservedBody {
    /// A body nothing is recorded for.
    pub fn unobserved(inner: ProxyBody) -> Self {
        Self {
            inner,
            pending: None,
            bytes_out: 0,
        }
    }

    fn finish(&mut self, aborted: bool) {
        if let Some(pending) = self.pending.take() {
            pending.finish(self.bytes_out, aborted);
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.pending.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.bytes_out += data.len() as u64;
                    }
                }
                Poll::Ready(None) => this.finish(false),
                Poll::Ready(Some(Err(_))) => this.finish(true),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // Dropped without a final poll: ended cleanly if nothing was left to send (empty
        // bodies are never polled), cut short otherwise (client gone).
        let aborted = !self.inner.is_end_stream();
        self.finish(aborted);
    }
}
