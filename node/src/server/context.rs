//! What the pipeline knows about one request as it moves through routing, filters and the
//! upstream call; read at the end for response headers, logs and metrics.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use meshgate_config::CompiledRoute;
use meshgate_config::auth::Consumer;
use tokio::time::Instant;

use super::ConnInfo;
use crate::telemetry::RequestObservation;

/// Per-request state. Filters may read everything and add response headers.
#[derive(Debug)]
pub struct RequestContext {
    pub request_id: HeaderValue,
    pub conn: Arc<ConnInfo>,
    /// The client as far as the gateway trusts it: the socket peer by default.
    pub client_ip: IpAddr,
    pub started: Instant,
    /// Set once routing found a route.
    pub route: Option<Arc<CompiledRoute>>,
    /// Template parameters captured by the route's path.
    pub params: Vec<(Arc<str>, String)>,
    /// Headers filters want on the response (rate-limit counters, deprecation notices, …).
    pub response_headers: HeaderMap,
    /// Who is calling, once a route's `auth:` accepted the request (the anonymous consumer
    /// included); `None` on routes without auth. For logs, metrics, analytics and rate limits.
    pub consumer: Option<Arc<Consumer>>,
    /// Telemetry's notes: route metric handle, upstream timing, trace span.
    pub observe: RequestObservation,
}

impl RequestContext {
    pub fn new(request_id: HeaderValue, conn: Arc<ConnInfo>) -> Self {
        Self {
            request_id,
            client_ip: conn.peer.ip(),
            conn,
            started: Instant::now(),
            route: None,
            params: Vec::new(),
            response_headers: HeaderMap::new(),
            consumer: None,
            observe: RequestObservation::default(),
        }
    }

    /// The route's name, or `-` before routing.
    pub fn route_name(&self) -> &str {
        self.route.as_ref().map_or("-", |r| &r.name)
    }
}
