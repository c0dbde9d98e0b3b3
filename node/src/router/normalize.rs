//! Path normalisation before routing (and forwarding): percent-decode once, merge `//`,
//! remove dot segments (RFC 3986 §5.2.4), re-encode what a path may not carry raw. Rejects
//! `\` and NUL so that `/public/../admin` or `/public%2F..%2Fadmin` cannot slip past a rule on
//! `/admin`: routing and the upstream see the same canonical path.

use std::borrow::Cow;

/// Why a path was refused (the client gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path contains a backslash")]
    Backslash,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path has an invalid percent-encoding")]
    BadEncoding,
    #[error("path is not valid UTF-8 once decoded")]
    NotUtf8,
}

/// The canonical form of `raw` (a request path without query). Borrowed when already canonical.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode(raw.as_bytes())?;
    if decoded.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    let clean = remove_dot_segments(&decoded);
    Ok(Cow::Owned(encode(&clean)))
}

/// Fast path: nothing to decode, no `//`, no dot segment, no byte needing encoding.
fn is_canonical(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in path.iter().enumerate() {
        if b == b'%' || b == b'\\' || !is_path_byte(b) {
            return false;
        }
        if b == b'/' && prev == b'/' {
            return false;
        }
        if b == b'.' && prev == b'/' {
            // "/." starts a dot segment when followed by '/', end, or ".".
            match path.get(i + 1) {
                None | Some(b'/') => return false,
                Some(b'.') if matches!(path.get(i + 2), None | Some(b'/')) => return false,
                _ => {}
            }
        }
        prev = b;
    }
    true
}

/// RFC 3986 pchar plus '/': unreserved, sub-delims, ':' and '@'.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

fn percent_decode(input: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            let hex = input.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
            let hi = (hex[0] as char)
                .to_digit(16)
                .ok_or(PathError::BadEncoding)?;
            let lo = (hex[1] as char)
                .to_digit(16)
                .ok_or(PathError::BadEncoding)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path, with empty segments (`//`) merged first.
fn remove_dot_segments(path: &str) -> String {
    let trailing_slash = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(path.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if result.is_empty() || trailing_slash {
        result.push('/');
    }
    result
}

fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if is_path_byte(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(|c| c.into_owned())
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        assert!(matches!(normalize("/api/v1/users"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a.b/.c/..d"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dot_segments_and_double_slashes_go() {
        assert_eq!(n("/public/../admin").unwrap(), "/admin");
        assert_eq!(n("/a/./b/../../c").unwrap(), "/c");
        assert_eq!(n("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(n("//admin//x").unwrap(), "/admin/x");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/.").unwrap(), "/");
    }

    #[test]
    fn percent_decoding_happens_once() {
        assert_eq!(n("/public%2F..%2Fadmin").unwrap(), "/admin");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        // %252e decodes once to "%2e", which is data, not a dot.
        assert_eq!(n("/a/%252e%252e/b").unwrap(), "/a/%252e%252e/b");
        assert_eq!(n("/hello%20world").unwrap(), "/hello%20world");
        assert_eq!(n("/caf%C3%A9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn dangerous_paths_are_refused() {
        assert_eq!(n("/a\\b"), Err(PathError::Backslash));
        assert_eq!(n("/a%5Cb"), Err(PathError::Backslash));
        assert_eq!(n("/a%00b"), Err(PathError::Nul));
        assert_eq!(n("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(n("/a%2"), Err(PathError::BadEncoding));
        assert_eq!(n("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
    }
}
