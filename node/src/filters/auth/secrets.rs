//! Argon2id-hashed secrets (API keys, Basic passwords) verified without letting Argon2 become
//! the bottleneck or a denial-of-service lever:
//!
//! - a key that verified once is remembered (bounded moka cache, keyed by an HMAC of the
//!   presented secret under a per-process key) together with the PHC string it matched, so the
//!   steady state costs one HMAC and one cache read; a reload that changes or removes the hash
//!   makes the entry useless at once (the PHC strings no longer match);
//! - a key that failed is remembered for `failed_cache_ttl`, so repeating it costs nothing;
//! - every Argon2 run is charged to the client IP's GCRA bucket (429 when empty), runs on the
//!   blocking pool (`spawn_blocking`), and at most `max_concurrent` run at once (a semaphore;
//!   503 after `queue_timeout`).
//!
//! moka is used for every cache here because its reads are lock-free (a concurrent hash table;
//! bookkeeping is buffered and applied with a non-blocking try-lock) and its TinyLFU admission
//! keeps a flood of one-off keys from evicting the keys in real use.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use meshgate_config::auth::HashedCredential;
use meshgate_config::auth::compile::HashingSettings;
use moka::sync::Cache;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::digest::{SecretDigest, SecretDigester};
use super::limiter::Gcra;

/// Client IPs whose Argon2 budget is tracked at once; idle ones are forgotten after
/// [`CLIENT_IDLE`].
const MAX_TRACKED_CLIENTS: u64 = 65_536;
const CLIENT_IDLE: Duration = Duration::from_secs(600);

/// The outcome of checking one presented secret against one stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretCheck {
    Valid,
    Invalid,
    /// This client spent its Argon2 budget; retry after this long.
    Throttled(Duration),
    /// Every Argon2 slot stayed busy for `queue_timeout`.
    Busy,
}

/// Verifies secrets against Argon2id PHC hashes with caches and limits.
pub struct SecretVerifier {
    settings: HashingSettings,
    verified: Cache<SecretDigest, Arc<str>>,
    failed: Cache<SecretDigest, Arc<str>>,
    clients: Cache<IpAddr, Arc<Gcra>>,
    slots: Arc<Semaphore>,
    verifications: AtomicU64,
}

impl std::fmt::Debug for SecretVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVerifier")
            .field("settings", &self.settings)
            .field("verifications", &self.verifications)
            .finish_non_exhaustive()
    }
}

impl SecretVerifier {
    pub fn new(settings: HashingSettings) -> Self {
        Self {
            verified: Cache::builder()
                .max_capacity(settings.verified_cache_size)
                .build(),
            failed: Cache::builder()
                .max_capacity(settings.verified_cache_size)
                .time_to_live(settings.failed_cache_ttl)
                .build(),
            clients: Cache::builder()
                .max_capacity(MAX_TRACKED_CLIENTS)
                .time_to_idle(CLIENT_IDLE)
                .build(),
            slots: Arc::new(Semaphore::new(settings.max_concurrent)),
            verifications: AtomicU64::new(0),
            settings,
        }
    }

    pub fn settings(&self) -> &HashingSettings {
        &self.settings
    }

    /// Argon2 verifications run so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Check `presented` against `stored`; `domain` separates API keys from Basic passwords.
    pub async fn check(
        &self,
        digester: &SecretDigester,
        domain: &str,
        presented: &[u8],
        stored: &HashedCredential,
        client: IpAddr,
    ) -> SecretCheck {
        let key = digester.digest(domain, &[stored.id.as_bytes(), presented]);
        if let Some(phc) = self.verified.get(&key)
            && same_phc(&phc, &stored.phc)
        {
            return SecretCheck::Valid;
        }
        if let Some(phc) = self.failed.get(&key)
            && same_phc(&phc, &stored.phc)
        {
            return SecretCheck::Invalid;
        }
        let bucket = self.clients.get_with(client, || Arc::new(Gcra::new()));
        if let Err(wait) = bucket.try_acquire(
            meshgate_actors::clock::nanos(),
            self.settings.per_client_interval,
            self.settings.per_client_burst,
        ) {
            return SecretCheck::Throttled(wait);
        }
        let slot = tokio::time::timeout(
            self.settings.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await;
        let Ok(Ok(_slot)) = slot else {
            return SecretCheck::Busy;
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let secret = presented.to_vec();
        let phc = stored.phc.clone();
        let ok = tokio::task::spawn_blocking(move || verify_phc(&secret, &phc))
            .await
            .unwrap_or(false);
        if ok {
            self.verified.insert(key, stored.phc.clone());
            SecretCheck::Valid
        } else {
            self.failed.insert(key, stored.phc.clone());
            SecretCheck::Invalid
        }
    }
}

fn same_phc(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Argon2 verification (constant-time comparison of the outputs inside `password-hash`).
/// Blocking: tens of milliseconds with the recommended parameters.
pub fn verify_phc(secret: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(secret, &hash).is_ok(),
        Err(_) => false,
    }
}

/// Why a secret could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash: {0}")]
pub struct HashError(String);

/// Hash a secret as an Argon2id PHC string with the recommended parameters (OWASP: m=19 MiB,
/// t=2, p=1) and a random salt. What `meshgate hash-key` prints.
pub fn hash_secret(secret: &[u8]) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(secret)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}
