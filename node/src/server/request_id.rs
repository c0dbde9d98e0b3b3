//! `X-Request-ID`: keep a sane one from the client, otherwise mint a UUID; echoed on every
//! response and forwarded upstream.

use http::{HeaderMap, HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longer client-supplied ids are replaced (they end up in logs).
const MAX_LEN: usize = 128;

/// The client's id when it is 1–128 characters of `[A-Za-z0-9._:-]`, else a fresh UUID v4.
pub fn take_or_generate(headers: &HeaderMap) -> HeaderValue {
    if let Some(value) = headers.get(&HEADER)
        && is_sane(value.as_bytes())
    {
        return value.clone();
    }
    generate()
}

pub fn generate() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_static("abc-123_x:y.z"));
        assert_eq!(take_or_generate(&h), "abc-123_x:y.z");
        h.insert(HEADER, HeaderValue::from_static("has space"));
        assert_eq!(take_or_generate(&h).len(), 36);
        h.insert(HEADER, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(take_or_generate(&h).len(), 36);
        assert_ne!(generate(), generate());
    }
}
