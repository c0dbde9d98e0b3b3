//! Direct responses: a configured status, headers and body, or `echo` — the request itself as
//! JSON (Kong's request-termination echo), handy for testing routing.

use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use meshgate_config::RouteMatch;
use meshgate_config::compile::RespondSpec;
use serde_json::{Map, Value, json};

use super::ConnInfo;
use crate::error::error_response;
use crate::proxy::body::ProxyBody;

/// Echo returns at most this much of the request body.
const ECHO_BODY_LIMIT: usize = 1024 * 1024;

pub async fn respond(
    spec: &RespondSpec,
    matched: &RouteMatch,
    req: Request<Incoming>,
    path: &str,
    conn: &ConnInfo,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    if spec.echo {
        return echo(matched, req, path, conn, request_id).await;
    }
    let mut response = Response::new(ProxyBody::full(spec.body.clone()));
    *response.status_mut() = spec.status;
    response.headers_mut().extend(spec.headers.clone());
    response
}

async fn echo(
    matched: &RouteMatch,
    req: Request<Incoming>,
    path: &str,
    conn: &ConnInfo,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, ECHO_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error_response(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large to echo",
                request_id,
            );
        }
    };
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                headers.insert(name.as_str().to_string(), value);
            }
        }
    }
    let params: Map<String, Value> = matched
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    let document = json!({
        "route": &*matched.route.name,
        "listener": &*conn.listener,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "path": path,
        "query": parts.uri.query(),
        "http_version": format!("{:?}", parts.version),
        "client_address": conn.peer.to_string(),
        "headers": headers,
        "params": params,
        "body": String::from_utf8_lossy(&body),
        "request_id": request_id.to_str().unwrap_or(""),
    });
    let mut text = document.to_string();
    text.push('\n');
    let mut response = Response::new(ProxyBody::full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
