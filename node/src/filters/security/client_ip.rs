//! Who the client is: the connection's peer (the PROXY protocol source when the listener reads
//! one), or — only when that peer is a trusted proxy — the address its forwarding header names.
//! `X-Forwarded-For` is walked right to left past trusted hops (the entries a client wrote
//! itself sit on the left and are never believed); RFC 7239 `Forwarded: for=` the same way.
//!
//! What the upstream then receives (the proxy appends the peer after this): from an untrusted
//! peer, no `X-Forwarded-For` or `Forwarded` of the client's; from a trusted one, the chain from
//! the resolved client rightwards — entries left of it are unverifiable and dropped.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{FORWARDED, HeaderValue};
use meshgate_config::security::SecurityPolicy;
use meshgate_config::security::compile::canonical_ip;
use meshgate_config::security::model::ForwardedHeader;

use crate::proxy::headers::X_FORWARDED_FOR;

/// The client address, and the header fix-up that makes the forwarded chain match it.
pub fn resolve(policy: &SecurityPolicy, peer: IpAddr, headers: &mut HeaderMap) -> IpAddr {
    if policy.trusted_proxies.is_empty() || !policy.trusted_proxies.contains(peer) {
        headers.remove(X_FORWARDED_FOR);
        headers.remove(FORWARDED);
        return peer;
    }
    let hops = hops(policy.forwarded_header, headers);
    let mut client = peer;
    let mut keep_from = hops.len();
    for (i, hop) in hops.iter().enumerate().rev() {
        let Some(ip) = hop else {
            // Garbage: the hop to its right (already trusted) is as far as the chain is known.
            break;
        };
        client = *ip;
        keep_from = i;
        if !policy.trusted_proxies.contains(*ip) {
            break;
        }
    }
    // The upstream sees the believed part of the chain as X-Forwarded-For.
    let chain: Vec<String> = hops[keep_from..]
        .iter()
        .flatten()
        .map(IpAddr::to_string)
        .collect();
    headers.remove(FORWARDED);
    match HeaderValue::from_str(&chain.join(", ")) {
        Ok(v) if !chain.is_empty() => {
            headers.insert(X_FORWARDED_FOR, v);
        }
        _ => {
            headers.remove(X_FORWARDED_FOR);
        }
    }
    canonical_ip(client)
}

/// The addresses a header lists, left to right; `None` for an entry that is not one.
fn hops(which: ForwardedHeader, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = match which {
        ForwardedHeader::XForwardedFor => headers.get_all(X_FORWARDED_FOR),
        ForwardedHeader::Forwarded => headers.get_all(FORWARDED),
    };
    let mut out = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else {
            out.push(None);
            continue;
        };
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            out.push(match which {
                ForwardedHeader::XForwardedFor => parse_node(item),
                ForwardedHeader::Forwarded => forwarded_for(item).and_then(parse_node),
            });
        }
        // A client could otherwise hide a huge header behind a trusted proxy.
        if out.len() > 64 {
            out.drain(..out.len() - 64);
        }
    }
    out
}

/// The `for=` parameter of one RFC 7239 element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
    })
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]:80`, `"[2001:db8::1]"` (RFC 7239 §6 quotes IPv6).
fn parse_node(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse().ok();
    }
    let (host, port) = t.rsplit_once(':')?;
    port.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_config::security::model::SecurityConfig;

    fn policy(trusted: &[&str], header: ForwardedHeader) -> SecurityPolicy {
        let mut c = SecurityConfig::default();
        c.client_ip.trusted_proxies = trusted.iter().map(|s| s.to_string()).collect();
        c.client_ip.header = header;
        SecurityPolicy::new(&c, std::time::Duration::from_secs(10))
    }

    fn run(p: &SecurityPolicy, peer: &str, name: &str, value: &str) -> (IpAddr, Option<String>) {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        let ip = resolve(p, peer.parse().unwrap(), &mut h);
        (
            ip,
            h.get(X_FORWARDED_FOR)
                .map(|v| v.to_str().unwrap().to_string()),
        )
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_client() {
        let p = policy(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let (ip, xff) = run(&p, "198.51.100.7", "x-forwarded-for", "1.2.3.4");
        assert_eq!(ip.to_string(), "198.51.100.7");
        assert_eq!(xff, None, "the spoofed header is dropped");
        let none = policy(&[], ForwardedHeader::XForwardedFor);
        assert_eq!(
            run(&none, "10.0.0.1", "x-forwarded-for", "1.2.3.4")
                .0
                .to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let p = policy(
            &["10.0.0.0/8", "2001:db8::/32"],
            ForwardedHeader::XForwardedFor,
        );
        let (ip, xff) = run(
            &p,
            "10.0.0.2",
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.5, 10.1.1.1",
        );
        assert_eq!(ip.to_string(), "203.0.113.5");
        assert_eq!(
            xff.as_deref(),
            Some("203.0.113.5, 10.1.1.1"),
            "the spoofed left part goes"
        );
        let (ip, _) = run(&p, "10.0.0.2", "x-forwarded-for", "10.3.3.3, 10.1.1.1");
        assert_eq!(ip.to_string(), "10.3.3.3", "all trusted: the leftmost");
        let (ip, _) = run(
            &p,
            "10.0.0.2",
            "x-forwarded-for",
            "[2001:db9::5]:443, 2001:db8::1",
        );
        assert_eq!(ip.to_string(), "2001:db9::5");
        let (ip, xff) = run(
            &p,
            "10.0.0.2",
            "x-forwarded-for",
            "203.0.113.5, garbage, 10.1.1.1",
        );
        assert_eq!(ip.to_string(), "10.1.1.1", "garbage stops the walk");
        assert_eq!(xff.as_deref(), Some("10.1.1.1"));
        let (ip, xff) = run(&p, "10.0.0.2", "x-forwarded-for", "");
        assert_eq!((ip.to_string(), xff), ("10.0.0.2".to_string(), None));
    }

    #[test]
    fn rfc_7239_forwarded_is_read_when_configured() {
        let p = policy(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let (ip, xff) = run(
            &p,
            "10.0.0.2",
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, for=10.9.9.9;by=10.0.0.2",
        );
        assert_eq!(ip.to_string(), "2001:db8::17");
        assert_eq!(xff.as_deref(), Some("2001:db8::17, 10.9.9.9"));
    }
}
