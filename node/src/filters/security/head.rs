//! Request-head validation before routing: the one authority a request is routed and forwarded
//! on (RFC 9112 §3.2 and §3.2.2, RFC 9113 §8.3.1), and header field names with underscores.
//! Byte scans over what hyper parsed; nothing is allocated unless a field must be removed.

use std::net::Ipv6Addr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};
use meshgate_config::security::model::UnderscoreAction;

/// Why a request head was refused (400, with this as the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("missing Host header field")]
    MissingHost,
    #[error("more than one Host header field")]
    DuplicateHost,
    #[error("invalid Host header field")]
    InvalidHost,
    #[error("invalid authority in the request target")]
    InvalidAuthority,
    #[error("Host header field does not match the request target's authority")]
    HostMismatch,
    #[error("header field name with an underscore")]
    Underscore,
}

/// The Host rules every request meets, whatever the listener's security settings: they decide
/// which authority routing and forwarding both use (the request target's when it has one).
///
/// - HTTP/1.1 needs exactly one Host field with a valid value (RFC 9112 §3.2: 400 otherwise);
///   HTTP/1.0 and HTTP/2 may omit it, never repeat it.
/// - An authority in the target (absolute form, HTTP/2 `:authority`) carries no userinfo
///   (RFC 9110 §4.2.4) and is valid host[:port].
/// - When both are present they must name the same host and port (RFC 9113 §8.3.1 calls the
///   opposite malformed; on HTTP/1.1, RFC 9112 §3.2.2 has an origin server ignore the Host, but
///   a backend behind us may not: refusing is the only answer that cannot be read two ways).
pub fn check_authority<B>(req: &Request<B>) -> Result<(), HeadError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HeadError::DuplicateHost);
    }
    match host {
        None if req.version() == Version::HTTP_11 => return Err(HeadError::MissingHost),
        Some(h) if !valid_authority(h.as_bytes()) => return Err(HeadError::InvalidHost),
        _ => {}
    }
    if let Some(authority) = req.uri().authority() {
        let target = authority.as_str().as_bytes();
        if !valid_authority(target) || target.is_empty() {
            return Err(HeadError::InvalidAuthority);
        }
        if let Some(h) = host
            && !same_authority(target, h.as_bytes())
        {
            return Err(HeadError::HostMismatch);
        }
    }
    Ok(())
}

/// Apply the listener's rule on header names with `_`. `Ok(n)`: `n` fields were removed.
pub fn underscores(headers: &mut HeaderMap, action: UnderscoreAction) -> Result<usize, HeadError> {
    if action == UnderscoreAction::Allow {
        return Ok(0);
    }
    // The common case: one byte search per distinct name, no allocation.
    if !headers.keys().any(has_underscore) {
        return Ok(0);
    }
    if action == UnderscoreAction::Reject {
        return Err(HeadError::Underscore);
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| has_underscore(n))
        .cloned()
        .collect();
    for name in &names {
        headers.remove(name);
    }
    Ok(names.len())
}

fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().as_bytes().contains(&b'_')
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2), stricter than RFC 3986 on the name: letters,
/// digits, `-`, `.`, `_` and `~` (DNS and internal names), or an IPv6 literal in brackets. No
/// userinfo, no percent-encoding, no list (`a, b`), no space. Empty is valid (RFC 9112 §3.2: a
/// target without authority is sent with an empty Host).
pub fn valid_authority(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host, port) = match split_authority(value) {
        Some(parts) => parts,
        None => return false,
    };
    let host_ok = match host.strip_prefix(b"[") {
        Some(literal) => literal
            .strip_suffix(b"]")
            .and_then(|inner| std::str::from_utf8(inner).ok())
            .is_some_and(|inner| inner.parse::<Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        }
    };
    host_ok && port.is_none_or(valid_port)
}

/// `host` and the port text after `:` (`None` without a colon).
fn split_authority(value: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if value.starts_with(b"[") {
        let close = value.iter().position(|&b| b == b']')?;
        let (host, rest) = value.split_at(close + 1);
        return match rest {
            [] => Some((host, None)),
            [b':', port @ ..] => Some((host, Some(port))),
            _ => None,
        };
    }
    match value.iter().position(|&b| b == b':') {
        Some(colon) => Some((&value[..colon], Some(&value[colon + 1..]))),
        None => Some((value, None)),
    }
}

/// RFC 3986 allows an empty port; a present one is a number up to 65535.
fn valid_port(port: &[u8]) -> bool {
    port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && (port.is_empty() || port_number(port) <= u32::from(u16::MAX))
}

fn port_number(port: &[u8]) -> u32 {
    port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
}

/// Same host (case-insensitive, a trailing dot ignored) and, when both name one, the same port.
/// Both are valid authorities.
fn same_authority(target: &[u8], host: &[u8]) -> bool {
    let (Some((a_host, a_port)), Some((b_host, b_port))) =
        (split_authority(target), split_authority(host))
    else {
        return false;
    };
    let trim = |h: &[u8]| -> usize { h.len() - usize::from(h.ends_with(b".")) };
    let same_host = a_host[..trim(a_host)].eq_ignore_ascii_case(&b_host[..trim(b_host)]);
    let port = |p: Option<&[u8]>| p.filter(|p| !p.is_empty()).map(port_number);
    let same_port = match (port(a_port), port(b_port)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    same_host && same_port
}

/// The Host header value forwarded for a request that passed [`check_authority`]: the
/// target's authority when it has one, else the Host field.
pub fn effective_host(parts: &http::request::Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_values() {
        for good in [
            "example.com",
            "Example.COM:8080",
            "127.0.0.1:80",
            "[::1]:443",
            "[2001:db8::1]",
            "svc_a.internal",
            "host:",
            "",
        ] {
            assert!(valid_authority(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "a b",
            "internal.example, localhost",
            "a,b",
            "user@host",
            "host:99999",
            "host:8a",
            ":80",
            "[::1",
            "[zz]:80",
            "[::1]x",
            "h%41st",
            "a/b",
        ] {
            assert!(!valid_authority(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn one_authority_per_request() {
        use HeadError::*;
        let check = |v, uri, hosts: &[&str]| check_authority(&req(v, uri, hosts));
        assert_eq!(check(Version::HTTP_11, "/", &["a.example"]), Ok(()));
        assert_eq!(check(Version::HTTP_11, "/", &[]), Err(MissingHost));
        assert_eq!(check(Version::HTTP_10, "/", &[]), Ok(()));
        assert_eq!(check(Version::HTTP_2, "http://a.example/", &[]), Ok(()));
        assert_eq!(
            check(Version::HTTP_11, "/", &["a", "b"]),
            Err(DuplicateHost)
        );
        assert_eq!(check(Version::HTTP_11, "/", &["a b"]), Err(InvalidHost));
        assert_eq!(
            check(
                Version::HTTP_11,
                "http://public.example/",
                &["internal.example"]
            ),
            Err(HostMismatch)
        );
        assert_eq!(
            check(
                Version::HTTP_2,
                "http://a.example:8080/",
                &["A.Example.:8080"]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                Version::HTTP_2,
                "http://a.example:8080/",
                &["a.example:9090"]
            ),
            Err(HostMismatch)
        );
        assert_eq!(
            check(Version::HTTP_2, "http://a.example/", &["a.example:8080"]),
            Ok(())
        );
        assert_eq!(
            check(Version::HTTP_11, "http://u@a.example/", &["a.example"]),
            Err(InvalidAuthority)
        );
    }

    #[test]
    fn underscored_names_are_dropped_rejected_or_kept() {
        let mut h = HeaderMap::new();
        h.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-ok", HeaderValue::from_static("1"));
        assert_eq!(
            underscores(&mut h.clone(), UnderscoreAction::Reject),
            Err(HeadError::Underscore)
        );
        assert_eq!(underscores(&mut h.clone(), UnderscoreAction::Allow), Ok(0));
        assert_eq!(underscores(&mut h, UnderscoreAction::Drop), Ok(1));
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-ok"));
    }
}
