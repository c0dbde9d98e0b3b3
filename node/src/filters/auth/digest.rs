//! Cache keys for secrets: HMAC-SHA256 under a random per-process key, so a cache of verified
//! API keys or tokens holds no secret and its keys cannot be predicted or collided from outside.

use ring::hmac;
use ring::rand::SystemRandom;

/// A 256-bit cache key.
pub type SecretDigest = [u8; 32];

/// Keyed digests of presented credentials.
pub struct SecretDigester {
    key: hmac::Key,
}

impl std::fmt::Debug for SecretDigester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigester")
    }
}

/// Why the process key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomUnavailable;

impl SecretDigester {
    pub fn new() -> Result<Self, RandomUnavailable> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| RandomUnavailable)?;
        Ok(Self { key })
    }

    /// The digest of `parts` in `domain`; each part is length-prefixed so that no two
    /// different inputs share an encoding.
    pub fn digest(&self, domain: &str, parts: &[&[u8]]) -> SecretDigest {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}
