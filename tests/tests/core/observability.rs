//! Observability end to end (issue 8): Prometheus metrics moving with traffic and checked by
//! promtool, the alert rules and the dashboard, JSON access logs (redaction, SIGUSR1 reopen),
//! usage analytics, latency headers and OTLP traces across two nodes.

mod access_log;
mod analytics;
mod deploy;
mod metrics;
mod tracing;
mod wired;
