//! Observability: Prometheus metrics, OTLP traces, JSON access logs and usage analytics for
//! the traffic the node serves, plus the process's own log output (`tracing` to stderr, as
//! text or JSON lines, filtered by `MESHGATE_LOG`, then `RUST_LOG`, then `info`; stdout is
//! left for access logs).
//!
//! State that must outlive reloads — metric handles, the access-log writer, analytics — lives
//! in the node-wide [`Telemetry`]. For every config generation the supervisor asks it for a
//! [`GenerationTelemetry`] (it is the snapshot's extension): per-route handles indexed like the
//! routes, so a request resolves its metrics by index, never by a lookup or a lock.

pub mod access_log;
pub mod analytics;
pub mod completion;
pub mod metrics;
pub mod recorder;
pub mod tracing;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use http::HeaderName;
use meshgate_actors::{NodeView, SnapshotData, SnapshotExtension};
use meshgate_config::telemetry::{DEFAULT_ACCESS_LOG_BUFFER, TracingSpec};
use meshgate_config::{CompiledConfig, RouteAction};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use self::analytics::{UsageQuery, UsageReport};
pub use self::completion::{ObservedBody, RequestObservation, UpstreamCall};
use self::metrics::exposition::{RecorderStats, Scrape};
use self::metrics::{ListenerMetrics, Metrics, NO_ROUTE, RouteMetrics};
use self::recorder::{Recorder, RecorderSettings};
use self::tracing::{Sampling, TracingError};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber once; later calls (tests starting several nodes) are no-ops.
/// With `tracing`, the OTLP exporter starts too (call inside the Tokio runtime then).
pub fn init_logging(format: LogFormat, tracing: Option<&TracingSpec>) -> Result<(), TracingError> {
    let filter = std::env::var("MESHGATE_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Exported spans are not log lines.
    let filter = match format!("{}=off", self::tracing::OTEL_TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    match tracing {
        Some(spec) => {
            let otel = self::tracing::otlp_layer(spec)?;
            let _ = registry.with(otel).try_init();
        }
        None => {
            let _ = registry.try_init();
        }
    }
    Ok(())
}

/// The node's telemetry: created once, kept across every reload.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    /// Started the first time a generation wants access logs or analytics.
    recorder: OnceLock<Arc<Recorder>>,
    /// The edge security counters, exported as `meshgate_security_events_total`.
    security: OnceLock<Arc<crate::filters::security::SecurityStats>>,
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Export the security checks' counters with the rest.
    pub fn export_security(&self, stats: Arc<crate::filters::security::SecurityStats>) {
        let _ = self.security.set(stats);
    }

    /// The handles and settings one generation's requests use.
    pub fn prepare(&self, config: &CompiledConfig) -> GenerationTelemetry {
        let spec = &config.telemetry;
        let keys: Vec<(Arc<str>, Arc<str>)> = config
            .routes
            .iter()
            .map(|r| {
                let upstream = match &r.action {
                    RouteAction::Proxy(p) => p.upstream_name.clone(),
                    RouteAction::Respond(_) => NO_ROUTE.into(),
                };
                (r.name.clone(), upstream)
            })
            .collect();
        let handles = self.metrics.resolve_routes(&keys);
        let routes = config
            .routes
            .iter()
            .zip(handles)
            .map(|(r, metrics)| RouteTelemetry {
                metrics,
                latency_headers: spec.latency_headers_on(&r.name),
            })
            .collect();
        let listener_names: Vec<Arc<str>> =
            config.listeners.iter().map(|l| l.name.clone()).collect();
        let settings = RecorderSettings {
            access_log: spec.access_log.clone(),
            analytics: spec.analytics.clone(),
        };
        let mut generation = GenerationTelemetry {
            active: false,
            routes,
            unrouted: self.metrics.unrouted().clone(),
            listeners: self.metrics.resolve_listeners(&listener_names),
            metrics: spec.metrics,
            log_headers: spec
                .access_log
                .as_ref()
                .map(|a| a.headers.clone())
                .unwrap_or_default()
                .into(),
            logs_requests: spec.access_log.is_some(),
            recorder: self.configure_recorder(settings),
            sampling: Sampling::for_config(spec.tracing.as_ref()),
        };
        generation.active = generation.metrics
            || generation.recorder.is_some()
            || generation.sampling.is_some()
            || generation.routes.iter().any(|r| r.latency_headers);
        generation
    }

    /// Hand the new settings to the telemetry thread, starting it on first need.
    fn configure_recorder(&self, settings: RecorderSettings) -> Option<Arc<Recorder>> {
        let wanted = settings.access_log.is_some() || settings.analytics.is_some();
        if let Some(recorder) = self.recorder.get() {
            recorder.configure(settings);
            return wanted.then(|| recorder.clone());
        }
        if !wanted {
            return None;
        }
        let capacity = settings
            .access_log
            .as_ref()
            .map_or(DEFAULT_ACCESS_LOG_BUFFER, |a| a.buffer);
        match Recorder::start(capacity, settings) {
            Ok(recorder) => Some(self.recorder.get_or_init(|| recorder).clone()),
            Err(e) => {
                ::tracing::error!(error = %e, "cannot start the telemetry thread; access logs and analytics are off");
                None
            }
        }
    }

    /// The Prometheus exposition of everything measured.
    pub fn scrape(&self, view: &NodeView) -> String {
        metrics::exposition::render(&Scrape {
            metrics: &self.metrics,
            view,
            recorder: self
                .recorder
                .get()
                .map_or_else(RecorderStats::default, |r| r.stats()),
            security: self.security.get().map(|s| s.snapshot()),
        })
    }

    /// Wait until every finished request so far is written to the access log.
    pub async fn flush(&self) {
        if let Some(recorder) = self.recorder.get() {
            recorder.flush().await;
        }
    }

    /// Reopen the access-log file (SIGUSR1 after logrotate).
    pub fn reopen_access_log(&self) {
        if let Some(recorder) = self.recorder.get() {
            recorder.reopen();
        }
    }

    /// Usage analytics, including every request finished before the call.
    pub async fn usage(&self, query: UsageQuery) -> Option<UsageReport> {
        self.recorder.get()?.usage(query).await
    }
}

impl SnapshotExtension for Telemetry {
    fn build(&self, config: &Arc<CompiledConfig>) -> SnapshotData {
        Arc::new(self.prepare(config))
    }
}

/// The telemetry of one config generation (the snapshot's extension).
#[derive(Debug)]
pub struct GenerationTelemetry {
    /// Anything to record at all (else requests skip telemetry entirely).
    active: bool,
    /// Indexed like `CompiledConfig::routes`.
    routes: Vec<RouteTelemetry>,
    unrouted: Arc<RouteMetrics>,
    listeners: BTreeMap<Arc<str>, Arc<ListenerMetrics>>,
    metrics: bool,
    logs_requests: bool,
    log_headers: Arc<[HeaderName]>,
    recorder: Option<Arc<Recorder>>,
    sampling: Option<Sampling>,
}

/// What a request of one route records into.
#[derive(Debug, Clone)]
pub struct RouteTelemetry {
    pub metrics: Arc<RouteMetrics>,
    pub latency_headers: bool,
}

impl GenerationTelemetry {
    /// Whether a request has anything to record.
    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn route(&self, index: usize) -> Option<&RouteTelemetry> {
        self.routes.get(index)
    }

    /// A listener's connection counters, when metrics are on.
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerMetrics>> {
        if !self.metrics {
            return None;
        }
        self.listeners.get(name)
    }

    fn logs_requests(&self) -> bool {
        self.logs_requests && self.recorder.is_some()
    }
}
