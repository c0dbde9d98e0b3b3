//! Edge security checks on each request, in the order they run: the request's authority (Host
//! rules, 400, whatever the settings), header names with underscores, escaped slashes, the
//! client's address (trusted proxies), request-head limits (414, 431) — before routing; then, with the route's policy, IP
//! allow/deny lists and User-Agent rules (403), the query parameter count (400), the declared
//! body size (413), the WAF on the head and on a bounded prefix of a JSON or form body (403 in
//! `block` mode, a log line and a counter in `detect` mode), and the limits that follow the body
//! as it streams (413 mid-stream, 408 for a slow body; see [`body`]).
//!
//! Connection-level protection (PROXY protocol, per-IP connection limits, the header timeout)
//! is in `server`. Everything here reads the immutable policy and per-request state only.

pub mod body;
pub mod client_ip;
pub mod head;
pub mod waf;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use meshgate_config::security::{SecurityPolicy, WafMode};
use tokio::time::Instant;

use self::body::{BodyGuard, BodyRejection, BodyVerdict, allowance};
use self::waf::{BodyKind, Finding};
use crate::error::error_response;
use crate::proxy::body::ProxyBody;
use crate::server::context::RequestContext;

/// Counts of what the security checks did, since the node started.
#[derive(Debug, Default)]
pub struct SecurityStats {
    pub connections_refused: AtomicU64,
    pub proxy_protocol_failures: AtomicU64,
    pub requests_refused: AtomicU64,
    pub waf_detections: AtomicU64,
    pub waf_blocks: AtomicU64,
    pub bodies_cut: AtomicU64,
}

/// A plain copy of [`SecurityStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityCounts {
    pub connections_refused: u64,
    pub proxy_protocol_failures: u64,
    pub requests_refused: u64,
    pub waf_detections: u64,
    pub waf_blocks: u64,
    pub bodies_cut: u64,
}

impl SecurityStats {
    pub fn snapshot(&self) -> SecurityCounts {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SecurityCounts {
            connections_refused: r(&self.connections_refused),
            proxy_protocol_failures: r(&self.proxy_protocol_failures),
            requests_refused: r(&self.requests_refused),
            waf_detections: r(&self.waf_detections),
            waf_blocks: r(&self.waf_blocks),
            bodies_cut: r(&self.bodies_cut),
        }
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A body cut while streaming, answered from the proxy's error (413 or 408).
    pub fn count_cut_body(&self) {
        Self::bump(&self.bodies_cut);
        Self::bump(&self.requests_refused);
    }

    /// Count one event (connection-level checks live in `server`).
    pub fn bump_relaxed(c: &AtomicU64) {
        Self::bump(c);
    }
}

type Refusal = Box<Response<ProxyBody>>;

fn refuse(
    stats: &SecurityStats,
    status: StatusCode,
    message: &str,
    ctx: &RequestContext,
) -> Refusal {
    SecurityStats::bump(&stats.requests_refused);
    tracing::debug!(
        client = %ctx.client_ip,
        status = status.as_u16(),
        reason = message,
        "request refused by security checks"
    );
    Box::new(error_response(status, message, &ctx.request_id))
}

/// Before routing: the request's one authority (always), header names with underscores and
/// escaped slashes, the client address, then the head limits that hyper's own parser leaves to
/// us (it is configured with larger hard limits so that these answer first).
pub fn before_routing<B>(
    policy: &SecurityPolicy,
    stats: &SecurityStats,
    ctx: &mut RequestContext,
    req: &mut Request<B>,
) -> Result<(), Refusal> {
    if let Err(e) = head::check_authority(req) {
        return Err(refuse(stats, StatusCode::BAD_REQUEST, &e.to_string(), ctx));
    }
    if !policy.enabled {
        return Ok(());
    }
    match head::underscores(req.headers_mut(), policy.headers_with_underscores) {
        Ok(0) => {}
        Ok(dropped) => tracing::debug!(
            client = %ctx.conn.peer,
            dropped,
            "header fields with underscores dropped"
        ),
        Err(e) => return Err(refuse(stats, StatusCode::BAD_REQUEST, &e.to_string(), ctx)),
    }
    if policy.reject_escaped_slashes && has_escaped_slash(req.uri().path()) {
        return Err(refuse(
            stats,
            StatusCode::BAD_REQUEST,
            "escaped slash (%2F) in the path",
            ctx,
        ));
    }
    ctx.client_ip = client_ip::resolve(policy, ctx.conn.peer.ip(), req.headers_mut());
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > policy.max_uri_length {
        // RFC 9110 §15.5.15.
        return Err(refuse(
            stats,
            StatusCode::URI_TOO_LONG,
            "request target too long",
            ctx,
        ));
    }
    let headers = req.headers();
    if headers.len() > policy.max_headers {
        // RFC 6585 §5.
        return Err(refuse(
            stats,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many request header fields",
            ctx,
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > policy.max_header_bytes {
        return Err(refuse(
            stats,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large",
            ctx,
        ));
    }
    Ok(())
}

/// `%2F` or `%2f` in a path.
fn has_escaped_slash(path: &str) -> bool {
    path.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] | 0x20) == b'f')
}

/// With the route's policy (the listener's when no route matched): IP rules, bots, query count,
/// declared body size, WAF. On proxied routes (`inspect_body`) the WAF also reads a bounded body
/// prefix. Returns the guard the body must stream through, when there is a body.
pub async fn after_routing(
    policy: &SecurityPolicy,
    stats: &SecurityStats,
    ctx: &RequestContext,
    req: &mut Request<Incoming>,
    path: &str,
    inspect_body: bool,
) -> Result<Option<BodyGuard>, Refusal> {
    if !policy.enabled {
        return Ok(None);
    }
    check_head(policy, stats, ctx, req, path)?;
    if req.body().is_end_stream() {
        return Ok(None);
    }
    let verdict = Arc::new(BodyVerdict::default());
    let mut guard = BodyGuard {
        max_size: policy.max_body_size,
        rate: policy.min_body_rate,
        prefix: None,
        trailers: None,
        verdict,
        waited: Duration::ZERO,
    };
    let kind = BodyKind::of(req.headers().get(header::CONTENT_TYPE));
    if let (true, true, Some(kind)) = (inspect_body, policy.waf.active() && policy.waf.body, kind) {
        let (frames, waited) = Box::pin(read_prefix(policy, stats, ctx, req.body_mut())).await?;
        let mut joined = BytesMut::new();
        for frame in frames {
            match frame.into_data() {
                Ok(data) => joined.extend_from_slice(&data),
                Err(frame) => guard.trailers = frame.into_trailers().ok(),
            }
        }
        let inspected = &joined[..joined.len().min(policy.waf.max_body_inspect)];
        if let Some(finding) = waf::inspect_body(&policy.waf, kind, inspected) {
            waf_verdict(policy, stats, ctx, &finding)?;
        }
        guard.prefix = Some(joined.freeze());
        guard.waited = waited;
    }
    Ok(Some(guard))
}

/// The checks on the request head with the route's policy.
pub fn check_head<B>(
    policy: &SecurityPolicy,
    stats: &SecurityStats,
    ctx: &RequestContext,
    req: &Request<B>,
    path: &str,
) -> Result<(), Refusal> {
    if !policy.enabled {
        return Ok(());
    }
    let ip = ctx.client_ip;
    if policy.ip_deny.contains(ip) || !(policy.ip_allow.is_empty() || policy.ip_allow.contains(ip))
    {
        return Err(refuse(
            stats,
            StatusCode::FORBIDDEN,
            "client IP is not allowed",
            ctx,
        ));
    }
    let headers = req.headers();
    if policy.bots.active() {
        let ua = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let allowed = match (ua, &policy.bots.allow) {
            (Some(ua), Some(allow)) => allow.is_match(ua),
            _ => false,
        };
        let denied = match ua {
            None => policy.bots.block_missing,
            Some(ua) => policy.bots.deny.as_ref().is_some_and(|d| d.is_match(ua)),
        };
        if denied && !allowed {
            return Err(refuse(
                stats,
                StatusCode::FORBIDDEN,
                "user agent is not allowed",
                ctx,
            ));
        }
    }
    let query = req.uri().query();
    if let Some(q) = query {
        let params = q.split('&').filter(|p| !p.is_empty()).count();
        if params > policy.max_query_params {
            return Err(refuse(
                stats,
                StatusCode::BAD_REQUEST,
                "too many query parameters",
                ctx,
            ));
        }
    }
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > policy.max_body_size
    {
        return Err(refuse(
            stats,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            ctx,
        ));
    }
    if policy.waf.active()
        && let Some(finding) = waf::inspect_head(&policy.waf, path, query, headers)
    {
        waf_verdict(policy, stats, ctx, &finding)?;
    }
    Ok(())
}

fn waf_verdict(
    policy: &SecurityPolicy,
    stats: &SecurityStats,
    ctx: &RequestContext,
    finding: &Finding,
) -> Result<(), Refusal> {
    SecurityStats::bump(&stats.waf_detections);
    let blocking = policy.waf.mode == WafMode::Block;
    tracing::warn!(
        target: "meshgate::waf",
        rule = finding.rule.name(),
        location = %finding.location,
        client = %ctx.client_ip,
        route = ctx.route_name(),
        request_id = ctx.request_id.to_str().unwrap_or(""),
        action = if blocking { "block" } else { "detect" },
        "WAF rule matched"
    );
    if !blocking {
        return Ok(());
    }
    SecurityStats::bump(&stats.waf_blocks);
    let message = format!("request blocked by WAF rule {}", finding);
    Err(refuse(stats, StatusCode::FORBIDDEN, &message, ctx))
}

/// Read frames until `max_body_inspect` bytes or the end, with the size and rate limits.
async fn read_prefix(
    policy: &SecurityPolicy,
    stats: &SecurityStats,
    ctx: &RequestContext,
    body: &mut Incoming,
) -> Result<(VecDeque<Frame<Bytes>>, Duration), Refusal> {
    let mut frames = VecDeque::new();
    let mut seen = 0u64;
    let mut waited = Duration::ZERO;
    while seen < policy.waf.max_body_inspect as u64 && !body.is_end_stream() {
        let started = Instant::now();
        let next = match policy.min_body_rate {
            Some(rate) => {
                let budget = allowance(rate, seen).saturating_sub(waited);
                match tokio::time::timeout(budget, body.frame()).await {
                    Ok(next) => next,
                    Err(_) => return Err(cut(stats, BodyRejection::TooSlow, ctx)),
                }
            }
            None => body.frame().await,
        };
        waited += started.elapsed();
        match next {
            None => break,
            Some(Err(_)) => {
                return Err(refuse(
                    stats,
                    StatusCode::BAD_REQUEST,
                    "request body could not be read",
                    ctx,
                ));
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                    if seen > policy.max_body_size {
                        return Err(cut(stats, BodyRejection::TooLarge, ctx));
                    }
                }
                let trailers = frame.is_trailers();
                frames.push_back(frame);
                if trailers {
                    break;
                }
            }
        }
    }
    Ok((frames, waited))
}

/// The answer to a body stopped by its limits.
pub fn cut(stats: &SecurityStats, r: BodyRejection, ctx: &RequestContext) -> Refusal {
    SecurityStats::bump(&stats.bodies_cut);
    let status = match r {
        BodyRejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        BodyRejection::TooSlow => StatusCode::REQUEST_TIMEOUT,
    };
    refuse(stats, status, &r.to_string(), ctx)
}
