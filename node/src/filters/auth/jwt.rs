//! JWT bearer authentication (RFC 7519, RFC 7515, RFC 8725 best practices): strict parsing,
//! a signature check with a key bound to the token's algorithm, claim checks, and a bounded
//! cache of verified tokens so a client that repeats its token pays one HMAC, not a signature
//! verification (Envoy's jwt_authn does the same).
//!
//! Refused before any key is touched: tokens over `max_token_size`, anything but three
//! base64url segments, an `alg` that is not exactly one of the provider's algorithms (so
//! `none`/`None`/`nOnE` never pass), keys or key URLs carried by the token (`jwk`, `jku`,
//! `x5u`, `x5c`), any `crit` (we implement no extension), an empty signature. A token is only
//! checked with keys bound to its `alg`: an HMAC token is never verified with an RSA public
//! key as the secret.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue};
use meshgate_config::auth::keys::{Algorithm, VerificationKey, parse_algorithm, verify_signature};
use meshgate_config::auth::{CompiledAuth, Consumer, JwtProviderSpec};
use moka::sync::Cache;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::digest::{SecretDigest, SecretDigester};
use super::jwks::{JwksSource, KeySet};
use super::{Attempt, Identity};

/// How long a verified token is remembered at most (its `exp` still applies on every use).
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(300);
/// A `kid` longer than this is refused outright.
const MAX_KID_LEN: usize = 256;
/// Without a `kid`, at most this many keys of the token's algorithm are tried.
const MAX_KIDLESS_CANDIDATES: usize = 4;

/// The JOSE header members we act on (RFC 7515 §4.1). serde rejects a duplicated member.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    jwk: Option<IgnoredAny>,
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
}

/// What a verified token established, independent of the consumers config.
#[derive(Debug)]
pub struct VerifiedToken {
    exp: Option<f64>,
    /// The consumer claim's value.
    subject: Option<String>,
    scopes: Option<HeaderValue>,
    groups: Vec<Arc<str>>,
    forwarded: Arc<[(HeaderName, HeaderValue)]>,
    /// The JWKS generation the signing key came from (0: a static key).
    key_generation: u64,
}

/// A JWT provider's runtime: its key source and verified-token cache; kept across reloads while
/// the provider's config is unchanged.
pub struct JwtRuntime {
    pub spec: Arc<JwtProviderSpec>,
    pub jwks: Option<Arc<JwksSource>>,
    cache: Option<Cache<SecretDigest, Arc<VerifiedToken>>>,
}

impl std::fmt::Debug for JwtRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtRuntime")
            .field("provider", &self.spec.name)
            .finish_non_exhaustive()
    }
}

impl JwtRuntime {
    pub fn new(spec: Arc<JwtProviderSpec>, jwks: Option<Arc<JwksSource>>) -> Self {
        let cache = (spec.cache_size > 0).then(|| {
            Cache::builder()
                .max_capacity(spec.cache_size)
                .time_to_live(VERIFIED_TOKEN_TTL)
                .build()
        });
        Self { spec, jwks, cache }
    }

    /// Authenticate one token.
    pub async fn authenticate(
        &self,
        token: &str,
        auth: &CompiledAuth,
        digester: &SecretDigester,
    ) -> Attempt {
        let spec = &self.spec;
        if token.len() > spec.max_token_size {
            return Attempt::Rejected("token too large");
        }
        let now = unix_now();
        let digest = digester.digest("jwt", &[spec.name.as_bytes(), token.as_bytes()]);
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(&digest)
        {
            let fresh = hit.key_generation == 0
                || self
                    .jwks
                    .as_ref()
                    .is_some_and(|j| j.current().generation == hit.key_generation);
            if fresh {
                if hit.exp.is_some_and(|exp| expired(exp, now, spec.leeway)) {
                    cache.invalidate(&digest);
                    return Attempt::Rejected("token expired");
                }
                return identity(spec, &hit, auth);
            }
        }
        match self.verify(token, now).await {
            Ok(verified) => {
                let verified = Arc::new(verified);
                if let Some(cache) = &self.cache {
                    cache.insert(digest, verified.clone());
                }
                identity(spec, &verified, auth)
            }
            Err(reason) => {
                tracing::debug!(provider = %spec.name, reason, "JWT rejected");
                Attempt::Rejected(reason)
            }
        }
    }

    async fn verify(&self, token: &str, now: f64) -> Result<VerifiedToken, &'static str> {
        let spec = &self.spec;
        let parts = split_token(token)?;
        let header: JoseHeader =
            serde_json::from_slice(&b64(parts.header)?).map_err(|_| "malformed header")?;
        let alg = parse_algorithm(&header.alg).ok_or("unsupported alg")?;
        if !spec.algorithms.contains(&alg) {
            return Err("alg not allowed for this issuer");
        }
        if header.jwk.is_some()
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err("keys embedded in the token are not trusted");
        }
        if header.crit.is_some() {
            return Err("unsupported critical header");
        }
        let signature = b64(parts.signature)?;
        if signature.is_empty() {
            return Err("empty signature");
        }
        if header.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_LEN) {
            return Err("kid too long");
        }
        let key_generation = self
            .verify_with_keys(
                alg,
                header.kid.as_deref(),
                parts.signing_input.as_bytes(),
                &signature,
            )
            .await?;
        let claims: Map<String, Value> = serde_json::from_slice(&b64(parts.payload)?)
            .map_err(|_| "claims are not a JSON object")?;
        check_claims(spec, &claims, now)?;
        Ok(verified_token(spec, &claims, key_generation))
    }

    /// Verify with the keys bound to `alg` (by `kid` when given); returns the key generation.
    async fn verify_with_keys(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        input: &[u8],
        signature: &[u8],
    ) -> Result<u64, &'static str> {
        let spec = &self.spec;
        let statics = spec.static_keys.iter().filter(|k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            None => true,
        });
        let static_candidates: Vec<&Arc<VerificationKey>> =
            statics.filter(|k| k.algorithms.contains(&alg)).collect();
        let mut set: Option<Arc<KeySet>> = None;
        if let Some(jwks) = &self.jwks {
            // A token for a static key never waits for the key set's first load.
            let mut current = if static_candidates.is_empty() {
                jwks.loaded().await
            } else {
                jwks.current()
            };
            if let Some(kid) = kid
                && !current.has_kid(kid)
                && static_candidates.is_empty()
            {
                current = jwks.refetch_for_unknown_kid(kid).await;
            }
            set = Some(current);
        }
        let jwks_candidates: Vec<&Arc<VerificationKey>> = match (&set, kid) {
            (Some(set), Some(kid)) => set
                .by_kid(kid)
                .filter(|k| k.algorithms.contains(&alg))
                .collect(),
            (Some(set), None) => set
                .keys
                .iter()
                .filter(|k| k.algorithms.contains(&alg))
                .collect(),
            (None, _) => Vec::new(),
        };
        if static_candidates.is_empty() && jwks_candidates.is_empty() {
            return Err(if kid.is_some() {
                "unknown kid"
            } else {
                "no key for this alg"
            });
        }
        if kid.is_none() && static_candidates.len() + jwks_candidates.len() > MAX_KIDLESS_CANDIDATES
        {
            return Err("token has no kid and the issuer has several keys");
        }
        if static_candidates
            .iter()
            .any(|k| verify_signature(k, alg, input, signature))
        {
            return Ok(0);
        }
        if jwks_candidates
            .iter()
            .any(|k| verify_signature(k, alg, input, signature))
        {
            return Ok(set.map_or(0, |s| s.generation));
        }
        Err("bad signature")
    }
}

struct TokenParts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

/// Exactly three segments (RFC 7515 §7.1 compact serialization; JWE's five are refused).
fn split_token(token: &str) -> Result<TokenParts<'_>, &'static str> {
    let mut dots = token.match_indices('.').map(|(i, _)| i);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err("not a compact JWS");
    };
    Ok(TokenParts {
        header: &token[..first],
        payload: &token[first + 1..second],
        signature: &token[second + 1..],
        signing_input: &token[..second],
    })
}

/// Strict base64url without padding (non-canonical trailing bits are refused).
fn b64(segment: &str) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| "segment is not base64url")
}

/// Seconds since the Unix epoch (JWT NumericDate).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 7519 §4.1.4: valid only while now < exp (plus leeway).
fn expired(exp: f64, now: f64, leeway: Duration) -> bool {
    now >= exp + leeway.as_secs_f64()
}

/// `exp`, `nbf`, `iss`, `aud` and the required claims.
pub fn check_claims(
    spec: &JwtProviderSpec,
    claims: &Map<String, Value>,
    now: f64,
) -> Result<(), &'static str> {
    for name in &spec.required_claims {
        if !claims.contains_key(name) {
            return Err("a required claim is missing");
        }
    }
    let leeway = spec.leeway.as_secs_f64();
    match claims.get("exp") {
        None => {}
        Some(Value::Number(n)) => {
            let exp = n.as_f64().ok_or("exp is not a number")?;
            if expired(exp, now, spec.leeway) {
                return Err("token expired");
            }
        }
        Some(_) => return Err("exp is not a number"),
    }
    match claims.get("nbf") {
        None => {}
        // RFC 7519 §4.1.5: not accepted before nbf (minus leeway).
        Some(Value::Number(n)) => {
            let nbf = n.as_f64().ok_or("nbf is not a number")?;
            if now < nbf - leeway {
                return Err("token not yet valid");
            }
        }
        Some(_) => return Err("nbf is not a number"),
    }
    if let Some(issuer) = &spec.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        return Err("wrong issuer");
    }
    if !spec.audiences.is_empty() {
        let matches = |v: &Value| {
            v.as_str()
                .is_some_and(|a| spec.audiences.iter().any(|x| x == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(items)) => items.iter().any(matches),
            Some(v) => matches(v),
            None => false,
        };
        if !ok {
            return Err("wrong audience");
        }
    }
    Ok(())
}

fn verified_token(
    spec: &JwtProviderSpec,
    claims: &Map<String, Value>,
    key_generation: u64,
) -> VerifiedToken {
    VerifiedToken {
        exp: claims.get("exp").and_then(Value::as_f64),
        subject: claims.get(&spec.consumer_claim).and_then(claim_text),
        scopes: granted_scopes(claims),
        groups: spec
            .groups_claim
            .as_ref()
            .and_then(|name| claims.get(name))
            .map(claim_list)
            .unwrap_or_default(),
        forwarded: forwarded_claims(&spec.forward_claims, claims).into(),
        key_generation,
    }
}

/// OAuth scopes granted by a token: `scope` (space-separated, RFC 8693 §4.2) or `scp`.
pub fn granted_scopes(claims: &Map<String, Value>) -> Option<HeaderValue> {
    let scopes: Vec<Arc<str>> = claims
        .get("scope")
        .or_else(|| claims.get("scp"))
        .map(claim_list)?;
    let joined = scopes.iter().map(|s| &**s).collect::<Vec<_>>().join(" ");
    HeaderValue::from_str(&joined).ok()
}

/// A string claim, or a number's text.
pub fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An array of strings, or one space-separated string.
pub fn claim_list(v: &Value) -> Vec<Arc<str>> {
    match v {
        Value::String(s) => s.split_whitespace().map(Arc::from).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(Arc::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// The configured claims as upstream headers (arrays joined with `,`; values that are not
/// valid header values are left out).
pub fn forwarded_claims(
    mapping: &[(String, HeaderName)],
    claims: &Map<String, Value>,
) -> Vec<(HeaderName, HeaderValue)> {
    mapping
        .iter()
        .filter_map(|(claim, header)| {
            let text = match claims.get(claim)? {
                Value::Array(items) => items
                    .iter()
                    .filter_map(claim_text)
                    .collect::<Vec<_>>()
                    .join(","),
                Value::Bool(b) => b.to_string(),
                other => claim_text(other)?,
            };
            Some((header.clone(), HeaderValue::from_str(&text).ok()?))
        })
        .collect()
}

fn identity(spec: &JwtProviderSpec, token: &VerifiedToken, auth: &CompiledAuth) -> Attempt {
    let configured = token.subject.as_ref().and_then(|s| {
        auth.jwt_subjects
            .get(&*spec.name)
            .and_then(|subjects| subjects.get(s))
    });
    let (consumer, credential) = match (configured, &token.subject) {
        (Some(c), _) => (c.consumer.clone(), Some(c.id.clone())),
        (None, _) if spec.consumer_required => {
            return Attempt::Rejected("no consumer for this token");
        }
        (None, Some(subject)) => match token_consumer(&spec.name, subject, token.groups.clone()) {
            Some(c) => (c, Some(Arc::from(subject.as_str()))),
            None => return Attempt::Rejected("consumer claim is not a valid header value"),
        },
        (None, None) => return Attempt::Rejected("token has no consumer claim"),
    };
    Attempt::Ok(Identity {
        consumer,
        credential,
        scopes: token.scopes.clone(),
        forwarded: token.forwarded.clone(),
        anonymous: false,
    })
}

/// A consumer made up from a token that names no configured consumer: id `<provider>:<subject>`.
pub fn token_consumer(
    provider: &str,
    subject: &str,
    groups: Vec<Arc<str>>,
) -> Option<Arc<Consumer>> {
    Consumer::new(
        &format!("{provider}:{subject}"),
        subject,
        Vec::new(),
        groups,
        false,
    )
    .map(Arc::new)
}

#[cfg(test)]
mod tests;
