//! The authentication parts of the config file, as serde structs: the top-level `auth:` and
//! `consumers:` sections and a route's `auth:` policy. Defaults are named constants; meaning is
//! checked in `auth::validate`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::outbound_tls::OutboundTlsConfig;

/// The realm named in `WWW-Authenticate` challenges.
pub const DEFAULT_REALM: &str = "meshgate";
/// Kong's and most gateways' API-key header.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
/// Clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: HumanDuration = HumanDuration::from_secs(30);
/// The largest leeway a config may ask for: beyond this, `exp` means little.
pub const MAX_JWT_LEEWAY: HumanDuration = HumanDuration::from_secs(300);
/// Tokens longer than this are refused before any parsing (bytes).
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;
/// Bounds for `max_token_size`.
pub const MIN_MAX_TOKEN_SIZE: usize = 256;
pub const MAX_MAX_TOKEN_SIZE: usize = 64 * 1024;
/// How often a JWKS is fetched again when nothing asks sooner.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: HumanDuration = HumanDuration::from_secs(600);
/// At most one fetch triggered by an unknown `kid` per this interval.
pub const DEFAULT_JWKS_MIN_REFETCH_INTERVAL: HumanDuration = HumanDuration::from_secs(30);
/// Timeout of one call to an identity provider (JWKS, introspection).
pub const DEFAULT_IDP_TIMEOUT: HumanDuration = HumanDuration::from_secs(5);
/// Verified tokens remembered per JWT provider / introspection endpoint.
pub const DEFAULT_TOKEN_CACHE_SIZE: u64 = 10_000;
/// Longest an active introspection answer is reused (also bounded by the token's `exp`).
pub const DEFAULT_INTROSPECTION_MAX_TTL: HumanDuration = HumanDuration::from_secs(300);
/// How long an `active: false` answer is reused.
pub const DEFAULT_INTROSPECTION_INACTIVE_TTL: HumanDuration = HumanDuration::from_secs(10);
/// Argon2 verifications running at once (each takes ~19 MiB and tens of milliseconds).
pub const DEFAULT_MAX_CONCURRENT_HASHES: usize = 2;
/// Argon2 verifications one client IP may start back to back …
pub const DEFAULT_PER_CLIENT_BURST: u32 = 10;
/// … and then one more per this interval.
pub const DEFAULT_PER_CLIENT_INTERVAL: HumanDuration = HumanDuration::from_secs(1);
/// Verified API keys / Basic credentials remembered (so Argon2 runs once per key).
pub const DEFAULT_VERIFIED_CACHE_SIZE: u64 = 10_000;
/// How long a key that failed verification is answered from memory.
pub const DEFAULT_FAILED_CACHE_TTL: HumanDuration = HumanDuration::from_secs(30);
/// How long a request waits for a free Argon2 slot before 503.
pub const DEFAULT_HASH_QUEUE_TIMEOUT: HumanDuration = HumanDuration::from_secs(2);
/// The claim that names a JWT's consumer.
pub const DEFAULT_JWT_CONSUMER_CLAIM: &str = "sub";
/// The introspection field that names the consumer (RFC 7662 §2.2).
pub const DEFAULT_INTROSPECTION_CONSUMER_CLAIM: &str = "client_id";

/// The top-level `auth:` section: identity providers and settings shared by every route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Realm in `WWW-Authenticate` challenges.
    pub realm: String,
    pub api_key: ApiKeyConfig,
    pub secret_hashing: SecretHashingConfig,
    /// JWT issuers routes may trust, by name.
    pub jwt: Vec<JwtProviderConfig>,
    /// OAuth 2.0 introspection endpoints (RFC 7662), by name.
    pub introspection: Vec<IntrospectionConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            realm: DEFAULT_REALM.to_string(),
            api_key: ApiKeyConfig::default(),
            secret_hashing: SecretHashingConfig::default(),
            jwt: Vec::new(),
            introspection: Vec::new(),
        }
    }
}

/// Where API keys are read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyConfig {
    pub header: String,
    /// Also accept the key as this query parameter (discouraged: URLs end up in logs).
    pub query: Option<String>,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        Self {
            header: DEFAULT_API_KEY_HEADER.to_string(),
            query: None,
        }
    }
}

/// Limits on Argon2 work (API keys and Basic passwords).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretHashingConfig {
    pub max_concurrent: usize,
    pub per_client_burst: u32,
    pub per_client_interval: HumanDuration,
    pub verified_cache_size: u64,
    pub failed_cache_ttl: HumanDuration,
    pub queue_timeout: HumanDuration,
}

impl Default for SecretHashingConfig {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT_HASHES,
            per_client_burst: DEFAULT_PER_CLIENT_BURST,
            per_client_interval: DEFAULT_PER_CLIENT_INTERVAL,
            verified_cache_size: DEFAULT_VERIFIED_CACHE_SIZE,
            failed_cache_ttl: DEFAULT_FAILED_CACHE_TTL,
            queue_timeout: DEFAULT_HASH_QUEUE_TIMEOUT,
        }
    }
}

/// Where a bearer token is read from, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSourceConfig {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    pub bearer: bool,
    pub cookie: Option<String>,
    pub query: Option<String>,
}

impl Default for TokenSourceConfig {
    fn default() -> Self {
        Self {
            bearer: true,
            cookie: None,
            query: None,
        }
    }
}

/// One JWT issuer: its keys and what a token from it must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtProviderConfig {
    pub name: String,
    /// Required `iss` value, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The token's `aud` must contain one of these, when set.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithms accepted from this issuer (`RS256`, `ES256`, `EdDSA`, …).
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub jwks: Option<JwksConfig>,
    #[serde(default)]
    pub keys: Vec<StaticKeyConfig>,
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    /// Claims that must be present; `exp` unless set otherwise.
    #[serde(default = "default_required_claims")]
    pub required_claims: Vec<String>,
    #[serde(default = "default_max_token_size")]
    pub max_token_size: usize,
    #[serde(default)]
    pub token: TokenSourceConfig,
    #[serde(default = "default_jwt_consumer_claim")]
    pub consumer_claim: String,
    /// Refuse valid tokens whose consumer claim names no configured consumer.
    #[serde(default)]
    pub consumer_required: bool,
    /// A claim (array or space-separated string) whose values become the consumer's groups
    /// when the token maps to no configured consumer.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Claim name → upstream header name.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    #[serde(default = "default_token_cache_size")]
    pub cache_size: u64,
}

/// A JSON Web Key Set fetched over HTTPS (or plain HTTP on a trusted network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    pub url: String,
    /// How an `https://` URL's server is verified; default: the platform's trust store.
    #[serde(default)]
    pub tls: Option<OutboundTlsConfig>,
    #[serde(default = "default_jwks_refresh_interval")]
    pub refresh_interval: HumanDuration,
    #[serde(default = "default_jwks_min_refetch_interval")]
    pub min_refetch_interval: HumanDuration,
    #[serde(default = "default_idp_timeout")]
    pub timeout: HumanDuration,
}

/// A verification key written in the config, bound to one algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKeyConfig {
    #[serde(default)]
    pub kid: Option<String>,
    pub alg: String,
    /// A public key, `-----BEGIN PUBLIC KEY-----` (RSA, EC P-256/P-384, Ed25519).
    #[serde(default)]
    pub pem: Option<String>,
    /// An HMAC secret (HS256/384/512), at least as long as the hash output.
    #[serde(default)]
    pub secret: Option<String>,
}

/// One OAuth 2.0 token introspection endpoint (RFC 7662).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    pub name: String,
    pub endpoint: String,
    /// How an `https://` endpoint's server is verified; default: the platform's trust store.
    #[serde(default)]
    pub tls: Option<OutboundTlsConfig>,
    pub client_id: String,
    /// The client secret itself (write `${ENV_VAR}` to take it from the environment) …
    #[serde(default)]
    pub client_secret: Option<String>,
    /// … or a file holding it (a mounted secret; one trailing newline is ignored).
    #[serde(default)]
    pub client_secret_file: Option<String>,
    #[serde(default = "default_idp_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub token: TokenSourceConfig,
    #[serde(default = "default_max_token_size")]
    pub max_token_size: usize,
    #[serde(default = "default_token_cache_size")]
    pub cache_size: u64,
    #[serde(default = "default_introspection_max_ttl")]
    pub max_ttl: HumanDuration,
    #[serde(default = "default_introspection_inactive_ttl")]
    pub inactive_ttl: HumanDuration,
    #[serde(default = "default_introspection_consumer_claim")]
    pub consumer_claim: String,
    #[serde(default)]
    pub consumer_required: bool,
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
}

/// A caller known to the gateway (Kong's consumer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    pub username: String,
    /// Stable id sent upstream as `X-Consumer-ID`; defaults to the username.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
}

/// One way a consumer proves who it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialConfig {
    ApiKey(ApiKeyCredentialConfig),
    Basic(BasicCredentialConfig),
    Jwt(SubjectCredentialConfig),
    Oauth2(SubjectCredentialConfig),
    Mtls(MtlsCredentialConfig),
}

/// An API key `<id>.<secret>`, stored as the Argon2id PHC hash of the whole key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCredentialConfig {
    pub id: String,
    pub hash: String,
}

/// A Basic username with the Argon2id PHC hash of its password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredentialConfig {
    pub username: String,
    pub password_hash: String,
}

/// Tokens of `provider` whose consumer claim equals `subject` belong to this consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectCredentialConfig {
    pub provider: String,
    pub subject: String,
}

/// A client certificate identity: set exactly one field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsCredentialConfig {
    /// The subject distinguished name, e.g. `CN=billing,O=Example`.
    #[serde(default)]
    pub subject: Option<String>,
    /// A DNS or URI subject alternative name.
    #[serde(default)]
    pub san: Option<String>,
    #[serde(default)]
    pub spiffe_id: Option<String>,
}

/// A route's `auth:` policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthConfig {
    /// Tried in order; the first that succeeds wins.
    pub methods: Vec<AuthMethodConfig>,
    /// Consumer (username or id) for requests that present no credential at all.
    #[serde(default)]
    pub anonymous: Option<String>,
    #[serde(default)]
    pub acl: AclConfig,
    /// Every one of these scopes must have been granted (JWT `scope`/`scp`, introspection
    /// `scope`); otherwise 403 `insufficient_scope`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Send the credential (Authorization, API key header/parameter, token cookie) upstream.
    #[serde(default)]
    pub forward_credentials: bool,
}

/// One authentication method of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodConfig {
    ApiKey,
    Basic,
    Mtls,
    /// A JWT provider by name.
    Jwt(String),
    /// An introspection endpoint by name.
    Introspection(String),
}

/// Consumer groups allowed or denied on a route (deny wins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

fn default_leeway() -> HumanDuration {
    DEFAULT_JWT_LEEWAY
}

fn default_required_claims() -> Vec<String> {
    vec!["exp".to_string()]
}

fn default_max_token_size() -> usize {
    DEFAULT_MAX_TOKEN_SIZE
}

fn default_jwt_consumer_claim() -> String {
    DEFAULT_JWT_CONSUMER_CLAIM.to_string()
}

fn default_introspection_consumer_claim() -> String {
    DEFAULT_INTROSPECTION_CONSUMER_CLAIM.to_string()
}

fn default_token_cache_size() -> u64 {
    DEFAULT_TOKEN_CACHE_SIZE
}

fn default_jwks_refresh_interval() -> HumanDuration {
    DEFAULT_JWKS_REFRESH_INTERVAL
}

fn default_jwks_min_refetch_interval() -> HumanDuration {
    DEFAULT_JWKS_MIN_REFETCH_INTERVAL
}

fn default_idp_timeout() -> HumanDuration {
    DEFAULT_IDP_TIMEOUT
}

fn default_introspection_max_ttl() -> HumanDuration {
    DEFAULT_INTROSPECTION_MAX_TTL
}

fn default_introspection_inactive_ttl() -> HumanDuration {
    DEFAULT_INTROSPECTION_INACTIVE_TTL
}
