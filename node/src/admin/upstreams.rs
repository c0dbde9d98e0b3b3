//! `GET /upstreams` and `GET /upstreams/{name}/health`: every upstream's endpoints with their
//! health (probe verdict, ejection, consecutive failures), its circuit breaker and its
//! concurrency counters. Read-only: published snapshots and atomics, never an actor call.

use std::time::Duration;

use meshgate_actors::Snapshot;
use meshgate_actors::clock;
use meshgate_actors::upstream::{Endpoint, LimitKind, UpstreamHandle, UpstreamState};
use serde_json::{Value, json};

/// Every upstream of the serving config.
pub fn all(snapshot: &Snapshot) -> Value {
    let upstreams: Vec<Value> = snapshot.upstreams.iter().map(|h| upstream(h)).collect();
    json!({ "upstreams": upstreams })
}

/// One upstream by name.
pub fn one(snapshot: &Snapshot, name: &str) -> Option<Value> {
    snapshot
        .upstreams
        .iter()
        .find(|h| &*h.name == name)
        .map(|h| upstream(h))
}

fn upstream(handle: &UpstreamHandle) -> Value {
    let state = handle.load();
    let resilience = &state.spec.resilience;
    let breaker = &handle.breaker;
    let limits = &handle.limits;
    let breaker_json = match &resilience.breaker {
        Some(spec) => {
            let (failed, total) = breaker.window_counts(spec);
            json!({
                "enabled": true,
                "state": breaker.state().as_str(),
                "consecutive_failures": breaker.consecutive_failures(),
                "window": { "failed": failed, "total": total },
                "open_remaining_ms": breaker.open_remaining(spec).map(millis),
                "trips": breaker.trips(),
                "rejected": breaker.rejected(),
            })
        }
        None => json!({ "enabled": false }),
    };
    let l = &resilience.limits;
    let endpoints: Vec<Value> = state
        .endpoints
        .iter()
        .map(|e| endpoint(e, &state))
        .collect();
    json!({
        "name": &*handle.name,
        "version": state.version,
        "endpoints_in_rotation": state.rotation.len(),
        "panic": state.panic,
        "health_check": resilience.health_check.is_some(),
        "outlier_detection": resilience.outlier.is_some(),
        "circuit_breaker": breaker_json,
        "limits": {
            "requests": limits.current(LimitKind::Request),
            "max_requests": l.max_requests,
            "connections": limits.current(LimitKind::Connection),
            "max_connections": l.max_connections,
            "pending": limits.current(LimitKind::Pending),
            "max_pending_requests": l.max_pending_requests,
            "retries": limits.current(LimitKind::Retry),
            "overflows": limits.overflows(),
            "retries_started": limits.retries_started(),
            "retries_denied": limits.retries_denied(),
        },
        "endpoints": endpoints,
        "unresolved": state.unresolved,
    })
}

fn endpoint(e: &Endpoint, state: &UpstreamState) -> Value {
    let health = &e.health;
    let ejection = health.ejection().map(|(until, lasts)| {
        let remaining = Duration::from_nanos(until.saturating_sub(clock::nanos()));
        json!({ "remaining_ms": millis(remaining), "duration_ms": millis(lasts) })
    });
    json!({
        "address": e.address.to_string(),
        "weight": e.weight,
        "in_rotation": state.in_rotation(e),
        "healthy": health.probe_healthy(),
        "ejected": ejection,
        "ejections": health.ejections(),
        "total_ejections": health.total_ejections(),
        "consecutive_failures": health.consecutive_failures(),
        "in_flight": e.stats.in_flight(),
        "requests": e.stats.requests(),
    })
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}
