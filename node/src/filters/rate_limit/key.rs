//! Who a request counts as for one policy: its key parts joined into one string (`c=alice`,
//! `ip=203.0.113.7|r=orders`, …). Consumer, credential and header parts fall back to the
//! client IP (the anonymous consumer too), so anonymous traffic is limited per address. Values are escaped so one part can
//! never pose as several, and keys longer than [`MAX_KEY_LEN`] are replaced by a SHA-256
//! digest so that a client cannot make memory or Redis keys grow with long header values.

use std::fmt::Write;
use std::net::IpAddr;

use http::Request;
use meshgate_config::RouteAction;
use meshgate_config::auth::compile::{X_ANONYMOUS_CONSUMER, X_CREDENTIAL_IDENTIFIER};
use meshgate_config::rate_limit::KeyPart;

use crate::server::context::RequestContext;

/// Longer keys are stored as a digest.
pub const MAX_KEY_LEN: usize = 128;

/// The key of `req` under `parts`.
pub fn client_key<B>(parts: &[KeyPart], ctx: &RequestContext, req: &Request<B>) -> String {
    let mut key = String::with_capacity(48);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        push_part(&mut key, part, ctx, req);
    }
    if key.len() > MAX_KEY_LEN {
        return digest(&key);
    }
    key
}

fn push_part<B>(key: &mut String, part: &KeyPart, ctx: &RequestContext, req: &Request<B>) {
    match part {
        // The anonymous consumer counts per address: one budget for every visitor would let
        // one of them starve the rest. Auth marks it (and strips client copies of the mark).
        KeyPart::Consumer => match &ctx.consumer {
            Some(consumer) if !req.headers().contains_key(X_ANONYMOUS_CONSUMER) => {
                push_value(key, "c=", consumer.id.as_bytes())
            }
            _ => push_ip(key, ctx.client_ip),
        },
        // Auth sets this header (and strips client copies) when a credential identified the
        // consumer; the anonymous consumer has none.
        KeyPart::Credential => match req.headers().get(X_CREDENTIAL_IDENTIFIER) {
            Some(id) if ctx.consumer.is_some() => push_value(key, "k=", id.as_bytes()),
            _ => push_ip(key, ctx.client_ip),
        },
        KeyPart::ClientIp => push_ip(key, ctx.client_ip),
        KeyPart::Route => push_value(key, "r=", ctx.route_name().as_bytes()),
        KeyPart::Service => {
            let upstream = match ctx.route.as_ref().map(|r| &r.action) {
                Some(RouteAction::Proxy(p)) => &*p.upstream_name,
                _ => "-",
            };
            push_value(key, "s=", upstream.as_bytes());
        }
        KeyPart::Path => {
            // The path routing saw: `/a/../b` and `/b` are one path.
            let raw = req.uri().path();
            match crate::router::normalize(raw) {
                Ok(path) => push_value(key, "p=", path.as_bytes()),
                Err(_) => push_value(key, "p=", raw.as_bytes()),
            }
        }
        KeyPart::Header(name) => match req.headers().get(name) {
            Some(value) => push_value(key, "h=", value.as_bytes()),
            None => push_ip(key, ctx.client_ip),
        },
    }
}

fn push_ip(key: &mut String, ip: IpAddr) {
    let _ = write!(key, "ip={ip}");
}

/// `tag` then `value` with `%`, `|` and anything outside visible ASCII percent-encoded.
fn push_value(key: &mut String, tag: &str, value: &[u8]) {
    key.push_str(tag);
    for &b in value {
        if b.is_ascii_graphic() && b != b'%' && b != b'|' {
            key.push(char::from(b));
        } else {
            let _ = write!(key, "%{b:02X}");
        }
    }
}

/// `#` and the first 128 bits of the key's SHA-256, in hex.
fn digest(key: &str) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = String::with_capacity(33);
    out.push('#');
    for b in &hash.as_ref()[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_pose_as_several_parts() {
        let mut a = String::new();
        push_value(&mut a, "h=", b"x|ip=10.0.0.1");
        assert_eq!(a, "h=x%7Cip=10.0.0.1");
        let mut b = String::new();
        push_value(&mut b, "h=", "é 50%".as_bytes());
        assert_eq!(b, "h=%C3%A9%2050%25");
    }

    #[test]
    fn long_keys_become_a_digest() {
        let long = "h=".to_string() + &"a".repeat(500);
        let d = digest(&long);
        assert_eq!(d.len(), 33);
        assert!(d.starts_with('#'));
        assert_ne!(d, digest(&(long + "b")));
    }
}
