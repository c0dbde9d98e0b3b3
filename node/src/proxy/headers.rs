//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-For/-Proto/-Host`, `Via` (RFC 9110 §7.6.3) and the request id.

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::server::request_id;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus every
/// header the `Connection` header names. With `upgrading`, `Connection: upgrade` and `Upgrade`
/// stay so that the next hop can switch protocols.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !(t.is_empty() || upgrading && t.eq_ignore_ascii_case("upgrade")))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::TRAILER);
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
    // TE is hop-by-hop, but "trailers" is how gRPC says it can read trailers: keep just that.
    if let Some(te) = headers.remove(header::TE)
        && te.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What the gateway knows about the client side of a request.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide<'a> {
    /// The client's IP as a header value (`ConnInfo::peer_ip`).
    pub ip: &'a HeaderValue,
    pub tls: bool,
    pub version: Version,
    /// The Host the client asked for (header or authority).
    pub host: Option<&'a HeaderValue>,
}

/// Prepare a request's headers for the upstream.
pub fn to_upstream(
    headers: &mut HeaderMap,
    client: &ClientSide<'_>,
    request_id: &HeaderValue,
    upgrading: bool,
) {
    remove_hop_by_hop(headers, upgrading);
    append_forwarded_for(headers, client.ip);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    if let Some(host) = client.host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    append_via(headers, client.version);
    headers.insert(request_id::HEADER, request_id.clone());
}

/// Prepare an upstream response's headers for the client.
pub fn to_client(
    headers: &mut HeaderMap,
    upstream_version: Version,
    request_id: &HeaderValue,
    upgrading: bool,
) {
    remove_hop_by_hop(headers, upgrading);
    append_via(headers, upstream_version);
    headers.insert(request_id::HEADER, request_id.clone());
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => {
            let mut joined = Vec::with_capacity(existing.len() + 2 + ip.len());
            joined.extend_from_slice(existing.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(ip.as_bytes());
            match HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                Ok(v) => v,
                Err(_) => return,
            }
        }
        _ => ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR, value);
}

fn append_via(headers: &mut HeaderMap, version: Version) {
    let ours = match version {
        Version::HTTP_09 => "0.9 meshgate",
        Version::HTTP_10 => "1.0 meshgate",
        Version::HTTP_2 => "2 meshgate",
        Version::HTTP_3 => "3 meshgate",
        _ => "1.1 meshgate",
    };
    match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(existing) => {
            if let Ok(v) = HeaderValue::from_str(&format!("{existing}, {ours}")) {
                headers.insert(header::VIA, v);
            }
        }
        None => {
            headers.insert(header::VIA, HeaderValue::from_static(ours));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-keep", "te"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn upgrade_headers_survive_an_upgrade() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn forwarded_headers_and_via_are_added() {
        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("via", "1.1 edge")]);
        let host = HeaderValue::from_static("api.example.com");
        let client = ClientSide {
            ip: &HeaderValue::from_static("10.0.0.9"),
            tls: false,
            version: Version::HTTP_11,
            host: Some(&host),
        };
        to_upstream(&mut h, &client, &HeaderValue::from_static("rid"), false);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["via"], "1.1 edge, 1.1 meshgate");
        assert_eq!(h["x-request-id"], "rid");
    }
}
