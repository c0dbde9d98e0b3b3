//! Protocol upgrades (WebSocket) passed through: the upstream answers 101 on a dedicated
//! connection, then both sides are spliced byte for byte until either closes. Only the
//! protocols the route allows are offered upstream ([`restrict`]); `h2c` never is.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use meshgate_actors::upstream::InFlight;

use super::body::ProxyBody;
use super::headers;
use super::pool::{ConnPool, PoolSettings};
use crate::error::GatewayError;

/// An HTTP/1.1 request asking to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Keep in `Upgrade` only the protocols `allowed` accepts. `true` when the request still asks
/// for an upgrade; otherwise it goes on as a plain request (RFC 9110 §7.8: a server may ignore
/// `Upgrade`), and hop-by-hop removal drops what is left of it.
pub fn restrict<B>(req: &mut Request<B>, allowed: impl Fn(&str) -> bool) -> bool {
    if !req.headers().contains_key(header::UPGRADE) {
        return false;
    }
    if !is_upgrade_request(req) {
        return false;
    }
    let tokens = |v: &HeaderValue| -> Vec<String> {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    let offered: Vec<String> = req
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(tokens)
        .collect();
    let kept: Vec<&str> = offered
        .iter()
        .map(String::as_str)
        .filter(|t| allowed(t))
        .collect();
    if kept.len() == offered.len() && !kept.is_empty() {
        return true;
    }
    req.headers_mut().remove(header::UPGRADE);
    match HeaderValue::from_str(&kept.join(", ")) {
        Ok(value) if !kept.is_empty() => {
            req.headers_mut().insert(header::UPGRADE, value);
            true
        }
        _ => false,
    }
}

pub async fn forward(
    client_upgrade: OnUpgrade,
    upstream_req: Request<ProxyBody>,
    pool: &Arc<ConnPool>,
    settings: &PoolSettings,
    request_id: &HeaderValue,
    in_flight: InFlight,
) -> Result<Response<ProxyBody>, GatewayError> {
    let mut sender = pool.connect_upgradable(settings).await?;
    let mut response = sender
        .send_request(upstream_req)
        .await
        .map_err(|e| GatewayError::from_upstream(&e))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream declined: relay its answer as is.
        let (mut parts, body) = response.into_parts();
        headers::to_client(&mut parts.headers, parts.version, request_id, false);
        return Ok(Response::from_parts(parts, ProxyBody::Incoming(body)));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let (client, upstream) = tokio::join!(client_upgrade, upstream_upgrade);
        match (client, upstream) {
            (Ok(client), Ok(upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "upgrade did not complete");
            }
        }
    });
    let (mut parts, _) = response.into_parts();
    headers::to_client(&mut parts.headers, parts.version, request_id, true);
    Ok(Response::from_parts(parts, ProxyBody::Empty))
}
