//! Distributed tracing: `tracing` spans under the `meshgate::otel` target (a server span per
//! request with children for routing, filters and the upstream call), exported over OTLP/gRPC
//! by `tracing-opentelemetry` + `opentelemetry-otlp`, and W3C Trace Context (`traceparent`,
//! `tracestate`) read from clients and written upstream so every hop joins one trace.
//!
//! Sampling is decided here, before any span exists: parent-based (a client's sampled flag
//! wins), otherwise `sample_ratio`. An unsampled request creates no span at all — the same
//! zero cost as tracing switched off (`Span::none()` is a null handle); its headers pass
//! through, and a new root gets a `traceparent` with the sampled flag off so the next hops
//! agree. The exporter starts with the process (it needs the runtime and the global
//! subscriber); a reload can change `sample_ratio` or switch tracing off and on, while a new
//! endpoint or service name takes a restart.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use meshgate_config::telemetry::TracingSpec;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The target of every span meant for export; the log output never shows it.
pub const OTEL_TARGET: &str = "meshgate::otel";
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// At exit, how long the last spans may take to reach the collector before they are dropped.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's exporter, once started.
struct Exporter {
    endpoint: String,
    service_name: String,
    provider: SdkTracerProvider,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("the OTLP exporter is already running")]
    AlreadyStarted,
}

/// Start the OTLP exporter and return the layer that feeds it `meshgate::otel` spans. Call
/// inside the Tokio runtime: tonic's channel runs its connection there.
pub fn otlp_layer<S>(spec: &TracingSpec) -> Result<impl Layer<S>, TracingError>
where
    S: ::tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(spec.otlp_endpoint.clone())
        .build()
        .map_err(|e| TracingError::Exporter {
            endpoint: spec.otlp_endpoint.clone(),
            reason: e.to_string(),
        })?;
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(spec.export_interval)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batches)
                .build(),
        )
        // Sampling was decided before the span existed (see `Sampling`): record what arrives.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(
            Resource::builder()
                .with_service_name(spec.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("meshgate");
    EXPORTER
        .set(Exporter {
            endpoint: spec.otlp_endpoint.clone(),
            service_name: spec.service_name.clone(),
            provider,
        })
        .map_err(|_| TracingError::AlreadyStarted)?;
    Ok(tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Spans carry HTTP attributes; source locations, threads and busy/idle time are noise.
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_level(false)
        .with_filter(Targets::new().with_target(OTEL_TARGET, ::tracing::Level::INFO)))
}

/// Export what is buffered and stop the exporter (at process exit; blocks, so call it off the
/// runtime's workers).
pub fn shutdown() {
    if let Some(exporter) = EXPORTER.get()
        && let Err(e) = exporter.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
    {
        ::tracing::warn!(error = %e, "tracing exporter did not shut down cleanly");
    }
}

/// One generation's tracing: present when the config asks for it and the exporter runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    ratio: f64,
}

impl Sampling {
    pub fn for_config(spec: Option<&TracingSpec>) -> Option<Self> {
        let spec = spec?;
        let Some(exporter) = EXPORTER.get() else {
            ::tracing::warn!(
                "telemetry.tracing is configured but the exporter was not started with the process; restart to export traces"
            );
            return None;
        };
        if exporter.endpoint != spec.otlp_endpoint || exporter.service_name != spec.service_name {
            ::tracing::warn!(
                running = %exporter.endpoint,
                configured = %spec.otlp_endpoint,
                "telemetry.tracing endpoint or service name changed; still exporting as started until a restart"
            );
        }
        Some(Self {
            ratio: spec.sample_ratio,
        })
    }

    /// The server span of one request, or `Span::none()` when it is not sampled (then the
    /// client's trace headers pass through untouched, or an unsampled root is started).
    pub fn request_span(&self, method: &Method, path: &str, headers: &mut HeaderMap) -> Span {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let (has_parent, parent_sampled) = {
            let span = parent.span();
            let context = span.span_context();
            (context.is_valid(), context.is_sampled())
        };
        let sampled = if has_parent {
            parent_sampled
        } else {
            self.ratio >= 1.0 || rand::random::<f64>() < self.ratio
        };
        if !sampled {
            if !has_parent {
                start_unsampled_trace(headers);
            }
            return Span::none();
        }
        let span = ::tracing::info_span!(
            target: OTEL_TARGET,
            "request",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %method,
            url.path = path,
            http.route = Empty,
            http.response.status_code = Empty,
        );
        if has_parent {
            let _ = span.set_parent(parent);
        }
        span
    }
}

/// `traceparent` with the sampled flag off, so the hops behind agree not to record.
fn start_unsampled_trace(headers: &mut HeaderMap) {
    let trace_id = rand::random::<u128>() | 1;
    let span_id = rand::random::<u64>() | 1;
    if let Ok(value) = HeaderValue::from_str(&format!("00-{trace_id:032x}-{span_id:016x}-00")) {
        headers.insert(TRACEPARENT, value);
        headers.remove(TRACESTATE);
    }
}

/// The routing child of a request span.
pub fn routing_span(parent: &Span) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    ::tracing::info_span!(target: OTEL_TARGET, parent: parent, "routing", http.route = Empty)
}

/// The filters child of a request span.
pub fn filters_span(parent: &Span) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    ::tracing::info_span!(target: OTEL_TARGET, parent: parent, "filters")
}

/// The upstream call (a client span) of a request span.
pub fn upstream_span(parent: &Span, upstream: &str) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    ::tracing::info_span!(
        target: OTEL_TARGET,
        parent: parent,
        "upstream",
        otel.kind = "client",
        otel.status_code = Empty,
        meshgate.upstream = upstream,
        server.address = Empty,
        http.response.status_code = Empty,
    )
}

/// Write `span`'s context as `traceparent`/`tracestate` (the next hop's parent).
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The trace id of a recorded span, as 32 hex digits.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let id = context.span().span_context().trace_id();
    Some(id.to_string())
}

/// Mark the end of a request or upstream span: its status code, and an error for 5xx.
pub fn record_status(span: &Span, status: u16) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// Name the request span after its route (`GET users`), as the HTTP conventions do.
pub fn record_route(span: &Span, method: &Method, route: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("http.route", route);
    // The OTel span already exists (its children needed its id): rename it directly.
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
}

/// Reads trace headers for the W3C propagator.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes trace headers for the W3C propagator.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests;
