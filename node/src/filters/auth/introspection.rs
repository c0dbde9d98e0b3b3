//! OAuth 2.0 token introspection (RFC 7662): opaque bearer tokens are checked by POSTing them to
//! the authorization server with the gateway's client credentials. Answers are cached (moka,
//! keyed by an HMAC of the token): an active token until its `exp` (at most `max_ttl`), an
//! inactive one for `inactive_ttl`. Concurrent requests with the same uncached token share one
//! call (moka's `try_get_with`), and IdP failures are not cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::Full;
use meshgate_actors::outbound_tls::read_secret;
use meshgate_config::auth::{CompiledAuth, IntrospectionSpec};
use moka::Expiry;
use moka::future::Cache;
use serde_json::{Map, Value};

use super::digest::{SecretDigest, SecretDigester};
use super::idp::{IdpTransport, fetch};
use super::jwt::{claim_text, forwarded_claims, granted_scopes, token_consumer, unix_now};
use super::{Attempt, Identity};

/// Introspection answers larger than this are refused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// One cached introspection answer.
#[derive(Debug)]
pub struct Introspected {
    active: bool,
    exp: Option<f64>,
    subject: Option<String>,
    scopes: Option<HeaderValue>,
    forwarded: Arc<[(HeaderName, HeaderValue)]>,
    ttl: Duration,
}

struct AnswerExpiry;

impl Expiry<SecretDigest, Arc<Introspected>> for AnswerExpiry {
    fn expire_after_create(
        &self,
        _key: &SecretDigest,
        value: &Arc<Introspected>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// An introspection endpoint's runtime: the answer cache and a call counter.
pub struct IntrospectionRuntime {
    pub spec: Arc<IntrospectionSpec>,
    transport: Arc<dyn IdpTransport>,
    /// The client secret, or why it could not be read (then every call fails with that).
    client_secret: Result<String, String>,
    cache: Cache<SecretDigest, Arc<Introspected>>,
    calls: AtomicU64,
}

impl std::fmt::Debug for IntrospectionRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionRuntime")
            .field("endpoint", &self.spec.endpoint)
            .finish_non_exhaustive()
    }
}

impl IntrospectionRuntime {
    pub fn new(spec: Arc<IntrospectionSpec>, transport: Arc<dyn IdpTransport>) -> Self {
        let cache = Cache::builder()
            .max_capacity(spec.cache_size.max(1))
            .expire_after(AnswerExpiry)
            .build();
        let client_secret = read_secret(
            &spec.client_secret,
            &format!("{}.client_secret_file", spec.field),
        );
        if let Err(reason) = &client_secret {
            tracing::error!(endpoint = %spec.endpoint, error = %reason, "introspection client secret unreadable; its tokens are refused until it is fixed");
        }
        Self {
            spec,
            transport,
            client_secret,
            cache,
            calls: AtomicU64::new(0),
        }
    }

    /// Calls made to the endpoint so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

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
        let key = digester.digest("introspection", &[spec.name.as_bytes(), token.as_bytes()]);
        let answer = self.cache.try_get_with(key, self.introspect(token)).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(endpoint = %spec.endpoint, error = %e, "token introspection failed");
                return Attempt::Unavailable;
            }
        };
        if !answer.active {
            return Attempt::Rejected("token is not active");
        }
        if answer.exp.is_some_and(|exp| unix_now() >= exp) {
            self.cache.invalidate(&key).await;
            return Attempt::Rejected("token expired");
        }
        self.identity(&answer, auth)
    }

    async fn introspect(&self, token: &str) -> Result<Arc<Introspected>, String> {
        let spec = &self.spec;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        // RFC 6749 §2.3.1: client id and secret are form-encoded, then used as Basic credentials.
        let secret = self.client_secret.as_deref().map_err(Clone::clone)?;
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = STANDARD.encode(format!("{}:{}", encode(&spec.client_id), encode(secret)));
        let req = Request::builder()
            .method(Method::POST)
            .uri(spec.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let body = fetch(
            self.transport.as_ref(),
            req,
            spec.timeout,
            MAX_RESPONSE_BYTES,
        )
        .await
        .map_err(|e| e.to_string())?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|e| format!("not a JSON object: {e}"))?;
        Ok(Arc::new(self.answer(&claims)?))
    }

    /// RFC 7662 §2.2: `active` is required; everything else is optional.
    fn answer(&self, claims: &Map<String, Value>) -> Result<Introspected, String> {
        let spec = &self.spec;
        let active = claims
            .get("active")
            .and_then(Value::as_bool)
            .ok_or("the answer has no boolean \"active\"")?;
        let exp = claims.get("exp").and_then(Value::as_f64);
        let now = unix_now();
        let not_yet = claims
            .get("nbf")
            .and_then(Value::as_f64)
            .is_some_and(|nbf| now < nbf);
        let active = active && !not_yet;
        let ttl = if active {
            match exp {
                Some(exp) => {
                    Duration::from_secs_f64((exp - now).clamp(0.0, spec.max_ttl.as_secs_f64()))
                }
                None => spec.max_ttl,
            }
        } else {
            spec.inactive_ttl
        };
        Ok(Introspected {
            active,
            exp,
            subject: claims.get(&spec.consumer_claim).and_then(claim_text),
            scopes: claims.get("scope").and(granted_scopes(claims)),
            forwarded: forwarded_claims(&spec.forward_claims, claims).into(),
            ttl,
        })
    }

    fn identity(&self, answer: &Introspected, auth: &CompiledAuth) -> Attempt {
        let spec = &self.spec;
        let configured = answer.subject.as_ref().and_then(|s| {
            auth.oauth2_subjects
                .get(&*spec.name)
                .and_then(|subjects| subjects.get(s))
        });
        let (consumer, credential) = match (configured, &answer.subject) {
            (Some(c), _) => (c.consumer.clone(), c.id.clone()),
            (None, _) if spec.consumer_required => {
                return Attempt::Rejected("no consumer for this token");
            }
            (None, Some(subject)) => match token_consumer(&spec.name, subject, Vec::new()) {
                Some(c) => (c, Arc::from(subject.as_str())),
                None => return Attempt::Rejected("consumer claim is not a valid header value"),
            },
            (None, None) => return Attempt::Rejected("the answer names no consumer"),
        };
        Attempt::Ok(Identity {
            consumer,
            credential: Some(credential),
            scopes: answer.scopes.clone(),
            forwarded: answer.forwarded.clone(),
            anonymous: false,
        })
    }
}
