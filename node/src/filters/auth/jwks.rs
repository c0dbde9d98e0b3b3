//! A JSON Web Key Set kept fresh in the background: one task per distinct JWKS spec fetches on
//! a schedule and publishes each new key set through an `ArcSwap`, so verifying a token only
//! reads a pointer. A token whose `kid` is unknown may ask for one early refetch, at most once
//! per `min_refetch_interval` across all requests (random kids cannot make us hammer the IdP);
//! only the requests carrying an unknown kid wait for it, never the others. The last good key
//! set stays in use while the IdP fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use meshgate_actors::SupervisedTask;
use meshgate_config::auth::JwksSpec;
use meshgate_config::auth::keys::{VerificationKey, parse_jwks};
use tokio::sync::{Notify, watch};

use super::idp::{IdpTransport, fetch};

#[cfg(test)]
mod tests;

/// A key set larger than this is refused.
const MAX_JWKS_BYTES: usize = 512 * 1024;
/// After a failed fetch, try again this soon (or at the refresh interval, if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The keys of one JWKS as last fetched.
#[derive(Debug, Default)]
pub struct KeySet {
    /// Increases whenever the set changes; cached verifications remember it.
    pub generation: u64,
    /// False until the first fetch succeeded.
    pub loaded: bool,
    pub keys: Vec<Arc<VerificationKey>>,
    by_kid: HashMap<String, Vec<usize>>,
    body: Bytes,
}

impl KeySet {
    fn new(generation: u64, keys: Vec<VerificationKey>, body: Bytes) -> Self {
        let keys: Vec<Arc<VerificationKey>> = keys.into_iter().map(Arc::new).collect();
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.clone()).or_default().push(i);
            }
        }
        Self {
            generation,
            loaded: true,
            keys,
            by_kid,
            body,
        }
    }

    /// Keys published under `kid`.
    pub fn by_kid<'a>(&'a self, kid: &str) -> impl Iterator<Item = &'a Arc<VerificationKey>> {
        self.by_kid
            .get(kid)
            .into_iter()
            .flatten()
            .filter_map(|i| self.keys.get(*i))
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }
}

struct Shared {
    spec: JwksSpec,
    keys: ArcSwap<KeySet>,
    wake: Notify,
    /// Completed fetch attempts (successful or not).
    attempts: watch::Sender<u64>,
    /// Clock nanoseconds of the last refetch a request triggered (0: never).
    last_triggered: AtomicU64,
    triggered_pending: AtomicBool,
    fetches: AtomicU64,
}

/// One JWKS URL with its background fetcher; dropping it stops the fetcher.
pub struct JwksSource {
    shared: Arc<Shared>,
    /// The refresh loop, restarted with backoff if it panics; held so that dropping the
    /// source (with its generation) stops it.
    _refresh: SupervisedTask,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.shared.spec.url)
            .finish_non_exhaustive()
    }
}

impl JwksSource {
    /// Start fetching `spec.url` now and then every `refresh_interval`.
    pub fn start(spec: JwksSpec, transport: Arc<dyn IdpTransport>) -> Self {
        let shared = Arc::new(Shared {
            spec,
            keys: ArcSwap::from_pointee(KeySet::default()),
            wake: Notify::new(),
            attempts: watch::Sender::new(0),
            last_triggered: AtomicU64::new(0),
            triggered_pending: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
        });
        let refreshed = shared.clone();
        let refresh = SupervisedTask::spawn("jwks refresh", move || {
            Some(refresh_loop(refreshed.clone(), transport.clone()))
        });
        Self {
            shared,
            _refresh: refresh,
        }
    }

    pub fn spec(&self) -> &JwksSpec {
        &self.shared.spec
    }

    /// The current key set (may be empty before the first fetch).
    pub fn current(&self) -> Arc<KeySet> {
        self.shared.keys.load_full()
    }

    /// Fetches started so far (scheduled and triggered).
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// The key set once the first fetch finished (bounded by the fetch timeout).
    pub async fn loaded(&self) -> Arc<KeySet> {
        let current = self.current();
        if current.loaded {
            return current;
        }
        let mut attempts = self.shared.attempts.subscribe();
        let _ = tokio::time::timeout(self.wait_limit(), attempts.wait_for(|n| *n > 0)).await;
        self.current()
    }

    /// `kid` is not in the current set: refetch now unless one was triggered within
    /// `min_refetch_interval` (then answer from what we have), and wait for that fetch.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> Arc<KeySet> {
        let shared = &self.shared;
        let mut attempts = shared.attempts.subscribe();
        let seen = *attempts.borrow_and_update();
        if !shared.triggered_pending.load(Ordering::Acquire) && !self.claim_refetch() {
            tracing::debug!(url = %shared.spec.url, kid = %kid, "unknown kid; JWKS refetch rate-limited");
            return self.current();
        }
        let _ = tokio::time::timeout(self.wait_limit(), attempts.wait_for(|n| *n > seen)).await;
        self.current()
    }

    /// Take the one refetch allowed per `min_refetch_interval`.
    fn claim_refetch(&self) -> bool {
        let shared = &self.shared;
        let now = meshgate_actors::clock::nanos().max(1);
        let min = u64::try_from(shared.spec.min_refetch_interval.as_nanos()).unwrap_or(u64::MAX);
        let last = shared.last_triggered.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < min {
            return false;
        }
        if shared
            .last_triggered
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another request claimed it a moment ago: wait for that fetch instead.
            return shared.triggered_pending.load(Ordering::Acquire);
        }
        shared.triggered_pending.store(true, Ordering::Release);
        shared.wake.notify_one();
        true
    }

    fn wait_limit(&self) -> Duration {
        self.shared.spec.timeout + Duration::from_millis(100)
    }
}

async fn refresh_loop(shared: Arc<Shared>, transport: Arc<dyn IdpTransport>) {
    loop {
        shared.triggered_pending.store(false, Ordering::Release);
        let ok = refresh_once(&shared, transport.as_ref()).await;
        shared.attempts.send_modify(|n| *n += 1);
        let wait = if ok {
            shared.spec.refresh_interval
        } else {
            shared.spec.refresh_interval.min(RETRY_AFTER_FAILURE)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

async fn refresh_once(shared: &Shared, transport: &dyn IdpTransport) -> bool {
    let spec = &shared.spec;
    shared.fetches.fetch_add(1, Ordering::Relaxed);
    let req = Request::builder()
        .method(Method::GET)
        .uri(spec.url.clone())
        .header(header::ACCEPT, "application/jwk-set+json, application/json")
        .header(header::USER_AGENT, "meshgate")
        .body(Full::new(Bytes::new()));
    let Ok(req) = req else { return false };
    let body = match fetch(transport, req, spec.timeout, MAX_JWKS_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(url = %spec.url, error = %e, "JWKS fetch failed; keeping the last good key set");
            return false;
        }
    };
    let current = shared.keys.load();
    if current.loaded && current.body == body {
        return true;
    }
    match parse_jwks(&body, &spec.algorithms) {
        Ok(parsed) => {
            for reason in &parsed.skipped {
                tracing::info!(url = %spec.url, reason = %reason, "JWKS key skipped");
            }
            let generation = current.generation + 1;
            tracing::info!(url = %spec.url, keys = parsed.keys.len(), generation, "JWKS loaded");
            shared
                .keys
                .store(Arc::new(KeySet::new(generation, parsed.keys, body)));
            true
        }
        Err(e) => {
            tracing::warn!(url = %spec.url, error = %e, "JWKS unusable; keeping the last good key set");
            false
        }
    }
}
