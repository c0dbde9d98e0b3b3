//! The `CertRotator` actor: renews the node's mesh certificate at 70% of its lifetime (with
//! jitter, Linkerd/Consul practice) counted from when it was issued, retries with backoff when
//! renewal fails, and keeps the current certificate until it expires. A renewal is never due
//! sooner than [`MIN_RENEWAL_DELAY`]; a certificate whose renewal point has already passed is
//! renewed after the floor, then with growing backoff, never in a loop. The swap goes through [`SwappableCert`]: new
//! handshakes use the new certificate, open connections are untouched. A source that answers
//! the current certificate again (Consul's agent, until its own renewal point) is asked again
//! later, without counting as a failure.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_backoff::{Backoff, Jitter};
use meshgate_config::compile::MeshSpec;
use meshgate_config::model::mesh::RENEWAL_JITTER;
use meshgate_pki::{CertifiedLeaf, RenewalPolicy, TrustBundle, issue_moment, renewal_at};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{MeshIdentity, obtain};
use crate::error::ControlError;

/// First retry after a failed renewal, doubling up to [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(60);
/// Up to a fifth of each retry delay is taken off at random, so that nodes whose renewals
/// failed together do not retry together.
const RETRY_JITTER: Jitter = Jitter::Share(0.2);
/// When the source answered the current certificate again, ask again after a tenth of the
/// time it has left, within these bounds. Consul's agent renews between 60% and 90% of the
/// lifetime (agent/leafcert), so the new one is picked up with most of the rest still left.
const UNCHANGED_RETRY_MIN: Duration = Duration::from_secs(1);
/// The shortest wait before a scheduled renewal. `validate` keeps configured schedules above
/// it; this guards against certificates the source makes shorter than configured.
pub const MIN_RENEWAL_DELAY: Duration = Duration::from_secs(5);
const UNCHANGED_RETRY_MAX: Duration = Duration::from_secs(300);

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
    RotateNow(RpcReplyPort<Result<(), ControlError>>),
    /// A reload changed lifetime, renewal fraction or the CA source.
    UpdateSpec(Arc<MeshSpec>),
}

pub struct CertRotatorState {
    identity: Arc<MeshIdentity>,
    spec: Arc<MeshSpec>,
    timer:
        Option<ractor::concurrency::JoinHandle<Result<(), ractor::MessagingErr<CertRotatorMsg>>>>,
    backoff: Backoff,
    /// Grows while renewals keep arriving with their renewal point already past.
    overdue: Backoff,
    /// The trust bundle the source last reported, when it differs from the one in use.
    reported_bundle: Option<TrustBundle>,
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
            backoff: Backoff::new(RETRY_BASE, RETRY_CAP).with_jitter(RETRY_JITTER),
            overdue: Backoff::new(MIN_RENEWAL_DELAY, RETRY_CAP).with_jitter(RETRY_JITTER),
            reported_bundle: None,
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
    async fn renew(&mut self, myself: &ActorRef<CertRotatorMsg>) -> Result<(), ControlError> {
        let obtained = obtain(&self.spec, Some(&self.identity.cert))
            .await
            .map_err(ControlError::from)
            .and_then(|(leaf, bundle)| self.check_identity(&leaf).map(|()| (leaf, bundle)));
        match obtained {
            Ok((leaf, bundle)) => {
                self.note_bundle(bundle);
                self.backoff.reset();
                if leaf.info().serial == self.identity.cert.current().info().serial {
                    self.identity.source_answered();
                    let delay = unchanged_retry(self.identity.not_after());
                    tracing::debug!(
                        identity = %self.identity.spiffe_id,
                        retry_in = ?delay,
                        "the certificate source answered the current certificate; asking again later"
                    );
                    self.schedule(myself, delay);
                    return Ok(());
                }
                tracing::info!(
                    identity = %self.identity.spiffe_id,
                    not_after = %humantime::format_rfc3339_seconds(leaf.not_after()),
                    "mesh certificate renewed"
                );
                self.identity.renewed(leaf);
                self.schedule_renewal(myself);
                Ok(())
            }
            Err(error) => {
                let delay = self.backoff.next_delay();
                tracing::warn!(
                    identity = %self.identity.spiffe_id,
                    %error,
                    retry_in = ?delay,
                    seconds_to_expiry = self.identity.seconds_to_expiry(),
                    "mesh certificate renewal failed; keeping the current one"
                );
                self.identity.failed(error.to_string());
                self.schedule(myself, delay);
                Err(error)
            }
        }
    }

    /// A renewal must not change who this node is (a source reconfigured under us would).
    fn check_identity(&self, leaf: &CertifiedLeaf) -> Result<(), ControlError> {
        if leaf.spiffe_id() == &self.identity.spiffe_id {
            Ok(())
        } else {
            Err(ControlError::IdentityChanged {
                issued: leaf.spiffe_id().to_string(),
                expected: self.identity.spiffe_id.to_string(),
            })
        }
    }

    /// The TLS configs are built once from the bundle; a changed bundle (a CA root rotation)
    /// is reported once. Leaves signed by a new root still verify under the old bundle while
    /// the CA sends the cross-signed intermediate (Consul does); the new bundle takes effect
    /// when the identity is next obtained (restart, or a reload that changes `mesh.identity`).
    fn note_bundle(&mut self, bundle: TrustBundle) {
        if bundle == self.identity.bundle || self.reported_bundle.as_ref() == Some(&bundle) {
            return;
        }
        tracing::warn!(
            identity = %self.identity.spiffe_id,
            roots = bundle.roots().len(),
            "the CA's trust bundle changed; it takes effect when the mesh identity is next obtained"
        );
        self.reported_bundle = Some(bundle);
    }

    fn schedule_renewal(&mut self, myself: &ActorRef<CertRotatorMsg>) {
        let current = self.identity.cert.current();
        let policy = RenewalPolicy {
            fraction: self.spec.config.renew_fraction,
            jitter: RENEWAL_JITTER,
        };
        let not_after = current.not_after();
        let issued = issue_moment(
            current.info().not_before,
            not_after,
            self.identity.received_at(),
        );
        let at = renewal_at(issued, not_after, &policy, &mut rand::rng());
        let due = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let delay = renewal_delay(due, &mut self.overdue);
        if delay != due {
            tracing::warn!(
                identity = %self.identity.spiffe_id,
                renew_in = ?delay,
                seconds_to_expiry = self.identity.seconds_to_expiry(),
                "the mesh certificate is already due for renewal; renewing after a pause"
            );
        }
        self.schedule(myself, delay);
    }

    fn schedule(&mut self, myself: &ActorRef<CertRotatorMsg>, delay: Duration) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        self.timer = Some(myself.send_after(delay, || CertRotatorMsg::Renew));
    }
}

/// The wait before the next renewal: `due`, unless the renewal point is (nearly) past — then
/// [`MIN_RENEWAL_DELAY`], growing with each renewal that comes back overdue again, so that a
/// source handing out too-short certificates is never asked in a loop.
fn renewal_delay(due: Duration, overdue: &mut Backoff) -> Duration {
    if due >= MIN_RENEWAL_DELAY {
        overdue.reset();
        due
    } else {
        overdue.next_delay().max(MIN_RENEWAL_DELAY)
    }
}

/// How long to wait before asking a source that answered the current certificate again.
fn unchanged_retry(not_after: SystemTime) -> Duration {
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    (left / 10).clamp(UNCHANGED_RETRY_MIN, UNCHANGED_RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overdue_renewal_waits_the_floor_then_backs_off_and_never_loops() {
        let mut overdue = Backoff::new(MIN_RENEWAL_DELAY, RETRY_CAP).with_jitter(Jitter::None);
        let delays: Vec<u64> = (0..7)
            .map(|_| renewal_delay(Duration::ZERO, &mut overdue).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60, 60]);
        // Due soon but not past: still the floor, never less.
        overdue.reset();
        assert_eq!(
            renewal_delay(Duration::from_millis(200), &mut overdue),
            MIN_RENEWAL_DELAY
        );
        // A normal schedule is kept as it is and starts the backoff over.
        let due = Duration::from_secs(37);
        assert_eq!(renewal_delay(due, &mut overdue), due);
        assert_eq!(
            renewal_delay(Duration::ZERO, &mut overdue),
            MIN_RENEWAL_DELAY
        );
    }

    #[test]
    fn an_unchanged_answer_is_asked_again_within_bounds() {
        let now = SystemTime::now();
        assert_eq!(
            unchanged_retry(now + Duration::from_secs(72 * 3600)),
            UNCHANGED_RETRY_MAX
        );
        let ten_minutes = unchanged_retry(now + Duration::from_secs(600));
        assert!(
            ten_minutes <= Duration::from_secs(60) && ten_minutes >= Duration::from_secs(59),
            "{ten_minutes:?}"
        );
        assert_eq!(
            unchanged_retry(now - Duration::from_secs(5)),
            UNCHANGED_RETRY_MIN
        );
    }
}
