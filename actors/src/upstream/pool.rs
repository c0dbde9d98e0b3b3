//! The `UpstreamPool` actor: owns one upstream's endpoint set and its health view. It resolves
//! static targets or takes the endpoint sets its `DiscoveryWatcher` sends (keeping the last
//! known ones, marked stale, while discovery fails), takes verdicts from the `HealthChecker`
//! (probes) and from the data plane (an endpoint that crossed the outlier threshold), ejects
//! and re-admits endpoints, and publishes a fresh [`UpstreamState`] whenever the set, the
//! rotation or the settings change.

mod discovered;
mod rotation;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_config::{TargetSpec, UpstreamSpec};
use meshgate_discovery::EndpointSet;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{Balancer, Endpoint, Trip, UpstreamHandle, UpstreamState};
use crate::clock;
use crate::error::ControlError;
use rotation::rotation;

/// How long one DNS lookup of a target may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often hostname targets are resolved again (Envoy's strict DNS refreshes every 5 s;
/// dynamic DNS with record TTLs is the discovery layer's job).
const RERESOLVE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct UpstreamPool;

pub struct UpstreamPoolArgs {
    pub handle: Arc<UpstreamHandle>,
    pub spec: Arc<UpstreamSpec>,
}

#[derive(Debug)]
pub enum UpstreamPoolMsg {
    /// The upstream's config changed in a reload.
    UpdateSpec(Arc<UpstreamSpec>),
    /// Resolve hostname targets again.
    Resolve,
    /// The health checker's verdict on an endpoint changed.
    ProbeVerdict { address: SocketAddr, healthy: bool },
    /// The data plane saw `consecutive_failures` failures in a row on this endpoint.
    Eject(SocketAddr),
    /// An ejection's time is up (`stamp` tells it from a later ejection of the same endpoint).
    Uneject { address: SocketAddr, stamp: u64 },
    /// The circuit breaker opened (for the log; the state itself lives in atomics).
    BreakerOpened(Trip),
    /// The discovery watcher of `epoch` reports the complete current set (possibly empty:
    /// the service has no instance).
    Discovered { epoch: u64, set: EndpointSet },
    /// The discovery watcher of `epoch` cannot reach its backend: keep the endpoints, mark
    /// them stale.
    DiscoveryStale { epoch: u64, reason: String },
}

/// Why the endpoints may be out of date, and since when.
#[derive(Debug, Clone)]
struct Staleness {
    since: SystemTime,
    reason: Arc<str>,
}

/// Stale reason while a new discovery source has not answered yet.
const AWAITING_NEW_SOURCE: &str = "waiting for the first answer of the new discovery source";

pub struct UpstreamPoolState {
    handle: Arc<UpstreamHandle>,
    spec: Arc<UpstreamSpec>,
    version: u64,
    /// Last successful resolution per target `host:port` (kept when a later lookup fails).
    resolved: HashMap<String, Vec<SocketAddr>>,
    unresolved: Vec<String>,
    reresolve: Option<ractor::concurrency::JoinHandle<()>>,
    /// The last complete set from discovery, before the subset filter (`None` until the
    /// watcher's first answer, and for static upstreams).
    discovered: Option<EndpointSet>,
    /// Set while discovery fails; the endpoints are the last known ones.
    stale: Option<Staleness>,
}

impl Actor for UpstreamPool {
    type Msg = UpstreamPoolMsg;
    type State = UpstreamPoolState;
    type Arguments = UpstreamPoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let current = args.handle.load();
        // A restarted pool keeps what its predecessor published: the supervisor restarts the
        // discovery watcher with it, whose first answer is the full current set.
        let stale = current
            .stale_since
            .zip(current.stale_reason.clone())
            .map(|(since, reason)| Staleness { since, reason });
        let mut state = UpstreamPoolState {
            version: current.version,
            handle: args.handle.clone(),
            spec: args.spec,
            resolved: HashMap::new(),
            unresolved: Vec::new(),
            reresolve: None,
            discovered: None,
            stale,
        };
        drop(current);
        state.refresh().await;
        state.schedule_reresolve(&myself);
        // A restarted pool takes over the ejections its predecessor started.
        state.resume_ejections(&myself);
        args.handle.attach_pool(Some(myself));
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            UpstreamPoolMsg::UpdateSpec(spec) => {
                if spec.discovery != state.spec.discovery {
                    state.source_changed(spec.discovery.is_some());
                }
                state.spec = spec;
                state.forget_disabled_verdicts();
                state.refresh().await;
                state.schedule_reresolve(&myself);
            }
            UpstreamPoolMsg::Resolve => state.refresh().await,
            UpstreamPoolMsg::ProbeVerdict { address, healthy } => {
                state.probe_verdict(address, healthy);
            }
            UpstreamPoolMsg::Eject(address) => state.eject(&myself, address),
            UpstreamPoolMsg::Uneject { address, stamp } => state.uneject(address, stamp),
            UpstreamPoolMsg::BreakerOpened(trip) => {
                tracing::warn!(upstream = %state.spec.name, ?trip, "circuit breaker opened: requests fail fast");
            }
            UpstreamPoolMsg::Discovered { epoch, set } if state.accepts(epoch) => {
                state.discovered(set);
            }
            UpstreamPoolMsg::DiscoveryStale { epoch, reason } if state.accepts(epoch) => {
                state.discovery_failed(reason);
            }
            // A replaced watcher's late words.
            UpstreamPoolMsg::Discovered { .. } | UpstreamPoolMsg::DiscoveryStale { .. } => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.handle.attach_pool(None);
        if let Some(task) = state.reresolve.take() {
            task.abort();
        }
        Ok(())
    }
}

impl UpstreamPoolState {
    fn schedule_reresolve(&mut self, myself: &ActorRef<UpstreamPoolMsg>) {
        if let Some(task) = self.reresolve.take() {
            task.abort();
        }
        let has_names = self
            .spec
            .targets
            .iter()
            .any(|t| t.host.parse::<IpAddr>().is_err());
        if has_names {
            self.reresolve =
                Some(myself.send_interval(RERESOLVE_INTERVAL, || UpstreamPoolMsg::Resolve));
        }
    }

    fn endpoint(&self, address: SocketAddr) -> Option<Arc<Endpoint>> {
        self.handle
            .load()
            .endpoints
            .iter()
            .find(|e| e.address == address)
            .cloned()
    }

    fn probe_verdict(&mut self, address: SocketAddr, healthy: bool) {
        let Some(endpoint) = self.endpoint(address) else {
            return;
        };
        if endpoint.health.probe_healthy() == healthy {
            return;
        }
        endpoint.health.set_probe_healthy(healthy);
        if healthy {
            tracing::info!(upstream = %self.spec.name, %address, "endpoint passed its health checks; back in rotation");
        } else {
            tracing::warn!(upstream = %self.spec.name, %address, "endpoint failed its health checks; out of rotation");
        }
        self.republish();
    }

    /// Eject an endpoint that failed `consecutive_failures` times in a row, unless that
    /// would eject more than `max_ejection_percent` of the endpoints (one always may go) or
    /// leave no endpoint available.
    fn eject(&mut self, myself: &ActorRef<UpstreamPoolMsg>, address: SocketAddr) {
        let Some(outlier) = self.spec.resilience.outlier.clone() else {
            return;
        };
        let state = self.handle.load_full();
        let Some(endpoint) = state.endpoints.iter().find(|e| e.address == address) else {
            return;
        };
        if endpoint.health.is_ejected() {
            return;
        }
        let ejected = state
            .endpoints
            .iter()
            .filter(|e| e.health.is_ejected())
            .count();
        if ejected >= outlier.max_ejected(state.endpoints.len()) {
            tracing::info!(upstream = %self.spec.name, %address, ejected, "not ejecting: max_ejection_percent reached");
            endpoint.health.reset_failures();
            return;
        }
        // Never the last available endpoint: Envoy would route to it anyway (panic mode at
        // 0 % healthy); here a wholly failing upstream is the circuit breaker's job, which
        // probes for recovery instead of going dark for a fixed time.
        let others_available = state
            .endpoints
            .iter()
            .any(|e| e.address != address && e.health.is_available());
        if !others_available {
            tracing::info!(upstream = %self.spec.name, %address, "not ejecting the last available endpoint");
            endpoint.health.reset_failures();
            return;
        }
        let now = clock::nanos();
        let times = endpoint
            .health
            .next_ejection_multiplier(now, outlier.interval);
        let lasts = outlier.ejection_time(times);
        let stamp = endpoint
            .health
            .eject(now.saturating_add(lasts.as_nanos() as u64), lasts);
        tracing::warn!(upstream = %self.spec.name, %address, ejection = times, duration = ?lasts, "endpoint ejected after consecutive failures");
        myself.send_after(lasts, move || UpstreamPoolMsg::Uneject { address, stamp });
        self.republish();
    }

    fn uneject(&mut self, address: SocketAddr, stamp: u64) {
        let Some(endpoint) = self.endpoint(address) else {
            return;
        };
        if endpoint.health.uneject(stamp, clock::nanos()) {
            tracing::info!(upstream = %self.spec.name, %address, "ejection over; endpoint back in rotation");
            self.republish();
        }
    }

    /// Re-arm the timers of ejections that outlived a previous pool actor.
    fn resume_ejections(&self, myself: &ActorRef<UpstreamPoolMsg>) {
        let now = clock::nanos();
        for endpoint in &self.handle.load().endpoints {
            if let Some((until, _)) = endpoint.health.ejection() {
                let address = endpoint.address;
                let wait = Duration::from_nanos(until.saturating_sub(now));
                myself.send_after(wait, move || UpstreamPoolMsg::Uneject {
                    address,
                    stamp: until,
                });
            }
        }
    }

    /// A reload that turned probes or outlier detection off also drops their verdicts.
    fn forget_disabled_verdicts(&self) {
        let now = clock::nanos();
        for endpoint in &self.handle.load().endpoints {
            if self.spec.resilience.health_check.is_none() {
                endpoint.health.set_probe_healthy(true);
            }
            if self.spec.resilience.outlier.is_none()
                && let Some((stamp, _)) = endpoint.health.ejection()
            {
                endpoint.health.uneject(stamp, now);
            }
        }
    }

    /// Whether an event of the discovery watcher of `epoch` is to be applied.
    fn accepts(&self, epoch: u64) -> bool {
        self.spec.discovery.is_some() && epoch == self.handle.discovery_epoch()
    }

    /// The endpoints' source changed in a reload. To discovery: keep serving the current
    /// endpoints, marked stale, until the new source answers. To static targets: forget
    /// discovery.
    fn source_changed(&mut self, discovered: bool) {
        self.discovered = None;
        self.stale = discovered.then(|| Staleness {
            since: SystemTime::now(),
            reason: AWAITING_NEW_SOURCE.into(),
        });
    }

    /// A complete, fresh set from discovery: it replaces the endpoints and clears "stale".
    fn discovered(&mut self, set: EndpointSet) {
        if let Some(stale) = self.stale.take() {
            let stale_for = stale.since.elapsed().unwrap_or_default();
            tracing::info!(upstream = %self.spec.name, ?stale_for, "discovery answers again; endpoints are fresh");
        }
        if set.is_empty() {
            tracing::warn!(upstream = %self.spec.name, "discovery reports no instance: the upstream has no endpoint");
        }
        self.discovered = Some(set);
        self.publish_discovered();
    }

    /// Discovery failed: keep the last known endpoints, mark them stale (the watcher retries
    /// with backoff).
    fn discovery_failed(&mut self, reason: String) {
        match &mut self.stale {
            Some(stale) if *stale.reason == *reason => return,
            Some(stale) => stale.reason = reason.into(),
            None => {
                tracing::warn!(upstream = %self.spec.name, %reason, "discovery failed; keeping the last known endpoints, marked stale");
                self.stale = Some(Staleness {
                    since: SystemTime::now(),
                    reason: reason.into(),
                });
            }
        }
        self.republish();
    }

    /// Publish the endpoints of the last discovered set (the current ones until there is one).
    fn publish_discovered(&mut self) {
        self.unresolved.clear();
        let previous = self.handle.load_full();
        let endpoints = match &self.discovered {
            Some(set) => discovered::endpoints(set, self.spec.subset.as_ref(), &previous.endpoints),
            None => previous.endpoints.clone(),
        };
        let (joined, left) = discovered::changes(&previous.endpoints, &endpoints);
        if joined + left > 0 {
            tracing::info!(upstream = %self.spec.name, joined, left, endpoints = endpoints.len(), "discovered endpoints changed");
        }
        self.publish(endpoints);
    }

    /// Resolve every target (or take the discovered set) and publish the resulting endpoints.
    async fn refresh(&mut self) {
        if self.spec.discovery.is_some() {
            self.publish_discovered();
            return;
        }
        let mut unresolved = Vec::new();
        for target in &self.spec.targets {
            match resolve(target).await {
                Ok(addrs) => {
                    self.resolved.insert(target_key(target), addrs);
                }
                Err(error) => {
                    tracing::warn!(upstream = %self.spec.name, %error, "target did not resolve; keeping its last known addresses");
                    unresolved.push(target.host.clone());
                }
            }
        }
        self.unresolved = unresolved;
        let previous = self.handle.load();
        let old: HashMap<SocketAddr, &Arc<Endpoint>> =
            previous.endpoints.iter().map(|e| (e.address, e)).collect();
        let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
        for target in &self.spec.targets {
            let host = target_key(target);
            for addr in self.resolved.get(&host).into_iter().flatten() {
                if endpoints.iter().any(|e| e.address == *addr) {
                    continue;
                }
                let endpoint = match old.get(addr) {
                    Some(e) if e.weight() == target.weight.max(1) && e.host_header == host => {
                        (*e).clone()
                    }
                    _ => Arc::new(Endpoint::new(*addr, target.weight, &host)),
                };
                endpoints.push(endpoint);
            }
        }
        drop(previous);
        self.publish(endpoints);
    }

    /// Publish the same endpoints again (their health changed).
    fn republish(&mut self) {
        let endpoints = self.handle.load().endpoints.clone();
        self.publish(endpoints);
    }

    fn publish(&mut self, endpoints: Vec<Arc<Endpoint>>) {
        let rotation = rotation(
            &endpoints,
            self.spec.resilience.panic_threshold,
            self.spec.local_zone.as_deref(),
        );
        if rotation.panic {
            tracing::warn!(upstream = %self.spec.name, available = endpoints.iter().filter(|e| e.health.is_available()).count(), total = endpoints.len(), "panic mode: too few endpoints available, balancing over all of them");
        }
        let previous = self.handle.load();
        if self.spec.local_zone.is_some() && previous.zone_local != rotation.zone_local {
            if rotation.zone_local {
                tracing::info!(upstream = %self.spec.name, "endpoints of the local zone available again: preferring them");
            } else {
                tracing::warn!(upstream = %self.spec.name, "no endpoint of the local zone available: using all zones");
            }
        }
        drop(previous);
        self.version += 1;
        self.handle.publish(UpstreamState {
            balancer: Balancer::build(&self.spec.load_balancing, &rotation.endpoints),
            spec: self.spec.clone(),
            endpoints,
            rotation: rotation.endpoints,
            panic: rotation.panic,
            version: self.version,
            unresolved: self.unresolved.clone(),
            stale: self.stale.is_some(),
            stale_since: self.stale.as_ref().map(|s| s.since),
            stale_reason: self.stale.as_ref().map(|s| s.reason.clone()),
            zone_local: rotation.zone_local,
        });
    }
}

fn target_key(target: &TargetSpec) -> String {
    format!("{}:{}", target.host, target.port)
}

async fn resolve(target: &TargetSpec) -> Result<Vec<SocketAddr>, ControlError> {
    let unresolved = |reason: String| ControlError::Resolve {
        host: target.host.clone(),
        reason,
    };
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                Err(unresolved("no addresses".into()))
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(e)) => Err(unresolved(e.to_string())),
        Err(_) => Err(unresolved(format!(
            "lookup took longer than {RESOLVE_TIMEOUT:?}"
        ))),
    }
}
