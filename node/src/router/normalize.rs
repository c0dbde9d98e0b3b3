//! Path normalisation. Routing reads the fully decoded form: percent-decode once, merge `//`,
//! remove dot segments (RFC 3986 §5.2.4), re-encode what a path may not carry raw, so that
//! `/public/../admin` or `/%61dmin` cannot slip past a rule on `/admin`. The upstream gets the
//! forwarding form ([`forwarding_form`]): the same segments, but only unreserved characters
//! decoded (RFC 3986 §6.2.2.2), so `a%2Fb` stays one segment and `%3B` never becomes a `;` a
//! Java server would cut the path at. Refused: `\`, NUL, and an escaped slash in a path with a
//! dot segment (`/public%2F..%2Fadmin`, `/a%2Fb/../c`), whose target depends on whether the
//! backend decodes `%2F` before or after removing dot segments.

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
    #[error("path has an escaped slash (%2F) and a dot segment")]
    AmbiguousDotSegment,
}

/// The canonical form of `raw` (a request path without query). Borrowed when already canonical.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    if has_escaped_slash(raw.as_bytes()) && has_dot_segment(raw.as_bytes()) {
        return Err(PathError::AmbiguousDotSegment);
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

/// The path to forward for `raw`, which [`normalize`] accepted: its segments, with dot
/// segments removed and `//` merged as for routing, but only unreserved characters decoded;
/// every other escape is kept (hex in upper case, RFC 3986 §6.2.2.1). Borrowed when canonical.
pub fn forwarding_form(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_canonical(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let byte = hex_pair(bytes.get(i + 1..i + 3))?;
            if is_unreserved(byte) {
                out.push(byte as char);
            } else {
                push_escape(&mut out, byte);
            }
            i += 3;
        } else {
            if is_path_byte(b) {
                out.push(b as char);
            } else {
                push_escape(&mut out, b);
            }
            i += 1;
        }
    }
    Ok(Cow::Owned(remove_dot_segments(&out)))
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xF)] as char);
}

fn hex_pair(hex: Option<&[u8]>) -> Result<u8, PathError> {
    let hex = hex.ok_or(PathError::BadEncoding)?;
    let hi = (hex[0] as char)
        .to_digit(16)
        .ok_or(PathError::BadEncoding)?;
    let lo = (hex[1] as char)
        .to_digit(16)
        .ok_or(PathError::BadEncoding)?;
    Ok((hi * 16 + lo) as u8)
}

/// `%2F` in either case.
fn has_escaped_slash(path: &[u8]) -> bool {
    path.windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] | 0x20) == b'f')
}

/// A `.` or `..` segment, the dots raw or as `%2E`, between slashes raw or escaped.
fn has_dot_segment(path: &[u8]) -> bool {
    let mut dots = 0u32;
    let mut other = false;
    let mut i = 0;
    loop {
        let (separator, step) = match path.get(i) {
            None => (true, 1),
            Some(b'/') => (true, 1),
            Some(b'%') if path.get(i + 1) == Some(&b'2') => match path.get(i + 2).map(|b| b | 0x20)
            {
                Some(b'f') => (true, 3),
                Some(b'e') => {
                    dots += 1;
                    (false, 3)
                }
                _ => {
                    other = true;
                    (false, 1)
                }
            },
            Some(b'.') => {
                dots += 1;
                (false, 1)
            }
            Some(_) => {
                other = true;
                (false, 1)
            }
        };
        if separator {
            if !other && (1..=2).contains(&dots) {
                return true;
            }
            dots = 0;
            other = false;
        }
        if i >= path.len() {
            return false;
        }
        i += step;
    }
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
            out.push(hex_pair(input.get(i + 1..i + 3))?);
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

    fn f(p: &str) -> String {
        forwarding_form(p).unwrap().into_owned()
    }

    #[test]
    fn the_forwarding_form_keeps_reserved_escapes() {
        assert_eq!(f("/p/a%2Fb"), "/p/a%2Fb");
        assert_eq!(f("/admin%3bx"), "/admin%3Bx");
        assert_eq!(f("/%61dmin/./x/../y"), "/admin/y");
        assert_eq!(f("/a%2e%2e/b"), "/a../b");
        assert_eq!(f("//a//b%7E"), "/a/b~");
        assert_eq!(f("/caf%c3%a9%20x"), "/caf%C3%A9%20x");
        assert_eq!(f("/a/%252e"), "/a/%252e");
        assert!(matches!(
            forwarding_form("/plain/path"),
            Ok(Cow::Borrowed(_))
        ));
        // Routing reads the same segments, decoded.
        assert_eq!(n("/p/a%2Fb").unwrap(), "/p/a/b");
        assert_eq!(n("/admin%3Bx").unwrap(), "/admin;x");
    }

    #[test]
    fn an_escaped_slash_next_to_a_dot_segment_is_refused() {
        for p in [
            "/public%2F..%2Fadmin",
            "/a%2Fb/../c",
            "/a/%2e%2E%2fb",
            "/x%2F.",
            "/.%2Fx",
        ] {
            assert_eq!(n(p), Err(PathError::AmbiguousDotSegment), "{p}");
        }
        for p in [
            "/a%2Fb/c",
            "/a%2F...%2Fb",
            "/a%2F.x",
            "/a/../b",
            "/a%2Fb%2e%2ec",
        ] {
            assert!(n(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn percent_decoding_happens_once() {
        assert_eq!(
            n("/public%2F%2E%2Fadmin").unwrap_err(),
            PathError::AmbiguousDotSegment
        );
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
