//! Reading credentials out of a request (Authorization schemes, API key header or query
//! parameter, token cookie) and removing them before the request goes upstream.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, COOKIE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use meshgate_config::auth::{AuthMethod, CompiledAuth, RoutePolicy, TokenSource};

/// What one credential location held.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<T> {
    Absent,
    /// Present but unusable (several values, bad encoding): counts as a failed credential.
    Malformed,
    Value(T),
}

/// The credentials of an `Authorization: <scheme> <credentials>` header, if the scheme matches
/// (auth-scheme is case-insensitive, RFC 9110 §11.1).
fn authorization<'r>(headers: &'r HeaderMap, scheme: &str) -> Found<&'r str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(AUTHORIZATION) {
            Found::Malformed
        } else {
            Found::Absent
        };
    };
    let Ok(text) = value.to_str() else {
        return Found::Malformed;
    };
    match text.split_once(' ') {
        Some((s, rest)) if s.eq_ignore_ascii_case(scheme) => match rest.trim() {
            "" => Found::Malformed,
            credentials => Found::Value(credentials),
        },
        _ => Found::Absent,
    }
}

/// A bearer token from the configured places, in order: header, cookie, query parameter.
pub fn bearer_token<'r, B>(req: &'r Request<B>, source: &TokenSource) -> Found<Cow<'r, str>> {
    if source.bearer {
        match authorization(req.headers(), "Bearer") {
            Found::Absent => {}
            Found::Malformed => return Found::Malformed,
            Found::Value(token) => return Found::Value(Cow::Borrowed(token)),
        }
    }
    if let Some(name) = &source.cookie
        && let Some(value) = cookie(req.headers(), name)
    {
        return Found::Value(Cow::Borrowed(value));
    }
    if let Some(name) = &source.query
        && let Some(value) = query_param(req.uri(), name)
    {
        return Found::Value(Cow::Owned(value));
    }
    Found::Absent
}

/// An API key from the header (exactly one value) or the query parameter.
pub fn api_key<'r, B>(req: &'r Request<B>, auth: &CompiledAuth) -> Found<Cow<'r, str>> {
    let mut values = req.headers().get_all(&auth.api_key_header).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => {
            return match v.to_str() {
                Ok(text) if !text.is_empty() => Found::Value(Cow::Borrowed(text)),
                _ => Found::Malformed,
            };
        }
        (Some(_), Some(_)) => return Found::Malformed,
        (None, _) => {}
    }
    match &auth.api_key_query {
        Some(name) => match query_param(req.uri(), name) {
            Some(v) if !v.is_empty() => Found::Value(Cow::Owned(v)),
            Some(_) => Found::Malformed,
            None => Found::Absent,
        },
        None => Found::Absent,
    }
}

/// `Authorization: Basic base64(user-id ":" password)` (RFC 7617 §2).
pub fn basic<B>(req: &Request<B>) -> Found<(String, String)> {
    let encoded = match authorization(req.headers(), "Basic") {
        Found::Absent => return Found::Absent,
        Found::Malformed => return Found::Malformed,
        Found::Value(v) => v,
    };
    let Ok(decoded) = STANDARD.decode(encoded) else {
        return Found::Malformed;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return Found::Malformed;
    };
    match text.split_once(':') {
        Some((user, password)) => Found::Value((user.to_string(), password.to_string())),
        None => Found::Malformed,
    }
}

/// The value of cookie `name` (RFC 6265 §5.4 `Cookie` header syntax).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Remove every credential the route's methods read, unless it forwards them.
pub fn remove_credentials<B>(req: &mut Request<B>, policy: &RoutePolicy, auth: &CompiledAuth) {
    let mut query_names: Vec<&str> = Vec::new();
    let mut cookie_names: Vec<&str> = Vec::new();
    let mut authorization = false;
    for method in &policy.methods {
        let source = match method {
            AuthMethod::ApiKey => {
                req.headers_mut().remove(&auth.api_key_header);
                query_names.extend(auth.api_key_query.as_deref());
                continue;
            }
            AuthMethod::Basic => {
                authorization = true;
                continue;
            }
            AuthMethod::Mtls => continue,
            AuthMethod::Jwt(spec) => &spec.token,
            AuthMethod::Introspection(spec) => &spec.token,
        };
        authorization |= source.bearer;
        cookie_names.extend(source.cookie.as_deref());
        query_names.extend(source.query.as_deref());
    }
    if authorization {
        req.headers_mut().remove(AUTHORIZATION);
    }
    if !cookie_names.is_empty() {
        remove_cookies(req.headers_mut(), &cookie_names);
    }
    if !query_names.is_empty()
        && let Some(uri) = without_query_params(req.uri(), &query_names)
    {
        *req.uri_mut() = uri;
    }
}

fn remove_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && !names.contains(&name)
        })
        .map(str::to_string)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, v);
    }
}

/// The URI without the named query parameters; `None` when none was present.
fn without_query_params(uri: &Uri, names: &[&str]) -> Option<Uri> {
    let query = uri.query()?;
    let pairs: Vec<&str> = query.split('&').collect();
    let kept: Vec<&str> = pairs
        .iter()
        .copied()
        .filter(|pair| {
            let raw = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let name: String = form_urlencoded::parse(raw.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            !names.contains(&name.as_str())
        })
        .collect();
    if kept.len() == pairs.len() {
        return None;
    }
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    Uri::from_parts(parts).ok()
}

/// Remove client-sent identity headers (on every route).
pub fn strip_identity_headers(headers: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        headers.remove(name);
    }
}
