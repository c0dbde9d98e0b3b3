//! The runtime form of the auth config: consumers with their credentials indexed for O(1)
//! lookup, identity providers with parsed keys, and each route's policy. Built once per config
//! generation; the node keeps caches and key sets that outlive it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::keys::{Algorithm, VerificationKey, parse_algorithm};
use super::model::{
    AuthConfig, AuthMethodConfig, ConsumerConfig, CredentialConfig, IntrospectionConfig,
    JwksConfig, JwtProviderConfig, RouteAuthConfig, TokenSourceConfig,
};
use crate::model::Config;
use crate::outbound_tls::OutboundTlsConfig;

/// Upstream headers that carry the authenticated identity; whatever a client sends under these
/// names is removed on every route so that it cannot be spoofed.
pub const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
pub const X_AUTHENTICATED_SCOPE: HeaderName = HeaderName::from_static("x-authenticated-scope");
pub const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");
pub const IDENTITY_HEADERS: [HeaderName; 5] = [
    X_CONSUMER_ID,
    X_CONSUMER_USERNAME,
    X_CREDENTIAL_IDENTIFIER,
    X_AUTHENTICATED_SCOPE,
    X_ANONYMOUS_CONSUMER,
];

/// Who is calling: a configured consumer, or one derived from a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub id: Arc<str>,
    pub username: Arc<str>,
    pub tags: Vec<Arc<str>>,
    pub groups: Vec<Arc<str>>,
    /// False for consumers made up from a token that matched no configured consumer.
    pub configured: bool,
    id_header: HeaderValue,
    username_header: HeaderValue,
}

impl Consumer {
    /// A consumer; `None` when the id or username cannot be sent as a header value.
    pub fn new(
        id: &str,
        username: &str,
        tags: Vec<Arc<str>>,
        groups: Vec<Arc<str>>,
        configured: bool,
    ) -> Option<Self> {
        Some(Self {
            id_header: HeaderValue::from_str(id).ok()?,
            username_header: HeaderValue::from_str(username).ok()?,
            id: id.into(),
            username: username.into(),
            tags,
            groups,
            configured,
        })
    }

    pub fn id_header(&self) -> &HeaderValue {
        &self.id_header
    }

    pub fn username_header(&self) -> &HeaderValue {
        &self.username_header
    }

    pub fn in_any_group(&self, groups: &[Arc<str>]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// A credential that resolved to a consumer; `id` goes upstream as `X-Credential-Identifier`.
#[derive(Debug, Clone)]
pub struct CredentialRef {
    pub consumer: Arc<Consumer>,
    pub id: Arc<str>,
}

/// A stored secret: the Argon2id PHC string of an API key or a Basic password.
#[derive(Debug, Clone)]
pub struct HashedCredential {
    pub consumer: Arc<Consumer>,
    /// The API key id or the Basic username.
    pub id: Arc<str>,
    pub phc: Arc<str>,
}

/// Client-certificate identities mapped to consumers.
#[derive(Debug, Default)]
pub struct MtlsIndex {
    pub by_spiffe_id: HashMap<String, CredentialRef>,
    pub by_san: HashMap<String, CredentialRef>,
    pub by_subject: HashMap<String, CredentialRef>,
}

impl MtlsIndex {
    pub fn is_empty(&self) -> bool {
        self.by_spiffe_id.is_empty() && self.by_san.is_empty() && self.by_subject.is_empty()
    }
}

/// Where a bearer token may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource {
    pub bearer: bool,
    pub cookie: Option<String>,
    pub query: Option<String>,
}

impl From<&TokenSourceConfig> for TokenSource {
    fn from(c: &TokenSourceConfig) -> Self {
        Self {
            bearer: c.bearer,
            cookie: c.cookie.clone(),
            query: c.query.clone(),
        }
    }
}

/// A JWKS endpoint and its schedule; equal specs share one fetcher across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksSpec {
    pub url: Uri,
    pub refresh_interval: Duration,
    pub min_refetch_interval: Duration,
    pub timeout: Duration,
    /// Algorithms for keys that do not name one (and the only ones accepted at all).
    pub algorithms: Vec<Algorithm>,
    /// How an `https://` URL's server is verified (`None`: the platform's trust store).
    pub tls: Option<OutboundTlsConfig>,
    /// Where it is configured (`auth.jwt[0].jwks`), for log messages.
    pub field: String,
}

/// A JWT issuer ready to verify tokens.
#[derive(Debug)]
pub struct JwtProviderSpec {
    pub name: Arc<str>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub static_keys: Vec<Arc<VerificationKey>>,
    pub jwks: Option<JwksSpec>,
    pub leeway: Duration,
    pub required_claims: Vec<String>,
    pub max_token_size: usize,
    pub token: TokenSource,
    pub consumer_claim: String,
    pub consumer_required: bool,
    pub groups_claim: Option<String>,
    pub forward_claims: Vec<(String, HeaderName)>,
    pub cache_size: u64,
    /// The config it came from: runtime state (caches) is reused while this stays equal.
    pub source: JwtProviderConfig,
}

/// An introspection endpoint ready to call.
#[derive(Debug)]
pub struct IntrospectionSpec {
    pub name: Arc<str>,
    pub endpoint: Uri,
    /// How an `https://` endpoint's server is verified (`None`: the platform's trust store).
    pub tls: Option<OutboundTlsConfig>,
    /// Where it is configured (`auth.introspection[0]`), for log messages.
    pub field: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    pub timeout: Duration,
    pub token: TokenSource,
    pub max_token_size: usize,
    pub cache_size: u64,
    pub max_ttl: Duration,
    pub inactive_ttl: Duration,
    pub consumer_claim: String,
    pub consumer_required: bool,
    pub forward_claims: Vec<(String, HeaderName)>,
    pub source: IntrospectionConfig,
}

/// Where the gateway's OAuth client secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// Written in the config (possibly substituted from `${ENV}`).
    Value(String),
    /// Read from this file when the endpoint's client is built (reloads re-read it).
    File(String),
}

/// Limits on Argon2 work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashingSettings {
    pub max_concurrent: usize,
    pub per_client_burst: u32,
    pub per_client_interval: Duration,
    pub verified_cache_size: u64,
    pub failed_cache_ttl: Duration,
    pub queue_timeout: Duration,
}

/// Everything auth needs from one config generation, shared by every route.
#[derive(Debug)]
pub struct CompiledAuth {
    /// Increases with every compile in this process: a newer config has a larger serial.
    pub serial: u64,
    pub realm: String,
    pub consumers: Vec<Arc<Consumer>>,
    pub api_keys: HashMap<String, HashedCredential>,
    pub basic: HashMap<String, HashedCredential>,
    /// Provider name → consumer-claim value → credential.
    pub jwt_subjects: HashMap<String, HashMap<String, CredentialRef>>,
    pub oauth2_subjects: HashMap<String, HashMap<String, CredentialRef>>,
    pub mtls: MtlsIndex,
    pub jwt: HashMap<String, Arc<JwtProviderSpec>>,
    pub introspection: HashMap<String, Arc<IntrospectionSpec>>,
    pub api_key_header: HeaderName,
    pub api_key_query: Option<String>,
    pub hashing: HashingSettings,
    /// Removed from every request before routing decides anything ([`IDENTITY_HEADERS`] plus
    /// every header a provider forwards claims in).
    pub identity_headers: Vec<HeaderName>,
}

impl CompiledAuth {
    /// A consumer by username or id.
    pub fn consumer(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.consumers
            .iter()
            .find(|c| &*c.username == name)
            .or_else(|| self.consumers.iter().find(|c| &*c.id == name))
    }
}

/// One authentication method of a route, resolved.
#[derive(Debug, Clone)]
pub enum AuthMethod {
    ApiKey,
    Basic,
    Mtls,
    Jwt(Arc<JwtProviderSpec>),
    Introspection(Arc<IntrospectionSpec>),
}

/// A route's policy.
#[derive(Debug)]
pub struct RoutePolicy {
    pub methods: Vec<AuthMethod>,
    pub anonymous: Option<Arc<Consumer>>,
    pub allow_groups: Vec<Arc<str>>,
    pub deny_groups: Vec<Arc<str>>,
    pub scopes: Vec<String>,
    pub forward_credentials: bool,
}

/// What a compiled route knows about authentication: the generation's shared auth (needed even
/// without a policy, to strip identity headers) and the route's own policy, if any.
#[derive(Debug, Clone)]
pub struct RouteAuth {
    pub shared: Arc<CompiledAuth>,
    pub policy: Option<Arc<RoutePolicy>>,
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// Compile the auth parts of a validated config. Invalid parts (already reported by
/// `validate`) are left out.
pub fn compile_auth(config: &Config) -> Arc<CompiledAuth> {
    let auth = &config.auth;
    let jwt: HashMap<String, Arc<JwtProviderSpec>> = auth
        .jwt
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let spec = compile_jwt(p, &format!("auth.jwt[{i}]"))?;
            Some((p.name.clone(), Arc::new(spec)))
        })
        .collect();
    let introspection: HashMap<String, Arc<IntrospectionSpec>> = auth
        .introspection
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let spec = compile_introspection(p, format!("auth.introspection[{i}]"))?;
            Some((p.name.clone(), Arc::new(spec)))
        })
        .collect();
    let mut identity_headers: Vec<HeaderName> = IDENTITY_HEADERS.to_vec();
    let forwarded = jwt
        .values()
        .flat_map(|p| p.forward_claims.iter())
        .chain(introspection.values().flat_map(|p| p.forward_claims.iter()));
    for (_, header) in forwarded {
        if !identity_headers.contains(header) {
            identity_headers.push(header.clone());
        }
    }
    let mut compiled = CompiledAuth {
        serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        realm: auth.realm.clone(),
        consumers: Vec::new(),
        api_keys: HashMap::new(),
        basic: HashMap::new(),
        jwt_subjects: HashMap::new(),
        oauth2_subjects: HashMap::new(),
        mtls: MtlsIndex::default(),
        jwt,
        introspection,
        api_key_header: HeaderName::from_bytes(auth.api_key.header.as_bytes())
            .unwrap_or(HeaderName::from_static("x-api-key")),
        api_key_query: auth.api_key.query.clone(),
        hashing: hashing_settings(auth),
        identity_headers,
    };
    for c in &config.consumers {
        add_consumer(&mut compiled, c);
    }
    Arc::new(compiled)
}

fn hashing_settings(auth: &AuthConfig) -> HashingSettings {
    let h = &auth.secret_hashing;
    HashingSettings {
        max_concurrent: h.max_concurrent.max(1),
        per_client_burst: h.per_client_burst.max(1),
        per_client_interval: h.per_client_interval.get(),
        verified_cache_size: h.verified_cache_size,
        failed_cache_ttl: h.failed_cache_ttl.get(),
        queue_timeout: h.queue_timeout.get(),
    }
}

fn add_consumer(compiled: &mut CompiledAuth, c: &ConsumerConfig) {
    let id = c.id.as_deref().unwrap_or(&c.username);
    let Some(consumer) = Consumer::new(
        id,
        &c.username,
        c.tags.iter().map(|t| t.as_str().into()).collect(),
        c.groups.iter().map(|g| g.as_str().into()).collect(),
        true,
    ) else {
        return;
    };
    let consumer = Arc::new(consumer);
    compiled.consumers.push(consumer.clone());
    let credential = |id: &str| CredentialRef {
        consumer: consumer.clone(),
        id: id.into(),
    };
    for cred in &c.credentials {
        match cred {
            CredentialConfig::ApiKey(k) => {
                compiled.api_keys.insert(
                    k.id.clone(),
                    HashedCredential {
                        consumer: consumer.clone(),
                        id: k.id.as_str().into(),
                        phc: k.hash.as_str().into(),
                    },
                );
            }
            CredentialConfig::Basic(b) => {
                compiled.basic.insert(
                    b.username.clone(),
                    HashedCredential {
                        consumer: consumer.clone(),
                        id: b.username.as_str().into(),
                        phc: b.password_hash.as_str().into(),
                    },
                );
            }
            CredentialConfig::Jwt(s) => {
                compiled
                    .jwt_subjects
                    .entry(s.provider.clone())
                    .or_default()
                    .insert(s.subject.clone(), credential(&s.subject));
            }
            CredentialConfig::Oauth2(s) => {
                compiled
                    .oauth2_subjects
                    .entry(s.provider.clone())
                    .or_default()
                    .insert(s.subject.clone(), credential(&s.subject));
            }
            CredentialConfig::Mtls(m) => {
                let index = &mut compiled.mtls;
                if let Some(v) = &m.spiffe_id {
                    index.by_spiffe_id.insert(v.clone(), credential(v));
                } else if let Some(v) = &m.san {
                    index.by_san.insert(v.clone(), credential(v));
                } else if let Some(v) = &m.subject {
                    index.by_subject.insert(v.clone(), credential(v));
                }
            }
        }
    }
}

fn forward_claims(map: &std::collections::BTreeMap<String, String>) -> Vec<(String, HeaderName)> {
    map.iter()
        .filter_map(|(claim, header)| {
            Some((
                claim.clone(),
                HeaderName::from_bytes(header.as_bytes()).ok()?,
            ))
        })
        .collect()
}

fn compile_jwt(p: &JwtProviderConfig, field: &str) -> Option<JwtProviderSpec> {
    let algorithms: Vec<Algorithm> = p
        .algorithms
        .iter()
        .filter_map(|a| parse_algorithm(a))
        .collect();
    let static_keys = p
        .keys
        .iter()
        .filter_map(|k| super::validate::static_key(k).ok().map(Arc::new))
        .collect();
    let jwks = match &p.jwks {
        Some(j) => Some(jwks_spec(j, &algorithms, format!("{field}.jwks"))?),
        None => None,
    };
    Some(JwtProviderSpec {
        name: p.name.as_str().into(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        algorithms,
        static_keys,
        jwks,
        leeway: p.leeway.get(),
        required_claims: p.required_claims.clone(),
        max_token_size: p.max_token_size,
        token: (&p.token).into(),
        consumer_claim: p.consumer_claim.clone(),
        consumer_required: p.consumer_required,
        groups_claim: p.groups_claim.clone(),
        forward_claims: forward_claims(&p.forward_claims),
        cache_size: p.cache_size,
        source: p.clone(),
    })
}

fn jwks_spec(j: &JwksConfig, algorithms: &[Algorithm], field: String) -> Option<JwksSpec> {
    Some(JwksSpec {
        url: j.url.parse().ok()?,
        refresh_interval: j.refresh_interval.get(),
        min_refetch_interval: j.min_refetch_interval.get(),
        timeout: j.timeout.get(),
        algorithms: algorithms.to_vec(),
        tls: j.tls.clone(),
        field,
    })
}

fn compile_introspection(p: &IntrospectionConfig, field: String) -> Option<IntrospectionSpec> {
    let client_secret = match (&p.client_secret, &p.client_secret_file) {
        (Some(secret), None) => ClientSecret::Value(secret.clone()),
        (None, Some(file)) => ClientSecret::File(file.clone()),
        _ => return None,
    };
    Some(IntrospectionSpec {
        name: p.name.as_str().into(),
        endpoint: p.endpoint.parse().ok()?,
        tls: p.tls.clone(),
        field,
        client_id: p.client_id.clone(),
        client_secret,
        timeout: p.timeout.get(),
        token: (&p.token).into(),
        max_token_size: p.max_token_size,
        cache_size: p.cache_size,
        max_ttl: p.max_ttl.get(),
        inactive_ttl: p.inactive_ttl.get(),
        consumer_claim: p.consumer_claim.clone(),
        consumer_required: p.consumer_required,
        forward_claims: forward_claims(&p.forward_claims),
        source: p.clone(),
    })
}

/// A route's auth: the shared part always, the policy when the route has `auth:`.
pub fn compile_route_auth(shared: &Arc<CompiledAuth>, r: Option<&RouteAuthConfig>) -> RouteAuth {
    let policy = r.map(|r| {
        let methods = r
            .methods
            .iter()
            .filter_map(|m| match m {
                AuthMethodConfig::ApiKey => Some(AuthMethod::ApiKey),
                AuthMethodConfig::Basic => Some(AuthMethod::Basic),
                AuthMethodConfig::Mtls => Some(AuthMethod::Mtls),
                AuthMethodConfig::Jwt(name) => shared.jwt.get(name).cloned().map(AuthMethod::Jwt),
                AuthMethodConfig::Introspection(name) => shared
                    .introspection
                    .get(name)
                    .cloned()
                    .map(AuthMethod::Introspection),
            })
            .collect();
        Arc::new(RoutePolicy {
            methods,
            anonymous: r
                .anonymous
                .as_deref()
                .and_then(|name| shared.consumer(name).cloned()),
            allow_groups: r.acl.allow.iter().map(|g| g.as_str().into()).collect(),
            deny_groups: r.acl.deny.iter().map(|g| g.as_str().into()).collect(),
            scopes: r.scopes.clone(),
            forward_credentials: r.forward_credentials,
        })
    });
    RouteAuth {
        shared: shared.clone(),
        policy,
    }
}
