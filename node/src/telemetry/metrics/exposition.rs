//! The Prometheus text exposition (format 0.0.4) of everything the node measures: the
//! registry's per-route handles plus gauges read from the published state at scrape time
//! (upstreams, config generation, reloads, actor restarts). Runs on the admin listener only.

use std::fmt::{Display, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use meshgate_actors::upstream::Endpoint;
use meshgate_actors::{NodeView, Snapshot};

use super::{Histogram, LATENCY_BUCKETS, METHOD_LABELS, Metrics, RouteMetrics, STATUS_CLASSES};

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters of the access-log / analytics writer, when it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecorderStats {
    pub lines: u64,
    pub dropped: u64,
    pub write_errors: u64,
    pub analytics_entries: u64,
    pub analytics_overflow: u64,
}

/// What one scrape reads.
pub struct Scrape<'a> {
    pub metrics: &'a Metrics,
    pub view: &'a NodeView,
    pub recorder: RecorderStats,
    /// Edge security counters, when the node's filters report them.
    pub security: Option<crate::filters::security::SecurityCounts>,
}

/// A circuit breaker's state as exported (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// How the metrics see one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointHealth {
    pub healthy: bool,
    pub breaker: BreakerState,
}

/// An endpoint's health as the data plane sees it: it passed its active probes and is not
/// ejected; the breaker is the upstream's (one per upstream).
pub fn endpoint_health(endpoint: &Endpoint, breaker: BreakerState) -> EndpointHealth {
    EndpointHealth {
        healthy: endpoint.health.is_available(),
        breaker,
    }
}

/// Render the whole exposition.
pub fn render(scrape: &Scrape<'_>) -> String {
    let mut w = TextWriter::default();
    let snapshot = scrape.view.load_full();
    process(&mut w, scrape);
    let routes = scrape.metrics.routes.load();
    let mut all: Vec<&RouteMetrics> = routes.values().map(|r| &**r).collect();
    all.push(scrape.metrics.unrouted());
    requests(&mut w, &all);
    listeners(&mut w, scrape.metrics);
    upstreams(&mut w, scrape.metrics, &snapshot);
    control_plane(&mut w, scrape, &snapshot);
    recorder(&mut w, &scrape.recorder);
    rate_limit_store(&mut w, &scrape.metrics.rate_limit_store);
    if let Some(counts) = &scrape.security {
        security(&mut w, counts);
    }
    w.out
}

fn rate_limit_store(w: &mut TextWriter, store: &super::rate_limit_store::RateLimitStoreMetrics) {
    if !store.configured() {
        return;
    }
    w.family(
        "meshgate_rate_limit_redis_up",
        "gauge",
        "1 while the rate-limit Redis answers, 0 while policies apply their failure mode.",
    );
    w.sample(
        "meshgate_rate_limit_redis_up",
        &[],
        u8::from(store.reachable()),
    );
    w.family(
        "meshgate_rate_limit_redis_errors_total",
        "counter",
        "Rate-limit checks in Redis that failed or timed out.",
    );
    w.sample(
        "meshgate_rate_limit_redis_errors_total",
        &[],
        store.errors(),
    );
    let (open, closed) = store.fallbacks();
    w.family(
        "meshgate_rate_limit_redis_fallback_total",
        "counter",
        "Requests decided without Redis: by the local fallback limit (open) or refused (closed).",
    );
    w.sample(
        "meshgate_rate_limit_redis_fallback_total",
        &[("mode", "open")],
        open,
    );
    w.sample(
        "meshgate_rate_limit_redis_fallback_total",
        &[("mode", "closed")],
        closed,
    );
}

fn process(w: &mut TextWriter, scrape: &Scrape<'_>) {
    w.family(
        "meshgate_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    w.sample(
        "meshgate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    w.family(
        "meshgate_process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    w.sample(
        "meshgate_process_start_time_seconds",
        &[],
        unix_seconds(scrape.metrics.started_at),
    );
}

fn requests(w: &mut TextWriter, routes: &[&RouteMetrics]) {
    w.family(
        "meshgate_requests_total",
        "counter",
        "Requests answered, by route, upstream, method and status class.",
    );
    for r in routes {
        for (m, method) in METHOD_LABELS.iter().enumerate() {
            for (c, class) in STATUS_CLASSES.iter().enumerate() {
                let n = r.requests(m, c);
                if n > 0 {
                    w.sample(
                        "meshgate_requests_total",
                        &[
                            ("route", &r.route),
                            ("upstream", &r.upstream),
                            ("method", method),
                            ("status_class", class),
                        ],
                        n,
                    );
                }
            }
        }
    }
    route_histograms(w, routes);
    route_bytes(w, routes);
    route_rejections(w, routes);
}

/// Reads one histogram, counter or per-method counter of a route.
type ReadHistogram = fn(&RouteMetrics) -> &Histogram;
type ReadCounter = fn(&RouteMetrics) -> u64;
type ReadByMethod = fn(&RouteMetrics, usize) -> u64;

fn route_histograms(w: &mut TextWriter, routes: &[&RouteMetrics]) {
    let histograms: [(&str, &str, ReadHistogram); 3] = [
        (
            "meshgate_request_duration_seconds",
            "Total time from the request's arrival to the last byte of its response.",
            |r| &r.total,
        ),
        (
            "meshgate_upstream_duration_seconds",
            "Time from sending to the upstream (connect included) to its response headers.",
            |r| &r.upstream_time,
        ),
        (
            "meshgate_gateway_duration_seconds",
            "Time the gateway itself spent before the response headers were ready, upstream time excluded.",
            |r| &r.gateway_time,
        ),
    ];
    for (name, help, pick) in histograms {
        w.family(name, "histogram", help);
        for r in routes {
            w.histogram(
                name,
                &[("route", &r.route), ("upstream", &r.upstream)],
                pick(r),
            );
        }
    }
}

fn route_bytes(w: &mut TextWriter, routes: &[&RouteMetrics]) {
    let bytes: [(&str, &str, ReadCounter); 2] = [
        (
            "meshgate_request_bytes_total",
            "Request body bytes received from clients.",
            |r| r.request_bytes.load(Relaxed),
        ),
        (
            "meshgate_response_bytes_total",
            "Response body bytes sent to clients.",
            |r| r.response_bytes.load(Relaxed),
        ),
    ];
    for (name, help, read) in bytes {
        w.family(name, "counter", help);
        for r in routes {
            w.sample(
                name,
                &[("route", &r.route), ("upstream", &r.upstream)],
                read(r),
            );
        }
    }
}

fn route_rejections(w: &mut TextWriter, routes: &[&RouteMetrics]) {
    let rejections: [(&str, &str, ReadByMethod); 2] = [
        (
            "meshgate_auth_rejections_total",
            "Requests refused by authentication or authorization, by route and method.",
            |r, m| r.auth_rejected[m].load(Relaxed),
        ),
        (
            "meshgate_rate_limit_rejections_total",
            "Requests refused by a rate limit, by route and method.",
            |r, m| r.rate_limited[m].load(Relaxed),
        ),
    ];
    for (name, help, read) in rejections {
        w.family(name, "counter", help);
        for r in routes {
            for (m, method) in METHOD_LABELS.iter().enumerate() {
                let n = read(r, m);
                if n > 0 {
                    w.sample(name, &[("route", &r.route), ("method", method)], n);
                }
            }
        }
    }
}

fn listeners(w: &mut TextWriter, metrics: &Metrics) {
    let listeners = metrics.listeners.load();
    w.family(
        "meshgate_connections_active",
        "gauge",
        "Client connections open now, by listener.",
    );
    for (name, l) in listeners.iter() {
        w.sample(
            "meshgate_connections_active",
            &[("listener", name)],
            l.active(),
        );
    }
    w.family(
        "meshgate_connections_total",
        "counter",
        "Client connections accepted, by listener.",
    );
    for (name, l) in listeners.iter() {
        w.sample(
            "meshgate_connections_total",
            &[("listener", name)],
            l.total(),
        );
    }
}

fn upstreams(w: &mut TextWriter, metrics: &Metrics, snapshot: &Snapshot) {
    let states: Vec<_> = snapshot.upstreams.iter().map(|u| (u, u.load())).collect();
    let gauges: [(&str, &str); 5] = [
        (
            "meshgate_upstream_endpoints",
            "Endpoints an upstream currently has (targets as resolved).",
        ),
        (
            "meshgate_upstream_endpoints_healthy",
            "Endpoints of an upstream that may receive traffic.",
        ),
        (
            "meshgate_upstream_circuit_breakers_open",
            "Endpoints of an upstream whose circuit breaker is open or half-open.",
        ),
        (
            "meshgate_upstream_in_flight",
            "Requests in flight to an upstream.",
        ),
        (
            "meshgate_upstream_unresolved_targets",
            "Targets of an upstream whose last name lookup failed.",
        ),
    ];
    for (i, (name, help)) in gauges.iter().enumerate() {
        w.family(name, "gauge", help);
        for (handle, state) in &states {
            let breaker = match handle.breaker.state() {
                meshgate_actors::upstream::BreakerState::Closed => BreakerState::Closed,
                meshgate_actors::upstream::BreakerState::Open => BreakerState::Open,
                meshgate_actors::upstream::BreakerState::HalfOpen => BreakerState::HalfOpen,
            };
            let health = state.endpoints.iter().map(|e| endpoint_health(e, breaker));
            let value = match i {
                0 => state.endpoints.len() as u64,
                1 => health.filter(|h| h.healthy).count() as u64,
                2 => health.filter(|h| h.breaker != BreakerState::Closed).count() as u64,
                3 => state
                    .endpoints
                    .iter()
                    .map(|e| u64::from(e.stats.in_flight()))
                    .sum(),
                _ => state.unresolved.len() as u64,
            };
            w.sample(name, &[("upstream", &handle.name)], value);
        }
    }
    let ejections = metrics.ejections.load();
    w.family(
        "meshgate_upstream_ejections_total",
        "counter",
        "Endpoints ejected from an upstream by outlier detection.",
    );
    for (handle, state) in &states {
        // Ejections are counted on the endpoints; the registry keeps hooked-in extra counts.
        let n = ejections.get(&handle.name).map_or(0, |c| c.load(Relaxed))
            + state
                .endpoints
                .iter()
                .map(|e| e.health.total_ejections())
                .sum::<u64>();
        w.sample(
            "meshgate_upstream_ejections_total",
            &[("upstream", &handle.name)],
            n,
        );
    }
}

fn control_plane(w: &mut TextWriter, scrape: &Scrape<'_>, snapshot: &Snapshot) {
    let (ok, failed) = scrape.view.reload_counts();
    w.family(
        "meshgate_config_reloads_total",
        "counter",
        "Config reload attempts, by result.",
    );
    w.sample(
        "meshgate_config_reloads_total",
        &[("result", "success")],
        ok,
    );
    w.sample(
        "meshgate_config_reloads_total",
        &[("result", "failure")],
        failed,
    );
    w.family(
        "meshgate_config_generation",
        "gauge",
        "The config generation serving now (1 at start, +1 per applied reload).",
    );
    w.sample("meshgate_config_generation", &[], snapshot.generation);
    w.family(
        "meshgate_config_loaded_timestamp_seconds",
        "gauge",
        "When the serving config generation was applied, since the Unix epoch.",
    );
    w.sample(
        "meshgate_config_loaded_timestamp_seconds",
        &[],
        unix_seconds(snapshot.loaded_at),
    );
    w.family(
        "meshgate_actor_restarts_total",
        "counter",
        "Control-plane actors restarted by the supervisor after a crash.",
    );
    w.sample(
        "meshgate_actor_restarts_total",
        &[],
        *scrape.view.restarts().borrow(),
    );
    let now = SystemTime::now();
    w.family(
        "meshgate_discovery_staleness_seconds",
        "gauge",
        "Seconds since a discovery source last synced successfully.",
    );
    for (source, at) in scrape.metrics.discovery_synced.load().iter() {
        let age = now.duration_since(*at).unwrap_or_default();
        w.sample(
            "meshgate_discovery_staleness_seconds",
            &[("source", source)],
            age.as_secs_f64(),
        );
    }
    // Upstreams whose endpoints come from discovery: 0 while fresh, the age of the outage
    // while the registry is unreachable (the last known endpoints keep serving).
    for handle in &snapshot.upstreams {
        let state = handle.load();
        if state.spec.discovery.is_none() {
            continue;
        }
        let age = match (state.stale, state.stale_since) {
            (true, Some(since)) => now.duration_since(since).unwrap_or_default(),
            _ => std::time::Duration::ZERO,
        };
        w.sample(
            "meshgate_discovery_staleness_seconds",
            &[("source", &handle.name)],
            age.as_secs_f64(),
        );
    }
    w.family(
        "meshgate_certificate_expiry_seconds",
        "gauge",
        "Seconds until a certificate expires (negative once expired).",
    );
    let mut certificates: Vec<(String, SystemTime)> = scrape
        .metrics
        .certificates
        .load()
        .iter()
        .map(|(name, at)| (name.to_string(), *at))
        .collect();
    if let Some(mesh) = &snapshot.mesh {
        certificates.push((
            format!("mesh:{}", mesh.identity.spiffe_id),
            mesh.identity.not_after(),
        ));
    }
    for (listener, tls) in &snapshot.tls {
        for (name, not_after) in &tls.certificates {
            certificates.push((format!("{listener}:{name}"), *not_after));
        }
    }
    for (name, not_after) in &certificates {
        let left = match not_after.duration_since(now) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        w.sample(
            "meshgate_certificate_expiry_seconds",
            &[("certificate", name)],
            left,
        );
    }
}

fn security(w: &mut TextWriter, c: &crate::filters::security::SecurityCounts) {
    let name = "meshgate_security_events_total";
    w.family(
        name,
        "counter",
        "Edge security events: connections refused (per-IP limit, PROXY header), requests refused, WAF detections and blocks, bodies cut.",
    );
    for (event, value) in [
        ("connection_refused", c.connections_refused),
        ("proxy_protocol_failure", c.proxy_protocol_failures),
        ("request_refused", c.requests_refused),
        ("waf_detection", c.waf_detections),
        ("waf_block", c.waf_blocks),
        ("body_cut", c.bodies_cut),
    ] {
        w.sample(name, &[("event", event)], value);
    }
}

fn recorder(w: &mut TextWriter, stats: &RecorderStats) {
    let counters: [(&str, &str, u64); 4] = [
        (
            "meshgate_access_log_lines_total",
            "Access-log lines written.",
            stats.lines,
        ),
        (
            "meshgate_access_log_dropped_total",
            "Finished-request records dropped because the access-log and analytics writer fell behind.",
            stats.dropped,
        ),
        (
            "meshgate_access_log_write_errors_total",
            "Access-log writes that failed.",
            stats.write_errors,
        ),
        (
            "meshgate_analytics_overflow_total",
            "Requests counted under the overflow key because usage analytics reached max_entries.",
            stats.analytics_overflow,
        ),
    ];
    for (name, help, value) in counters {
        w.family(name, "counter", help);
        w.sample(name, &[], value);
    }
    w.family(
        "meshgate_analytics_entries",
        "gauge",
        "Consumer x route x status class x day entries held by usage analytics.",
    );
    w.sample("meshgate_analytics_entries", &[], stats.analytics_entries);
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Builds the text: `# HELP`/`# TYPE` once per family, then its samples.
#[derive(Default)]
struct TextWriter {
    out: String,
}

impl TextWriter {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let cumulative = h.cumulative();
        for (i, count) in cumulative.iter().enumerate() {
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        let total = cumulative[LATENCY_BUCKETS.len()];
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.sum_seconds());
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {total}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Label values escape `\`, `"` and newlines (text format 0.0.4).
pub(super) fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
