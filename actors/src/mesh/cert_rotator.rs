//! The `CertRotator` actor: renews the node's mesh certificate at 70% of its lifetime (with
//! jitter, Linkerd/Consul practice), retries with backoff when renewal fails, and keeps the
//! current certificate until it expires. The swap goes through [`SwappableCert`]: new
//! handshakes use the new certificate, open connections are untouched.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_config::compile::MeshSpec;
use meshgate_pki::{RenewalPolicy, RetryBackoff, renewal_at};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{MeshIdentity, obtain};

/// First retry after a failed renewal, doubling up to [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct CertRotator;

pub struct CertRotatorArgs {
    pub identity: Arc<MeshIdentity>,
    pub spec: Arc<MeshSpec>,
}

pub enum CertRotatorMsg {
    /// The renewal timer fired.
    Renew,
    /// Renew now (admin API, tests); replies with the outcome.
    RotateNow(RpcReplyPort<Result<(), String>>),
    /// A reload changed lifetime, renewal fraction or the CA source.
    UpdateSpec(Arc<MeshSpec>),
}

pub struct CertRotatorState {
    identity: Arc<MeshIdentity>,
    spec: Arc<MeshSpec>,
    timer:
        Option<ractor::concurrency::JoinHandle<Result<(), ractor::MessagingErr<CertRotatorMsg>>>>,
    backoff: RetryBackoff,
}

impl Actor for CertRotator {
    type Msg = CertRotatorMsg;
    type State = CertRotatorState;
    type Arguments = CertRotatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = CertRotatorState {
            identity: args.identity,
            spec: args.spec,
            timer: None,
            backoff: RetryBackoff::new(RETRY_BASE, RETRY_CAP),
        };
        state.schedule_renewal(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CertRotatorMsg::Renew => {
                let _ = state.renew(&myself).await;
            }
            CertRotatorMsg::RotateNow(reply) => {
                let outcome = state.renew(&myself).await;
                let _ = reply.send(outcome);
            }
            CertRotatorMsg::UpdateSpec(spec) => {
                state.spec = spec;
                state.schedule_renewal(&myself);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }
}

impl CertRotatorState {
    async fn renew(&mut self, myself: &ActorRef<CertRotatorMsg>) -> Result<(), String> {
        match obtain(&self.spec, Some(&self.identity.cert)).await {
            Ok((leaf, _bundle)) => {
                tracing::info!(
                    identity = %self.identity.spiffe_id,
                    not_after = %humantime::format_rfc3339_seconds(leaf.not_after()),
                    "mesh certificate renewed"
                );
                self.identity.renewed(leaf);
                self.backoff.reset();
                self.schedule_renewal(myself);
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                let delay = self.backoff.next_delay(&mut rand::rng());
                tracing::warn!(
                    identity = %self.identity.spiffe_id,
                    error = %message,
                    retry_in = ?delay,
                    seconds_to_expiry = self.identity.seconds_to_expiry(),
                    "mesh certificate renewal failed; keeping the current one"
                );
                self.identity.failed(message.clone());
                self.schedule(myself, delay);
                Err(message)
            }
        }
    }

    fn schedule_renewal(&mut self, myself: &ActorRef<CertRotatorMsg>) {
        let current = self.identity.cert.current();
        let policy = RenewalPolicy {
            fraction: self.spec.config.renew_fraction,
            ..RenewalPolicy::default()
        };
        let at = renewal_at(
            current.info().not_before,
            current.not_after(),
            &policy,
            &mut rand::rng(),
        );
        let delay = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.schedule(myself, delay);
    }

    fn schedule(&mut self, myself: &ActorRef<CertRotatorMsg>, delay: Duration) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        self.timer = Some(myself.send_after(delay, || CertRotatorMsg::Renew));
    }
}
