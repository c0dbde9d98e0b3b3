//! Validation of the auth config: provider and consumer references, key material, Argon2id
//! hashes, header names and ranges. Every problem is reported with its field path.

use std::collections::{HashMap, HashSet};

use argon2::password_hash::phc::PasswordHash;
use http::HeaderName;

use super::compile::IDENTITY_HEADERS;
use super::keys::{Algorithm, VerificationKey, parse_algorithm};
use super::model::{
    AuthConfig, AuthMethodConfig, ConsumerConfig, CredentialConfig, IntrospectionConfig,
    JwtProviderConfig, MAX_JWT_LEEWAY, MAX_MAX_TOKEN_SIZE, MIN_MAX_TOKEN_SIZE, RouteAuthConfig,
    StaticKeyConfig, TokenSourceConfig,
};
use crate::error::{ConfigError, FieldPath};
use crate::model::Config;
use crate::outbound_tls::{OutboundTlsConfig, validate_outbound_tls};

/// Argon2 parameters above these would let one verification take seconds or gigabytes.
pub const MAX_ARGON2_M_COST_KIB: u32 = 256 * 1024;
pub const MAX_ARGON2_T_COST: u32 = 16;
pub const MAX_ARGON2_P_COST: u32 = 16;
/// API key ids: `[A-Za-z0-9_-]{1,64}` (the part of a key before the first `.`).
pub const MAX_API_KEY_ID_LEN: usize = 64;

/// Every problem in `auth:`, `consumers:` and the routes' `auth:` policies.
pub fn validate_auth(config: &Config) -> Vec<ConfigError> {
    let mut v = AuthValidator::default();
    let root = FieldPath::root();
    let auth = &config.auth;
    v.settings(auth, &root.field("auth"));
    let jwt = v.names(
        auth.jwt.iter().map(|p| p.name.as_str()),
        &root.field("auth").field("jwt"),
    );
    for (i, p) in auth.jwt.iter().enumerate() {
        v.jwt_provider(p, &root.field("auth").field("jwt").index(i));
    }
    let introspection = v.names(
        auth.introspection.iter().map(|p| p.name.as_str()),
        &root.field("auth").field("introspection"),
    );
    for (i, p) in auth.introspection.iter().enumerate() {
        v.introspection(p, &root.field("auth").field("introspection").index(i));
    }
    let consumers = v.consumers(
        &config.consumers,
        &jwt,
        &introspection,
        &root.field("consumers"),
    );
    for (i, r) in config.routes.iter().enumerate() {
        if let Some(policy) = &r.auth {
            let path = root.field("routes").index(i).field("auth");
            v.route_policy(policy, &path, &jwt, &introspection, &consumers);
        }
    }
    v.errors
}

#[derive(Default)]
struct AuthValidator {
    errors: Vec<ConfigError>,
}

impl AuthValidator {
    fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    fn positive(&mut self, d: crate::duration::HumanDuration, path: &FieldPath) {
        if d.get().is_zero() {
            self.push(path.error("must be greater than zero"));
        }
    }

    fn settings(&mut self, auth: &AuthConfig, path: &FieldPath) {
        if auth.realm.is_empty()
            || auth
                .realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control() || !c.is_ascii())
        {
            self.push(path.field("realm").error(
                "must be non-empty printable ASCII without '\"' or '\\' (it is quoted in WWW-Authenticate)",
            ));
        }
        self.header_name(&auth.api_key.header, &path.field("api_key").field("header"));
        if auth.api_key.query.as_deref() == Some("") {
            self.push(
                path.field("api_key")
                    .field("query")
                    .error("must not be empty"),
            );
        }
        let h = &auth.secret_hashing;
        let hp = path.field("secret_hashing");
        if !(1..=64).contains(&h.max_concurrent) {
            self.push(
                hp.field("max_concurrent")
                    .error(format!("{} is out of range 1..=64", h.max_concurrent)),
            );
        }
        if h.per_client_burst == 0 {
            self.push(hp.field("per_client_burst").error("must be at least 1"));
        }
        if h.verified_cache_size == 0 {
            self.push(hp.field("verified_cache_size").error(
                "must be at least 1: without the cache every request pays an Argon2 verification",
            ));
        }
        self.positive(h.per_client_interval, &hp.field("per_client_interval"));
        self.positive(h.failed_cache_ttl, &hp.field("failed_cache_ttl"));
        self.positive(h.queue_timeout, &hp.field("queue_timeout"));
    }

    /// A header name that may carry something upstream: valid and not an identity header.
    fn header_name(&mut self, name: &str, path: &FieldPath) {
        match HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => self.push(path.error(format!("{name:?} is not a valid header name"))),
            Ok(h) if IDENTITY_HEADERS.contains(&h) => self.push(path.error(format!(
                "{name:?} is reserved for the authenticated identity"
            ))),
            Ok(_) => {}
        }
    }

    fn names<'a>(
        &mut self,
        names: impl Iterator<Item = &'a str>,
        list: &FieldPath,
    ) -> HashSet<&'a str> {
        let mut seen = HashSet::new();
        for (i, name) in names.enumerate() {
            let path = list.index(i).field("name");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                self.push(path.error(format!(
                    "{name:?} must be non-empty letters, digits, '-', '_' or '.'"
                )));
            } else if !seen.insert(name) {
                self.push(path.error(format!("duplicate name {name:?}")));
            }
        }
        seen
    }

    fn token_source(&mut self, t: &TokenSourceConfig, max_size: usize, path: &FieldPath) {
        if !t.bearer && t.cookie.is_none() && t.query.is_none() {
            self.push(
                path.field("token")
                    .error("read the token from somewhere: bearer, cookie or query"),
            );
        }
        for (field, value) in [("cookie", &t.cookie), ("query", &t.query)] {
            if value.as_deref() == Some("") {
                self.push(path.field("token").field(field).error("must not be empty"));
            }
        }
        if !(MIN_MAX_TOKEN_SIZE..=MAX_MAX_TOKEN_SIZE).contains(&max_size) {
            self.push(path.field("max_token_size").error(format!(
                "{max_size} is out of range {MIN_MAX_TOKEN_SIZE}..={MAX_MAX_TOKEN_SIZE}"
            )));
        }
    }

    fn forward_claims(
        &mut self,
        map: &std::collections::BTreeMap<String, String>,
        path: &FieldPath,
    ) {
        for (claim, header) in map {
            let p = path.field("forward_claims").field(claim);
            if claim.is_empty() {
                self.push(p.error("claim name must not be empty"));
            }
            self.header_name(header, &p);
        }
    }

    /// An identity provider's URL and its `tls:` block (only meaningful for `https://`).
    fn idp_url(
        &mut self,
        url: &str,
        tls: Option<&OutboundTlsConfig>,
        url_path: &FieldPath,
        tls_path: &FieldPath,
    ) {
        match url.parse::<http::Uri>() {
            Ok(uri) if uri.host().is_some() && uri.scheme_str() == Some("https") => {}
            Ok(uri) if uri.host().is_some() && uri.scheme_str() == Some("http") => {
                if tls.is_some() {
                    self.push(tls_path.error(format!(
                        "{url:?} is plain http://; tls applies to https:// URLs only"
                    )));
                }
            }
            _ => self.push(url_path.error(format!(
                "{url:?} is not an absolute https:// (or http://) URL"
            ))),
        }
        if let Some(tls) = tls {
            self.errors.extend(validate_outbound_tls(tls, tls_path));
        }
    }

    fn jwt_provider(&mut self, p: &JwtProviderConfig, path: &FieldPath) {
        let mut algorithms = Vec::new();
        if p.algorithms.is_empty() {
            self.push(
                path.field("algorithms")
                    .error("list the algorithms this issuer signs with (e.g. RS256)"),
            );
        }
        for (i, name) in p.algorithms.iter().enumerate() {
            match parse_algorithm(name) {
                Some(a) => algorithms.push(a),
                None => self.push(path.field("algorithms").index(i).error(unknown_alg(name))),
            }
        }
        if p.keys.is_empty() && p.jwks.is_none() {
            self.push(path.error("give the issuer's keys: jwks (a URL) or keys"));
        }
        for (i, k) in p.keys.iter().enumerate() {
            let kp = path.field("keys").index(i);
            if let Some(a) = parse_algorithm(&k.alg)
                && !algorithms.contains(&a)
            {
                self.push(
                    kp.field("alg")
                        .error(format!("{} is not in this provider's algorithms", k.alg)),
                );
            }
            if let Err((field, message)) = static_key(k) {
                self.push(kp.field(field).error(message));
            }
        }
        if let Some(j) = &p.jwks {
            let jp = path.field("jwks");
            self.idp_url(&j.url, j.tls.as_ref(), &jp.field("url"), &jp.field("tls"));
            self.positive(j.refresh_interval, &jp.field("refresh_interval"));
            self.positive(j.min_refetch_interval, &jp.field("min_refetch_interval"));
            self.positive(j.timeout, &jp.field("timeout"));
        }
        if p.leeway > MAX_JWT_LEEWAY {
            self.push(
                path.field("leeway")
                    .error(format!("at most {MAX_JWT_LEEWAY}")),
            );
        }
        for (i, c) in p.required_claims.iter().enumerate() {
            if c.is_empty() {
                self.push(
                    path.field("required_claims")
                        .index(i)
                        .error("must not be empty"),
                );
            }
        }
        if p.consumer_claim.is_empty() {
            self.push(path.field("consumer_claim").error("must not be empty"));
        }
        self.token_source(&p.token, p.max_token_size, path);
        self.forward_claims(&p.forward_claims, path);
    }

    fn introspection(&mut self, p: &IntrospectionConfig, path: &FieldPath) {
        self.idp_url(
            &p.endpoint,
            p.tls.as_ref(),
            &path.field("endpoint"),
            &path.field("tls"),
        );
        if p.client_id.is_empty() || p.client_id.contains(':') {
            self.push(
                path.field("client_id")
                    .error("must be non-empty, without ':'"),
            );
        }
        match (&p.client_secret, &p.client_secret_file) {
            (Some(secret), None) if secret.is_empty() => {
                self.push(path.field("client_secret").error("must not be empty"));
            }
            (None, Some(file)) if file.is_empty() => {
                self.push(path.field("client_secret_file").error("must name a file"));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => self.push(path.error(
                "set exactly one of client_secret (may be \"${ENV_VAR}\") or client_secret_file",
            )),
        }
        self.positive(p.timeout, &path.field("timeout"));
        self.positive(p.max_ttl, &path.field("max_ttl"));
        self.positive(p.inactive_ttl, &path.field("inactive_ttl"));
        if p.consumer_claim.is_empty() {
            self.push(path.field("consumer_claim").error("must not be empty"));
        }
        self.token_source(&p.token, p.max_token_size, path);
        self.forward_claims(&p.forward_claims, path);
    }

    /// Returns every name (username and id) a route may use for `anonymous`.
    fn consumers<'a>(
        &mut self,
        consumers: &'a [ConsumerConfig],
        jwt: &HashSet<&str>,
        introspection: &HashSet<&str>,
        list: &FieldPath,
    ) -> HashSet<&'a str> {
        let mut names = HashSet::new();
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut usernames: HashMap<&str, usize> = HashMap::new();
        let mut key_ids: HashSet<&str> = HashSet::new();
        let mut basic_users: HashSet<&str> = HashSet::new();
        let mut subjects: HashSet<(&str, &str, &str)> = HashSet::new();
        let mut certs: HashSet<(&str, &str)> = HashSet::new();
        for (i, c) in consumers.iter().enumerate() {
            let path = list.index(i);
            let id = c.id.as_deref().unwrap_or(&c.username);
            for (field, value, seen) in [
                ("username", c.username.as_str(), &mut usernames),
                ("id", id, &mut ids),
            ] {
                let fp = path.field(field);
                if !header_safe(value) {
                    self.push(fp.error(format!(
                        "{value:?} must be non-empty printable ASCII (it is sent upstream as a header)"
                    )));
                } else if let Some(first) = seen.insert(value, i) {
                    self.push(fp.error(format!(
                        "duplicate {field} {value:?} (first used at consumers[{first}])"
                    )));
                }
            }
            names.insert(c.username.as_str());
            names.insert(id);
            for (field, values) in [("tags", &c.tags), ("groups", &c.groups)] {
                for (j, value) in values.iter().enumerate() {
                    if value.is_empty() {
                        self.push(path.field(field).index(j).error("must not be empty"));
                    }
                }
            }
            for (j, cred) in c.credentials.iter().enumerate() {
                let cp = path.field("credentials").index(j);
                match cred {
                    CredentialConfig::ApiKey(k) => {
                        let kp = cp.field("api_key");
                        if !api_key_id_ok(&k.id) {
                            self.push(kp.field("id").error(format!(
                                "{:?} must be 1-{MAX_API_KEY_ID_LEN} letters, digits, '-' or '_'",
                                k.id
                            )));
                        } else if !key_ids.insert(&k.id) {
                            self.push(
                                kp.field("id")
                                    .error(format!("duplicate API key id {:?}", k.id)),
                            );
                        }
                        if let Err(message) = check_phc(&k.hash) {
                            self.push(kp.field("hash").error(message));
                        }
                    }
                    CredentialConfig::Basic(b) => {
                        let bp = cp.field("basic");
                        // RFC 7617 §2: the user-id cannot contain a colon.
                        if b.username.is_empty() || b.username.contains(':') {
                            self.push(bp.field("username").error("must be non-empty, without ':'"));
                        } else if !basic_users.insert(&b.username) {
                            self.push(
                                bp.field("username")
                                    .error(format!("duplicate Basic username {:?}", b.username)),
                            );
                        }
                        if let Err(message) = check_phc(&b.password_hash) {
                            self.push(bp.field("password_hash").error(message));
                        }
                    }
                    CredentialConfig::Jwt(s) | CredentialConfig::Oauth2(s) => {
                        let (kind, known) = match cred {
                            CredentialConfig::Jwt(_) => ("jwt", jwt),
                            _ => ("oauth2", introspection),
                        };
                        let sp = cp.field(kind);
                        if !known.contains(s.provider.as_str()) {
                            let section = if kind == "jwt" {
                                "auth.jwt"
                            } else {
                                "auth.introspection"
                            };
                            self.push(sp.field("provider").error(format!(
                                "unknown provider {:?} (not in {section})",
                                s.provider
                            )));
                        }
                        if s.subject.is_empty() {
                            self.push(sp.field("subject").error("must not be empty"));
                        } else if !subjects.insert((kind, &s.provider, &s.subject)) {
                            self.push(sp.field("subject").error(format!(
                                "subject {:?} of provider {:?} already belongs to a consumer",
                                s.subject, s.provider
                            )));
                        }
                    }
                    CredentialConfig::Mtls(m) => {
                        let mp = cp.field("mtls");
                        let set: Vec<(&str, &String)> = [
                            ("subject", &m.subject),
                            ("san", &m.san),
                            ("spiffe_id", &m.spiffe_id),
                        ]
                        .into_iter()
                        .filter_map(|(f, v)| v.as_ref().map(|v| (f, v)))
                        .collect();
                        match set.as_slice() {
                            [(field, value)] => {
                                if value.is_empty() {
                                    self.push(mp.field(field).error("must not be empty"));
                                } else if *field == "spiffe_id" && !value.starts_with("spiffe://") {
                                    self.push(
                                        mp.field(field)
                                            .error(format!("{value:?} is not a spiffe:// ID")),
                                    );
                                } else if !certs.insert((field, value)) {
                                    self.push(
                                        mp.field(field).error(format!(
                                            "{value:?} already belongs to a consumer"
                                        )),
                                    );
                                }
                            }
                            _ => self.push(mp.error("set exactly one of subject, san, spiffe_id")),
                        }
                    }
                }
            }
        }
        names
    }

    fn route_policy(
        &mut self,
        r: &RouteAuthConfig,
        path: &FieldPath,
        jwt: &HashSet<&str>,
        introspection: &HashSet<&str>,
        consumers: &HashSet<&str>,
    ) {
        if r.methods.is_empty() {
            self.push(path.field("methods").error(
                "list at least one method: api_key, basic, mtls, {jwt: NAME}, {introspection: NAME}",
            ));
        }
        let mut seen = Vec::new();
        for (i, m) in r.methods.iter().enumerate() {
            let mp = path.field("methods").index(i);
            if seen.contains(&m) {
                self.push(mp.error("listed twice"));
            }
            seen.push(m);
            match m {
                AuthMethodConfig::Jwt(name) if !jwt.contains(name.as_str()) => {
                    self.push(
                        mp.field("jwt")
                            .error(format!("unknown JWT provider {name:?}")),
                    );
                }
                AuthMethodConfig::Introspection(name) if !introspection.contains(name.as_str()) => {
                    self.push(
                        mp.field("introspection")
                            .error(format!("unknown introspection endpoint {name:?}")),
                    );
                }
                _ => {}
            }
        }
        if let Some(name) = &r.anonymous
            && !consumers.contains(name.as_str())
        {
            self.push(
                path.field("anonymous")
                    .error(format!("unknown consumer {name:?}")),
            );
        }
        for (field, groups) in [("allow", &r.acl.allow), ("deny", &r.acl.deny)] {
            for (i, g) in groups.iter().enumerate() {
                if g.is_empty() {
                    self.push(
                        path.field("acl")
                            .field(field)
                            .index(i)
                            .error("must not be empty"),
                    );
                }
            }
        }
        for (i, s) in r.scopes.iter().enumerate() {
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                self.push(
                    path.field("scopes")
                        .index(i)
                        .error(format!("{s:?} is not a scope token")),
                );
            }
        }
    }
}

fn unknown_alg(name: &str) -> String {
    if name.eq_ignore_ascii_case("none") {
        "unsigned tokens (alg none) are never accepted".to_string()
    } else {
        format!(
            "unsupported algorithm {name:?}; one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
        )
    }
}

fn header_safe(value: &str) -> bool {
    !value.is_empty() && value.trim() == value && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// `[A-Za-z0-9_-]{1,64}`.
pub fn api_key_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_API_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An Argon2id PHC string with parameters a gateway can afford to verify.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc)
        .map_err(|e| format!("not a PHC string ({e}); create one with `meshgate hash-key`"))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "must be an Argon2id hash ($argon2id$…), not {}; create one with `meshgate hash-key`",
            hash.algorithm
        ));
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err("the PHC string has no salt or hash".to_string());
    }
    let params =
        argon2::Params::try_from(&hash).map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_ARGON2_M_COST_KIB
        || params.t_cost() > MAX_ARGON2_T_COST
        || params.p_cost() > MAX_ARGON2_P_COST
    {
        return Err(format!(
            "Argon2 parameters m={} t={} p={} exceed m={MAX_ARGON2_M_COST_KIB} t={MAX_ARGON2_T_COST} p={MAX_ARGON2_P_COST}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// Parse a key written in the config; `Err((field, reason))`.
pub(crate) fn static_key(k: &StaticKeyConfig) -> Result<VerificationKey, (&'static str, String)> {
    let alg: Algorithm = parse_algorithm(&k.alg).ok_or_else(|| ("alg", unknown_alg(&k.alg)))?;
    match (&k.pem, &k.secret) {
        (Some(pem), None) => {
            VerificationKey::from_pem(k.kid.clone(), alg, pem).map_err(|e| ("pem", e.to_string()))
        }
        (None, Some(secret)) => VerificationKey::from_secret(k.kid.clone(), alg, secret.as_bytes())
            .map_err(|e| ("secret", e.to_string())),
        _ => Err((
            "pem",
            "set exactly one of pem (a public key) or secret (HMAC)".to_string(),
        )),
    }
}
