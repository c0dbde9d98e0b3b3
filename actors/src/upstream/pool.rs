//! The `UpstreamPool` actor: owns one upstream's endpoint set, resolves its targets, and
//! publishes a fresh [`UpstreamState`] whenever the set or the settings change.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meshgate_config::{TargetSpec, UpstreamSpec};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{Balancer, Endpoint, UpstreamHandle, UpstreamState};

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
}

pub struct UpstreamPoolState {
    handle: Arc<UpstreamHandle>,
    spec: Arc<UpstreamSpec>,
    version: u64,
    /// Last successful resolution per target `host:port` (kept when a later lookup fails).
    resolved: HashMap<String, Vec<SocketAddr>>,
    reresolve: Option<ractor::concurrency::JoinHandle<()>>,
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
        let mut state = UpstreamPoolState {
            version: current.version,
            handle: args.handle.clone(),
            spec: args.spec,
            resolved: HashMap::new(),
            reresolve: None,
        };
        drop(current);
        state.refresh().await;
        state.schedule_reresolve(&myself);
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
                state.spec = spec;
                state.refresh().await;
                state.schedule_reresolve(&myself);
            }
            UpstreamPoolMsg::Resolve => state.refresh().await,
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
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

    /// Resolve every target and publish the resulting endpoint set.
    async fn refresh(&mut self) {
        let mut unresolved = Vec::new();
        for target in &self.spec.targets {
            match resolve(target).await {
                Ok(addrs) => {
                    self.resolved.insert(target_key(target), addrs);
                }
                Err(reason) => {
                    tracing::warn!(upstream = %self.spec.name, target = %target.host, %reason, "target did not resolve; keeping its last known addresses");
                    unresolved.push(target.host.clone());
                }
            }
        }
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
                    Some(e) if e.weight == target.weight.max(1) && e.host_header == host => {
                        (*e).clone()
                    }
                    _ => Arc::new(Endpoint::new(*addr, target.weight, &host)),
                };
                endpoints.push(endpoint);
            }
        }
        drop(previous);
        self.version += 1;
        self.handle.publish(UpstreamState {
            balancer: Balancer::build(&self.spec.load_balancing, &endpoints),
            spec: self.spec.clone(),
            endpoints,
            version: self.version,
            unresolved,
        });
    }
}

fn target_key(target: &TargetSpec) -> String {
    format!("{}:{}", target.host, target.port)
}

async fn resolve(target: &TargetSpec) -> Result<Vec<SocketAddr>, String> {
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
                Err("no addresses".to_string())
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("lookup took longer than {RESOLVE_TIMEOUT:?}")),
    }
}
