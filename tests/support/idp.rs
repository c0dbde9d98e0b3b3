//! A test identity provider on 127.0.0.1:0 that follows the RFCs the gateway relies on: a JWKS
//! endpoint (RFC 7517, `GET /jwks`) whose key set a test can replace, and an OAuth 2.0 token
//! introspection endpoint (RFC 7662, `POST /introspect`, client authentication with HTTP Basic)
//! answering from a table of tokens, over plain HTTP or HTTPS ([`TestIdp::start_https`]). Both
//! count their calls so tests can assert caching and rate limits; [`SigningKey`] loads the
//! fixture keys and signs tokens.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// The client credentials the introspection endpoint accepts.
pub const INTROSPECTION_CLIENT: (&str, &str) = ("gateway", "s3cret:with/odd chars");

struct IdpState {
    jwks: watch::Sender<Value>,
    tokens: watch::Sender<HashMap<String, Value>>,
    jwks_fetches: AtomicUsize,
    introspection_calls: AtomicUsize,
    changed: Notify,
    /// TLS handshakes that failed (wrong CA, expired certificate, …), as the server saw them.
    tls_failures: AtomicUsize,
}

/// A running test IdP.
pub struct TestIdp {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIdp {
    /// Plain HTTP.
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// HTTPS with this server config (see `tls::server_config`).
    pub async fn start_https(config: rustls::ServerConfig) -> Self {
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IdpState {
            jwks: watch::Sender::new(json!({"keys": []})),
            tokens: watch::Sender::new(HashMap::new()),
            jwks_fetches: AtomicUsize::new(0),
            introspection_calls: AtomicUsize::new(0),
            changed: Notify::new(),
            tls_failures: AtomicUsize::new(0),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = serving.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = {
                        let state = state.clone();
                        service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(handle(&state, req).await) }
                        })
                    };
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                            Err(_) => {
                                state.tls_failures.fetch_add(1, Ordering::SeqCst);
                                state.changed.notify_waiters();
                            }
                        },
                    }
                });
            }
        });
        Self {
            addr,
            scheme,
            state,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn jwks_url(&self) -> String {
        format!("{}://{}/jwks", self.scheme, self.addr)
    }

    pub fn introspection_url(&self) -> String {
        format!("{}://{}/introspect", self.scheme, self.addr)
    }

    /// TLS handshakes the server refused or that the client aborted.
    pub fn tls_failures(&self) -> usize {
        self.state.tls_failures.load(Ordering::SeqCst)
    }

    /// Publish these JWKs as the key set.
    pub fn set_keys(&self, keys: Vec<Value>) {
        self.state.jwks.send_replace(json!({ "keys": keys }));
    }

    /// What introspecting `token` answers (without `active`, `{"active": false}` is implied for
    /// unknown tokens).
    pub fn set_token(&self, token: &str, answer: Value) {
        self.state.tokens.send_modify(|t| {
            t.insert(token.to_string(), answer);
        });
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn introspection_calls(&self) -> usize {
        self.state.introspection_calls.load(Ordering::SeqCst)
    }

    /// Wait (bounded by the harness patience) until at least `n` JWKS fetches happened.
    pub async fn wait_for_jwks_fetches(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.state.changed.notified();
                if self.jwks_fetches() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(crate::harness::PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("{} JWKS fetches, expected {n}", self.jwks_fetches()));
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

async fn handle(state: &IdpState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/jwks") => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            state.changed.notify_waiters();
            json_response(StatusCode::OK, &state.jwks.borrow())
        }
        ("POST", "/introspect") => introspect(state, req).await,
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}

/// RFC 7662 §2.1: form-encoded `token`, client authenticated (here with HTTP Basic, the
/// client id and secret form-encoded first, RFC 6749 §2.3.1).
async fn introspect(state: &IdpState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    state.introspection_calls.fetch_add(1, Ordering::SeqCst);
    state.changed.notify_waiters();
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            enc(INTROSPECTION_CLIENT.0),
            enc(INTROSPECTION_CLIENT.1)
        ))
    );
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v == expected.as_str());
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-www-form-urlencoded");
    if !authorized {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client"}),
        );
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let (Some(token), true) = (token, form) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request"}),
        );
    };
    let answer = state
        .tokens
        .borrow()
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    json_response(StatusCode::OK, &answer)
}

/// A fixture signing key (tests/fixtures/jwt) and its public JWK.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    /// The public key PEM (for static `keys:` in configs).
    pub public_pem: String,
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl SigningKey {
    /// `file` is the fixture name without `.key.pem` (`rsa-a`, `ec-p256`, `ed25519`).
    pub fn load(file: &str, alg: Algorithm, kid: &str) -> Self {
        let private = fixture(&format!("{file}.key.pem"));
        let encoding = match file {
            f if f.starts_with("rsa") => EncodingKey::from_rsa_pem(private.as_bytes()),
            f if f.starts_with("ec") => EncodingKey::from_ec_pem(private.as_bytes()),
            _ => EncodingKey::from_ed_pem(private.as_bytes()),
        }
        .unwrap();
        Self {
            alg,
            kid: kid.to_string(),
            encoding,
            public_pem: fixture(&format!("{file}.pub.pem")),
        }
    }

    /// The public JWK with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Value {
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        let mut value = serde_json::to_value(jwk).unwrap();
        let map = value.as_object_mut().unwrap();
        map.insert("kid".into(), json!(self.kid));
        map.insert("use".into(), json!("sig"));
        map.insert("alg".into(), serde_json::to_value(self.alg).unwrap());
        value
    }

    /// Sign `claims` with this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A cheap Argon2id PHC string (m=64 KiB, t=1): fast in tests, same verification path.
pub fn cheap_phc(secret: &str) -> String {
    use argon2::{Algorithm as A2, Argon2, Params, PasswordHasher, Version};
    Argon2::new(
        A2::Argon2id,
        Version::V0x13,
        Params::new(64, 1, 1, None).unwrap(),
    )
    .hash_password(secret.as_bytes())
    .unwrap()
    .to_string()
}
