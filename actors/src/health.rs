//! The `HealthChecker` actor (one per upstream with `health_check`): probes every endpoint on
//! a jittered schedule, keeps each endpoint's streak of passed and failed probes, and tells the
//! `UpstreamPool` when a streak crosses its threshold. Probes run in a task, so the actor stays
//! responsive to config changes; it never touches the data plane.

pub mod probe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use meshgate_config::resilience::HealthCheckSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::Rng;
use tokio::task::JoinSet;

use crate::upstream::{UpstreamHandle, UpstreamPoolMsg};

#[derive(Default)]
pub struct HealthChecker;

pub struct HealthCheckerArgs {
    pub handle: Arc<UpstreamHandle>,
    pub spec: HealthCheckSpec,
}

#[derive(Debug)]
pub enum HealthCheckerMsg {
    /// Start a probe round.
    Probe,
    /// A round finished: `(endpoint, passed)` for each endpoint probed.
    Results {
        round: u64,
        results: Vec<(SocketAddr, bool)>,
    },
    /// The check's settings changed in a reload.
    UpdateSpec(HealthCheckSpec),
}

pub struct HealthCheckerState {
    handle: Arc<UpstreamHandle>,
    spec: HealthCheckSpec,
    streaks: HashMap<SocketAddr, Streak>,
    /// Results of older rounds (before a settings change) are ignored.
    round: u64,
    probing: Option<tokio::task::AbortHandle>,
    next: Option<tokio::task::AbortHandle>,
}

/// Consecutive outcomes of one endpoint's probes and the verdict they add up to.
#[derive(Debug, Clone, Copy)]
struct Streak {
    healthy: bool,
    passed: u32,
    failed: u32,
}

impl Streak {
    fn record(&mut self, passed: bool, spec: &HealthCheckSpec) {
        if passed {
            self.passed = self.passed.saturating_add(1);
            self.failed = 0;
            if !self.healthy && self.passed >= spec.healthy_threshold {
                self.healthy = true;
            }
        } else {
            self.failed = self.failed.saturating_add(1);
            self.passed = 0;
            if self.healthy && self.failed >= spec.unhealthy_threshold {
                self.healthy = false;
            }
        }
    }
}

impl Actor for HealthChecker {
    type Msg = HealthCheckerMsg;
    type State = HealthCheckerState;
    type Arguments = HealthCheckerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = HealthCheckerState {
            handle: args.handle,
            spec: args.spec,
            streaks: HashMap::new(),
            round: 0,
            probing: None,
            next: None,
        };
        // The first round starts within the jitter, so nodes started together spread out.
        let first = jitter(&state.spec);
        state.schedule(&myself, first);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HealthCheckerMsg::Probe => state.start_round(&myself),
            HealthCheckerMsg::Results { round, results } if round == state.round => {
                state.probing = None;
                state.judge(results);
                let wait = state.spec.interval + jitter(&state.spec);
                state.schedule(&myself, wait);
            }
            HealthCheckerMsg::Results { .. } => {}
            HealthCheckerMsg::UpdateSpec(spec) => {
                if spec != state.spec {
                    state.spec = spec;
                    state.stop_round();
                    state.schedule(&myself, Duration::ZERO);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_round();
        if let Some(next) = state.next.take() {
            next.abort();
        }
        Ok(())
    }
}

impl HealthCheckerState {
    fn schedule(&mut self, myself: &ActorRef<HealthCheckerMsg>, after: Duration) {
        if let Some(next) = self.next.take() {
            next.abort();
        }
        self.next = Some(
            myself
                .send_after(after, || HealthCheckerMsg::Probe)
                .abort_handle(),
        );
    }

    fn stop_round(&mut self) {
        self.round += 1;
        if let Some(task) = self.probing.take() {
            task.abort();
        }
    }

    /// Probe every endpoint at once in a task that reports back with `Results`.
    fn start_round(&mut self, myself: &ActorRef<HealthCheckerMsg>) {
        self.stop_round();
        let targets: Vec<(SocketAddr, HeaderValue)> = self
            .handle
            .load()
            .endpoints
            .iter()
            .map(|e| (e.address, e.host_header.clone()))
            .collect();
        let spec = self.spec.clone();
        let round = self.round;
        let upstream = self.handle.name.clone();
        let myself = myself.clone();
        let task = tokio::spawn(async move {
            let mut probes = JoinSet::new();
            for (address, host) in targets {
                let spec = spec.clone();
                let upstream = upstream.clone();
                probes.spawn(async move {
                    let outcome = probe::probe(address, &host, &spec).await;
                    if let Err(reason) = &outcome {
                        tracing::debug!(%upstream, %address, %reason, "health probe failed");
                    }
                    (address, outcome.is_ok())
                });
            }
            let mut results = Vec::new();
            while let Some(done) = probes.join_next().await {
                if let Ok(result) = done {
                    results.push(result);
                }
            }
            let _ = myself.cast(HealthCheckerMsg::Results { round, results });
        });
        self.probing = Some(task.abort_handle());
    }

    /// Update the streaks and report every endpoint whose verdict differs from what the pool
    /// applied (so a verdict lost while the pool restarted is sent again next round).
    fn judge(&mut self, results: Vec<(SocketAddr, bool)>) {
        let current = self.handle.load_full();
        self.streaks
            .retain(|address, _| results.iter().any(|(a, _)| a == address));
        for (address, passed) in results {
            let Some(endpoint) = current.endpoints.iter().find(|e| e.address == address) else {
                continue;
            };
            let streak = self.streaks.entry(address).or_insert(Streak {
                healthy: endpoint.health.probe_healthy(),
                passed: 0,
                failed: 0,
            });
            streak.record(passed, &self.spec);
            if streak.healthy != endpoint.health.probe_healthy() {
                self.handle.report(UpstreamPoolMsg::ProbeVerdict {
                    address,
                    healthy: streak.healthy,
                });
            }
        }
    }
}

/// A random extra wait of up to `jitter_percent` of the interval.
fn jitter(spec: &HealthCheckSpec) -> Duration {
    let max = spec.interval.as_nanos() as u64 * u64::from(spec.jitter_percent) / 100;
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_config::resilience::HealthProbe;

    fn spec() -> HealthCheckSpec {
        HealthCheckSpec {
            probe: HealthProbe::Tcp,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            jitter_percent: 10,
        }
    }

    #[test]
    fn streaks_cross_thresholds_in_both_directions() {
        let s = spec();
        let mut streak = Streak {
            healthy: true,
            passed: 0,
            failed: 0,
        };
        for passed in [false, false, true, false, false] {
            streak.record(passed, &s);
            assert!(streak.healthy, "a pass in between resets the failures");
        }
        streak.record(false, &s);
        assert!(!streak.healthy);
        streak.record(true, &s);
        assert!(!streak.healthy);
        streak.record(true, &s);
        assert!(streak.healthy);
    }

    #[test]
    fn jitter_stays_within_its_share_of_the_interval() {
        let s = spec();
        for _ in 0..1000 {
            assert!(jitter(&s) <= Duration::from_secs(1));
        }
        let none = HealthCheckSpec {
            jitter_percent: 0,
            ..spec()
        };
        assert_eq!(jitter(&none), Duration::ZERO);
    }
}
