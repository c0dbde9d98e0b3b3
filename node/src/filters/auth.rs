//! Authentication and access control for routes with `auth:`: who is calling (API key, Basic,
//! mTLS, JWT, OAuth introspection — the first method that succeeds wins), whether that
//! consumer may use the route (ACL groups, scopes), and what the upstream learns about it
//! (`X-Consumer-*` headers; client-sent copies are removed on every route).
//!
//! The request path reads immutable config and lock-free caches only: JWKS key sets are
//! refreshed by background tasks ([`jwks`]), Argon2 runs on the blocking pool behind a
//! semaphore and a per-client budget ([`secrets`]), and verified credentials are remembered
//! under HMAC digests ([`digest`]). [`AuthRuntime`] holds that state across config reloads,
//! keyed by provider name and reused while a provider's config is unchanged.

pub mod credentials;
pub mod digest;
pub mod idp;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod limiter;
pub mod mtls;
pub mod secrets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use meshgate_config::auth::compile::{
    X_ANONYMOUS_CONSUMER, X_AUTHENTICATED_SCOPE, X_CONSUMER_ID, X_CONSUMER_USERNAME,
    X_CREDENTIAL_IDENTIFIER,
};
use meshgate_config::auth::validate::api_key_id_ok;
use meshgate_config::auth::{AuthMethod, CompiledAuth, Consumer, RoutePolicy};
use meshgate_pki::PeerIdentity;

use self::credentials::Found;
use self::digest::{RandomUnavailable, SecretDigester};
use self::idp::{PlainHttp, transport_for};
use self::introspection::IntrospectionRuntime;
use self::jwks::JwksSource;
use self::jwt::JwtRuntime;
use self::secrets::{SecretCheck, SecretVerifier};
use crate::error::error_response;
use crate::proxy::body::ProxyBody;
use crate::server::context::RequestContext;

/// Who a successful method says is calling.
#[derive(Debug, Clone)]
pub struct Identity {
    pub consumer: Arc<Consumer>,
    /// Sent upstream as `X-Credential-Identifier`.
    pub credential: Option<Arc<str>>,
    /// Granted scopes, space-separated (`X-Authenticated-Scope`).
    pub scopes: Option<HeaderValue>,
    /// Claims the provider forwards as headers.
    pub forwarded: Arc<[(HeaderName, HeaderValue)]>,
    pub anonymous: bool,
}

/// The result of one method on one request.
#[derive(Debug)]
pub enum Attempt {
    /// The request carries no credential for this method.
    Absent,
    /// A credential was presented and refused (the reason is for logs only).
    Rejected(&'static str),
    /// The client spent its Argon2 budget.
    Throttled(Duration),
    /// The identity provider (or every Argon2 slot) did not answer in time.
    Unavailable,
    Ok(Identity),
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    pub argon2_verifications: u64,
    pub jwks_fetches: u64,
    pub introspection_calls: u64,
}

/// Auth state that outlives config generations.
pub struct AuthRuntime {
    /// Shared by every plain `http://` provider; `https://` ones get their own client.
    plain: Arc<PlainHttp>,
    digester: SecretDigester,
    current: ArcSwapOption<AuthGeneration>,
}

impl std::fmt::Debug for AuthRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRuntime").finish_non_exhaustive()
    }
}

/// The runtime objects one config generation uses (many are carried over from the previous).
pub struct AuthGeneration {
    serial: u64,
    secrets: Arc<SecretVerifier>,
    jwt: HashMap<String, Arc<JwtRuntime>>,
    introspection: HashMap<String, Arc<IntrospectionRuntime>>,
}

impl AuthRuntime {
    pub fn new() -> Result<Self, RandomUnavailable> {
        Ok(Self {
            plain: Arc::new(PlainHttp::new()),
            digester: SecretDigester::new()?,
            current: ArcSwapOption::empty(),
        })
    }

    /// The runtime for `auth`'s generation; built (reusing what did not change) the first time
    /// a generation is seen. A request still on an older generation gets a throwaway one.
    pub fn prepare(&self, auth: &Arc<CompiledAuth>) -> Arc<AuthGeneration> {
        let current = self.current.load_full();
        if let Some(cur) = &current
            && cur.serial == auth.serial
        {
            return cur.clone();
        }
        let built = Arc::new(self.build(auth, current.as_deref()));
        let newer = current.as_ref().is_none_or(|cur| auth.serial > cur.serial);
        if newer {
            let previous = self.current.compare_and_swap(&current, Some(built.clone()));
            let won = match (&*previous, &current) {
                (Some(p), Some(c)) => Arc::ptr_eq(p, c),
                (None, None) => true,
                _ => false,
            };
            if !won
                && let Some(installed) = self.current.load_full()
                && installed.serial == auth.serial
            {
                return installed;
            }
        }
        built
    }

    fn build(&self, auth: &CompiledAuth, previous: Option<&AuthGeneration>) -> AuthGeneration {
        let secrets = match previous {
            Some(p) if *p.secrets.settings() == auth.hashing => p.secrets.clone(),
            _ => Arc::new(SecretVerifier::new(auth.hashing.clone())),
        };
        let mut sources: Vec<Arc<JwksSource>> = previous
            .map(|p| p.jwt.values().filter_map(|r| r.jwks.clone()).collect())
            .unwrap_or_default();
        let mut jwt = HashMap::new();
        for (name, spec) in &auth.jwt {
            if let Some(old) = previous.and_then(|p| p.jwt.get(name))
                && old.spec.source == spec.source
            {
                jwt.insert(name.clone(), old.clone());
                continue;
            }
            let jwks = spec.jwks.as_ref().map(|wanted| {
                match sources.iter().find(|s| s.spec() == wanted) {
                    Some(existing) => existing.clone(),
                    None => {
                        let transport = transport_for(
                            &wanted.url,
                            wanted.tls.as_ref(),
                            &wanted.field,
                            &self.plain,
                        );
                        let started = Arc::new(JwksSource::start(wanted.clone(), transport));
                        sources.push(started.clone());
                        started
                    }
                }
            });
            jwt.insert(name.clone(), Arc::new(JwtRuntime::new(spec.clone(), jwks)));
        }
        let mut introspection = HashMap::new();
        for (name, spec) in &auth.introspection {
            let runtime = match previous.and_then(|p| p.introspection.get(name)) {
                Some(old) if old.spec.source == spec.source => old.clone(),
                _ => {
                    let transport =
                        transport_for(&spec.endpoint, spec.tls.as_ref(), &spec.field, &self.plain);
                    Arc::new(IntrospectionRuntime::new(spec.clone(), transport))
                }
            };
            introspection.insert(name.clone(), runtime);
        }
        AuthGeneration {
            serial: auth.serial,
            secrets,
            jwt,
            introspection,
        }
    }

    /// Counters of the current generation.
    pub fn stats(&self) -> AuthStats {
        let Some(g) = self.current.load_full() else {
            return AuthStats::default();
        };
        // Providers may share one source: count each once.
        let mut jwks: Vec<&Arc<JwksSource>> = Vec::new();
        for source in g.jwt.values().filter_map(|r| r.jwks.as_ref()) {
            if !jwks.iter().any(|s| Arc::ptr_eq(s, source)) {
                jwks.push(source);
            }
        }
        AuthStats {
            argon2_verifications: g.secrets.verifications(),
            jwks_fetches: jwks.iter().map(|s| s.fetches()).sum(),
            introspection_calls: g.introspection.values().map(|r| r.calls()).sum(),
        }
    }
}

/// Remove the identity headers a client may not send itself (what `authenticate` does first on
/// every route; routes without an auth policy need only this).
pub fn strip_identity_headers<B>(route: &meshgate_config::CompiledRoute, req: &mut Request<B>) {
    credentials::strip_identity_headers(req.headers_mut(), &route.auth.shared.identity_headers);
}

/// Authenticate and authorize a routed request. Strips client-sent identity headers on every
/// route; on a route with a policy, either sets the identity headers and `ctx.consumer` or
/// answers 401/403/429/503.
pub async fn authenticate<B>(
    runtime: &AuthRuntime,
    ctx: &mut RequestContext,
    req: &mut Request<B>,
) -> Result<(), Response<ProxyBody>> {
    let Some(route) = ctx.route.clone() else {
        return Ok(());
    };
    let shared = &route.auth.shared;
    credentials::strip_identity_headers(req.headers_mut(), &shared.identity_headers);
    let Some(policy) = &route.auth.policy else {
        return Ok(());
    };
    let generation = runtime.prepare(shared);
    let mut failure = Failure::default();
    let mut identity = None;
    for method in &policy.methods {
        match attempt(runtime, &generation, method, shared, ctx, req).await {
            Attempt::Ok(found) => {
                identity = Some(found);
                break;
            }
            Attempt::Absent => {}
            Attempt::Rejected(reason) => {
                tracing::debug!(route = %route.name, reason, "credential rejected");
                failure.rejected = true;
                failure.bearer_rejected |=
                    matches!(method, AuthMethod::Jwt(_) | AuthMethod::Introspection(_));
            }
            Attempt::Throttled(wait) => failure.throttled = Some(wait),
            Attempt::Unavailable => failure.unavailable = true,
        }
    }
    let identity = match (identity, &policy.anonymous) {
        (Some(identity), _) => identity,
        (None, Some(anonymous)) if !failure.presented() => Identity {
            consumer: anonymous.clone(),
            credential: None,
            scopes: None,
            forwarded: Arc::from([]),
            anonymous: true,
        },
        (None, _) => return Err(failure.response(policy, shared, &ctx.request_id)),
    };
    if let Some(denied) = authorize(policy, &identity, shared, &ctx.request_id) {
        return Err(denied);
    }
    identity_headers(req.headers_mut(), &identity);
    if !policy.forward_credentials {
        credentials::remove_credentials(req, policy, shared);
    }
    ctx.consumer = Some(identity.consumer);
    Ok(())
}

async fn attempt<B>(
    runtime: &AuthRuntime,
    generation: &AuthGeneration,
    method: &AuthMethod,
    shared: &CompiledAuth,
    ctx: &RequestContext,
    req: &Request<B>,
) -> Attempt {
    match method {
        AuthMethod::ApiKey => {
            let key = match credentials::api_key(req, shared) {
                Found::Absent => return Attempt::Absent,
                Found::Malformed => return Attempt::Rejected("malformed API key"),
                Found::Value(key) => key,
            };
            // Keys are `<id>.<secret>`: the id finds the one hash to check (no Argon2 at all
            // for unknown ids).
            let Some((id, secret)) = key.split_once('.') else {
                return Attempt::Rejected("API key is not <id>.<secret>");
            };
            if !api_key_id_ok(id) || secret.is_empty() {
                return Attempt::Rejected("API key is not <id>.<secret>");
            }
            let Some(stored) = shared.api_keys.get(id) else {
                return Attempt::Rejected("unknown API key id");
            };
            let check = generation
                .secrets
                .check(
                    &runtime.digester,
                    "api_key",
                    key.as_bytes(),
                    stored,
                    ctx.client_ip,
                )
                .await;
            secret_attempt(check, &stored.consumer, &stored.id)
        }
        AuthMethod::Basic => {
            let (user, password) = match credentials::basic(req) {
                Found::Absent => return Attempt::Absent,
                Found::Malformed => return Attempt::Rejected("malformed Basic credentials"),
                Found::Value(pair) => pair,
            };
            let Some(stored) = shared.basic.get(&user) else {
                return Attempt::Rejected("unknown Basic user");
            };
            let check = generation
                .secrets
                .check(
                    &runtime.digester,
                    "basic",
                    password.as_bytes(),
                    stored,
                    ctx.client_ip,
                )
                .await;
            secret_attempt(check, &stored.consumer, &stored.id)
        }
        AuthMethod::Mtls => {
            let Some(chain) = ctx
                .conn
                .tls_info
                .as_ref()
                .and_then(|t| t.peer_certificates.as_ref())
            else {
                return Attempt::Absent;
            };
            let Ok(peer) = PeerIdentity::from_chain(chain) else {
                return Attempt::Rejected("unreadable client certificate");
            };
            match mtls::match_peer(&peer, &shared.mtls) {
                Some(found) => Attempt::Ok(Identity {
                    consumer: found.consumer.clone(),
                    credential: Some(found.id.clone()),
                    scopes: None,
                    forwarded: Arc::from([]),
                    anonymous: false,
                }),
                None => Attempt::Rejected("client certificate maps to no consumer"),
            }
        }
        AuthMethod::Jwt(spec) => {
            let Some(rt) = generation.jwt.get(&*spec.name) else {
                return Attempt::Unavailable;
            };
            match credentials::bearer_token(req, &spec.token) {
                Found::Absent => Attempt::Absent,
                Found::Malformed => Attempt::Rejected("malformed Authorization"),
                Found::Value(token) => rt.authenticate(&token, shared, &runtime.digester).await,
            }
        }
        AuthMethod::Introspection(spec) => {
            let Some(rt) = generation.introspection.get(&*spec.name) else {
                return Attempt::Unavailable;
            };
            match credentials::bearer_token(req, &spec.token) {
                Found::Absent => Attempt::Absent,
                Found::Malformed => Attempt::Rejected("malformed Authorization"),
                Found::Value(token) => rt.authenticate(&token, shared, &runtime.digester).await,
            }
        }
    }
}

fn secret_attempt(check: SecretCheck, consumer: &Arc<Consumer>, id: &Arc<str>) -> Attempt {
    match check {
        SecretCheck::Valid => Attempt::Ok(Identity {
            consumer: consumer.clone(),
            credential: Some(id.clone()),
            scopes: None,
            forwarded: Arc::from([]),
            anonymous: false,
        }),
        SecretCheck::Invalid => Attempt::Rejected("wrong secret"),
        SecretCheck::Throttled(wait) => Attempt::Throttled(wait),
        SecretCheck::Busy => Attempt::Unavailable,
    }
}

/// Why no method succeeded.
#[derive(Debug, Default)]
struct Failure {
    rejected: bool,
    bearer_rejected: bool,
    throttled: Option<Duration>,
    unavailable: bool,
}

impl Failure {
    /// Whether the client presented any credential (then anonymous does not apply).
    fn presented(&self) -> bool {
        self.rejected || self.throttled.is_some() || self.unavailable
    }

    fn response(
        &self,
        policy: &RoutePolicy,
        shared: &CompiledAuth,
        request_id: &HeaderValue,
    ) -> Response<ProxyBody> {
        if let Some(wait) = self.throttled {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "too many authentication attempts",
                request_id,
            );
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            return response;
        }
        if self.unavailable {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "authentication service unavailable",
                request_id,
            );
        }
        let message = if self.rejected {
            "invalid credentials"
        } else {
            "authentication required"
        };
        let mut response = error_response(StatusCode::UNAUTHORIZED, message, request_id);
        challenges(
            response.headers_mut(),
            policy,
            &shared.realm,
            self.bearer_rejected,
        );
        response
    }
}

/// One `WWW-Authenticate` challenge per scheme the route accepts (RFC 9110 §11.6.1).
fn challenges(headers: &mut HeaderMap, policy: &RoutePolicy, realm: &str, bearer_rejected: bool) {
    let mut seen: Vec<&str> = Vec::new();
    for method in &policy.methods {
        let scheme = match method {
            AuthMethod::ApiKey => "ApiKey",
            AuthMethod::Basic => "Basic",
            AuthMethod::Jwt(_) | AuthMethod::Introspection(_) => "Bearer",
            // A missing client certificate is a TLS matter; HTTP has no challenge for it.
            AuthMethod::Mtls => continue,
        };
        if seen.contains(&scheme) {
            continue;
        }
        seen.push(scheme);
        let value = match scheme {
            // RFC 7617 §2.1
            "Basic" => format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            // RFC 6750 §3.1
            "Bearer" if bearer_rejected => {
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
            }
            other => format!("{other} realm=\"{realm}\""),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(WWW_AUTHENTICATE, v);
        }
    }
}

/// ACL groups (deny wins) and required scopes; `Some` is the 403 to answer.
fn authorize(
    policy: &RoutePolicy,
    identity: &Identity,
    shared: &CompiledAuth,
    request_id: &HeaderValue,
) -> Option<Response<ProxyBody>> {
    let consumer = &identity.consumer;
    let denied = consumer.in_any_group(&policy.deny_groups)
        || (!policy.allow_groups.is_empty() && !consumer.in_any_group(&policy.allow_groups));
    if denied {
        return Some(error_response(
            StatusCode::FORBIDDEN,
            "consumer is not allowed on this route",
            request_id,
        ));
    }
    if policy.scopes.is_empty() {
        return None;
    }
    let granted: Vec<&str> = identity
        .scopes
        .as_ref()
        .and_then(|s| s.to_str().ok())
        .map(|s| s.split(' ').collect())
        .unwrap_or_default();
    if policy.scopes.iter().all(|s| granted.contains(&s.as_str())) {
        return None;
    }
    let mut response = error_response(StatusCode::FORBIDDEN, "insufficient_scope", request_id);
    // RFC 6750 §3.1
    let challenge = format!(
        "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
        shared.realm,
        policy.scopes.join(" ")
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    Some(response)
}

/// The identity headers the upstream reads.
fn identity_headers(headers: &mut HeaderMap, identity: &Identity) {
    let consumer = &identity.consumer;
    headers.insert(X_CONSUMER_ID, consumer.id_header().clone());
    headers.insert(X_CONSUMER_USERNAME, consumer.username_header().clone());
    if let Some(credential) = &identity.credential
        && let Ok(v) = HeaderValue::from_str(credential)
    {
        headers.insert(X_CREDENTIAL_IDENTIFIER, v);
    }
    if let Some(scopes) = &identity.scopes {
        headers.insert(X_AUTHENTICATED_SCOPE, scopes.clone());
    }
    if identity.anonymous {
        headers.insert(X_ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
    }
    for (name, value) in identity.forwarded.iter() {
        headers.insert(name.clone(), value.clone());
    }
}
