//! The HTTP client for one Consul agent: builds the requests of docs/consul.md §2–4 (§6 lives in
//! `connect.rs`), sends them over hyper with a deadline, and maps Consul's plain-text error
//! answers to `DiscoveryError`.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::ConsulConfig;
use super::registration::CheckStatus;
use super::wire::{RegisterBody, ServiceEntry};
use crate::error::{Backend, DiscoveryError, error_chain};

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// A path segment may also carry `:` and `@` (RFC 3986 §3.3 `pchar`), as in `service:web-1`.
const PATH_SEGMENT: &AsciiSet = &COMPONENT.remove(b':').remove(b'@');

/// A health answer is a list of instances; a catalog of thousands fits well under this.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Consul clamps `wait` at 10 minutes (§4).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(600);

/// An HTTP client for one Consul agent. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct ConsulClient {
    http: Client<HttpConnector, Full<Bytes>>,
    authority: String,
    token: Option<HeaderValue>,
    pub(super) request_timeout: Duration,
}

impl std::fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulClient")
            .field("authority", &self.authority)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The answer of a health query: the entries and the `X-Consul-Index` to block on next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthAnswer {
    pub entries: Vec<ServiceEntry>,
    pub index: u64,
    pub known_leader: bool,
}

/// What a health query asks for (everything except the blocking parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthQuery {
    pub service: String,
    pub datacenter: Option<String>,
    pub tags: Vec<String>,
    pub passing_only: bool,
}

impl ConsulClient {
    pub fn new(config: &ConsulConfig) -> Result<Self, DiscoveryError> {
        let authority = parse_authority(&config.address)?;
        let token = match config.token.as_deref() {
            None | Some("") => None,
            Some(token) => {
                let mut value = HeaderValue::from_str(token).map_err(|_| {
                    DiscoveryError::config(
                        Backend::Consul,
                        "the ACL token is not a valid header value",
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            http,
            authority,
            token,
            request_timeout: config.request_timeout,
        })
    }

    /// The agent's `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `GET /v1/health/service/:service`, blocking when `index > 0` (§4).
    pub async fn health_service(
        &self,
        query: &HealthQuery,
        index: u64,
        wait: Duration,
    ) -> Result<HealthAnswer, DiscoveryError> {
        let wait = wait.min(MAX_WAIT);
        let path = health_path(query, index, wait);
        // The agent may hold the request for `wait` plus up to wait/16 of jitter (§4).
        let deadline = if index > 0 {
            wait + wait / 16 + self.request_timeout
        } else {
            self.request_timeout
        };
        let (status, headers, body) = self.send(Method::GET, &path, None, deadline).await?;
        if status != StatusCode::OK {
            return Err(self.status_error(status, &body));
        }
        let index =
            consul_index(&headers).ok_or_else(|| self.invalid("no valid X-Consul-Index header"))?;
        let entries: Vec<ServiceEntry> = serde_json::from_slice(&body)
            .map_err(|err| self.invalid(format!("health entries: {err}")))?;
        let known_leader = headers
            .get("x-consul-knownleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        Ok(HealthAnswer {
            entries,
            index,
            known_leader,
        })
    }

    /// `PUT /v1/agent/service/register` (§2).
    pub async fn register(&self, body: &RegisterBody) -> Result<(), DiscoveryError> {
        let json = serde_json::to_vec(body).map_err(|err| {
            DiscoveryError::config(Backend::Consul, format!("registration body: {err}"))
        })?;
        let (status, _, answer) = self
            .send(
                Method::PUT,
                "/v1/agent/service/register",
                Some(json),
                self.request_timeout,
            )
            .await?;
        match status {
            StatusCode::OK => Ok(()),
            status => Err(self.status_error(status, &answer)),
        }
    }

    /// `PUT /v1/agent/service/deregister/:id`. An unknown ID is success: the docs call it a
    /// no-op, the agent answers 404 (§2), and either way the service is gone.
    pub async fn deregister(&self, service_id: &str) -> Result<(), DiscoveryError> {
        let path = format!("/v1/agent/service/deregister/{}", segment(service_id));
        let (status, _, body) = self
            .send(Method::PUT, &path, None, self.request_timeout)
            .await?;
        match status {
            StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => {
                tracing::debug!(service_id, answer = %String::from_utf8_lossy(&body), "consul: service already deregistered");
                Ok(())
            }
            status => Err(self.status_error(status, &body)),
        }
    }

    /// `PUT /v1/agent/check/pass|warn|fail/:check_id?note=…` (§3). An unknown check answers
    /// 404, or 500 "does not have associated TTL" on older agents: both become
    /// [`DiscoveryError::NotRegistered`], meaning "register the service again".
    pub async fn update_ttl_check(
        &self,
        check_id: &str,
        status: CheckStatus,
        note: &str,
    ) -> Result<(), DiscoveryError> {
        let mut path = format!("/v1/agent/check/{}/{}", status.verb(), segment(check_id));
        if !note.is_empty() {
            path.push_str("?note=");
            path.push_str(&component(note));
        }
        let (code, _, body) = self
            .send(Method::PUT, &path, None, self.request_timeout)
            .await?;
        let text = String::from_utf8_lossy(&body);
        match code {
            StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => Err(self.not_registered(check_id, &text)),
            StatusCode::INTERNAL_SERVER_ERROR if text.contains("does not have associated TTL") => {
                Err(self.not_registered(check_id, &text))
            }
            code => Err(self.status_error(code, &body)),
        }
    }

    pub(super) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        deadline: Duration,
    ) -> Result<(StatusCode, HeaderMap, Bytes), DiscoveryError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.authority, path_and_query));
        if let Some(token) = &self.token {
            builder = builder.header("X-Consul-Token", token.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|err| {
                DiscoveryError::config(Backend::Consul, format!("request {path_and_query}: {err}"))
            })?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|err| self.unreachable(&err))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|err| self.unreachable(&*err))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| DiscoveryError::Timeout {
                backend: Backend::Consul,
                target: self.authority.clone(),
                after: deadline,
            })?
    }

    pub(super) fn status_error(&self, status: StatusCode, body: &[u8]) -> DiscoveryError {
        let body = String::from_utf8_lossy(body).trim().to_owned();
        let target = self.authority.clone();
        let code = status.as_u16();
        // 429 is Consul's rate limiter (agent/limits): back off and retry.
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            DiscoveryError::Server {
                backend: Backend::Consul,
                target,
                status: code,
                body,
            }
        } else {
            DiscoveryError::Rejected {
                backend: Backend::Consul,
                target,
                status: code,
                body,
            }
        }
    }

    fn not_registered(&self, check_id: &str, body: &str) -> DiscoveryError {
        DiscoveryError::NotRegistered {
            backend: Backend::Consul,
            what: format!("check {check_id:?}"),
            body: body.trim().to_owned(),
        }
    }

    fn unreachable(&self, err: &(dyn StdError + 'static)) -> DiscoveryError {
        DiscoveryError::Unreachable {
            backend: Backend::Consul,
            target: self.authority.clone(),
            reason: error_chain(err),
        }
    }

    pub(super) fn invalid(&self, reason: impl Into<String>) -> DiscoveryError {
        DiscoveryError::InvalidResponse {
            backend: Backend::Consul,
            target: self.authority.clone(),
            reason: reason.into(),
        }
    }
}

/// `host:port` from `http://host:port[/]` or `host:port`. HTTPS agents are not supported yet.
pub(crate) fn parse_authority(address: &str) -> Result<String, DiscoveryError> {
    let rest = match address.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(DiscoveryError::config(
                Backend::Consul,
                format!("agent address {address:?}: scheme {scheme:?} is not supported (use http)"),
            ));
        }
        None => address,
    };
    let authority = rest.trim_end_matches('/');
    match authority.parse::<http::uri::Authority>() {
        Ok(parsed)
            if !authority.is_empty() && !authority.contains('/') && parsed.port().is_some() =>
        {
            Ok(authority.to_owned())
        }
        _ => Err(DiscoveryError::config(
            Backend::Consul,
            format!("agent address {address:?}: expected http://host:port"),
        )),
    }
}

pub(crate) fn health_path(query: &HealthQuery, index: u64, wait: Duration) -> String {
    let mut path = format!("/v1/health/service/{}", segment(&query.service));
    let mut params: Vec<String> = Vec::new();
    if query.passing_only {
        params.push("passing".to_owned());
    }
    if let Some(dc) = query.datacenter.as_deref().filter(|dc| !dc.is_empty()) {
        params.push(format!("dc={}", component(dc)));
    }
    if let Some(filter) = tag_filter(&query.tags) {
        params.push(format!("filter={}", component(&filter)));
    }
    if index > 0 {
        params.push(format!("index={index}"));
        params.push(format!("wait={}", super::go_duration(wait)));
    }
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    path
}

/// `"a" in Service.Tags and "b" in Service.Tags`: the `filter` form that replaces the
/// deprecated `tag` parameter (api-docs/health.mdx), keeping its "all tags" meaning.
pub(crate) fn tag_filter(tags: &[String]) -> Option<String> {
    if tags.is_empty() {
        return None;
    }
    let clauses: Vec<String> = tags
        .iter()
        .map(|tag| {
            let quoted = tag.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" in Service.Tags")
        })
        .collect();
    Some(clauses.join(" and "))
}

/// `X-Consul-Index` as a number, if present and valid.
pub(super) fn consul_index(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-consul-index")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn segment(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

fn component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}
