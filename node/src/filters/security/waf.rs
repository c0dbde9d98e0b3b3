//! SQL injection and XSS detection with libinjection's tokenizer-and-fingerprint method
//! (`libinjectionrs`, a Rust port that passes the C library's test files): each inspected value
//! — the decoded path, every query parameter name and value, header values (cookies one by
//! one), and the strings of a JSON or urlencoded-form body prefix — is tokenized as SQL and as
//! HTML, never matched against regexes of keywords, so prose with SQL words or `<3` passes.
//!
//! Header values repeat from request to request (User-Agent, Accept), so verdicts on short
//! values are remembered in a small per-thread table (no lock; the full value is compared, so
//! a hash collision cannot smuggle a payload past a cached verdict).

use std::cell::RefCell;
use std::fmt;

use http::HeaderMap;
use meshgate_config::security::WafSpec;

/// A detection: which rule and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub location: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.rule.name(), self.location)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Sqli,
    Xss,
}

impl Rule {
    /// The rule's name in responses, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Sqli => "sqli",
            Rule::Xss => "xss",
        }
    }
}

const SQLI: u8 = 1;
const XSS: u8 = 2;
const CACHE_SLOTS: usize = 1024;
const CACHE_MAX_LEN: usize = 256;

/// A remembered input and its verdict bits.
type CachedVerdict = Option<(Box<[u8]>, u8)>;

thread_local! {
    static VERDICTS: RefCell<Vec<CachedVerdict>> = RefCell::new(vec![None; CACHE_SLOTS]);
}

/// Both detectors' verdicts on `input`, as bits.
fn verdict(input: &[u8]) -> u8 {
    if input.len() > CACHE_MAX_LEN {
        return detect(input);
    }
    let slot = (xxhash_rust::xxh3::xxh3_64(input) as usize) % CACHE_SLOTS;
    let cached = VERDICTS.with(|v| match &v.borrow()[slot] {
        Some((key, bits)) if **key == *input => Some(*bits),
        _ => None,
    });
    if let Some(bits) = cached {
        return bits;
    }
    let bits = detect(input);
    VERDICTS.with(|v| v.borrow_mut()[slot] = Some((input.into(), bits)));
    bits
}

fn detect(input: &[u8]) -> u8 {
    // The port forbids panics by lint but still indexes slices; a panic must not take the
    // connection down, and an input the detector cannot read is treated as an attack.
    std::panic::catch_unwind(|| {
        let mut bits = 0;
        if libinjectionrs::detect_sqli(input).is_injection() {
            bits |= SQLI;
        }
        if libinjectionrs::detect_xss(input).is_injection() {
            bits |= XSS;
        }
        bits
    })
    .unwrap_or_else(|_| {
        tracing::warn!(
            len = input.len(),
            "WAF detector failed on an input; treating it as an attack"
        );
        SQLI | XSS
    })
}

/// A value made only of letters, digits and `- _ . ~ /` (without a `--` comment) carries no
/// SQL or HTML syntax: no quote to close, no space, parenthesis, comment or operator to extend a
/// numeric context, no tag or attribute. Ids, slugs, tokens and REST paths are such values, and
/// skipping the tokenizers for them keeps the WAF nearly free on plain traffic. (libinjection
/// itself flags a few of them, such as `1-null`, which are not exploitable.)
pub fn is_plain(input: &[u8]) -> bool {
    input
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/'))
        && !input.windows(2).any(|w| w == b"--")
}

/// The first rule `spec` enables that fires on `input`.
pub fn check(spec: &WafSpec, input: &[u8]) -> Option<Rule> {
    if input.is_empty() || is_plain(input) {
        return None;
    }
    let bits = verdict(input);
    if spec.sqli && bits & SQLI != 0 {
        Some(Rule::Sqli)
    } else if spec.xss && bits & XSS != 0 {
        Some(Rule::Xss)
    } else {
        None
    }
}

fn found(rule: Rule, location: impl Into<String>) -> Finding {
    Finding {
        rule,
        location: location.into(),
    }
}

/// Inspect the request head: decoded path, query parameters, headers.
pub fn inspect_head(
    spec: &WafSpec,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<Finding> {
    if spec.path {
        let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
        if let Some(rule) = check(spec, &decoded) {
            return Some(found(rule, "path"));
        }
    }
    if spec.query
        && let Some(q) = query
        && let Some(f) = inspect_form(spec, q.as_bytes(), "query parameter")
    {
        return Some(f);
    }
    if spec.headers {
        for (name, value) in headers {
            if spec.skip_headers.contains(name) {
                continue;
            }
            if name == http::header::COOKIE {
                for pair in value.as_bytes().split(|b| *b == b';') {
                    let pair = pair.trim_ascii();
                    let (cookie, value) = match pair.iter().position(|b| *b == b'=') {
                        Some(i) => (&pair[..i], &pair[i + 1..]),
                        None => (&pair[..0], pair),
                    };
                    let decoded = percent_encoding::percent_decode(value).collect::<Vec<u8>>();
                    if let Some(rule) = check(spec, &decoded) {
                        let cookie = String::from_utf8_lossy(cookie);
                        return Some(found(rule, format!("cookie {cookie:?}")));
                    }
                }
                continue;
            }
            if let Some(rule) = check(spec, value.as_bytes()) {
                return Some(found(rule, format!("header {:?}", name.as_str())));
            }
        }
    }
    None
}

/// Names and values of an urlencoded query or form, decoded.
pub fn inspect_form(spec: &WafSpec, text: &[u8], what: &str) -> Option<Finding> {
    for (name, value) in form_urlencoded::parse(text) {
        if let Some(rule) = check(spec, value.as_bytes()) {
            return Some(found(rule, format!("{what} {name:?}")));
        }
        if let Some(rule) = check(spec, name.as_bytes()) {
            return Some(found(rule, format!("{what} name {name:?}")));
        }
    }
    None
}

/// The body kinds the WAF reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

impl BodyKind {
    pub fn of(content_type: Option<&http::HeaderValue>) -> Option<Self> {
        let ct = content_type?.to_str().ok()?;
        let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
        if essence == "application/x-www-form-urlencoded" {
            Some(BodyKind::Form)
        } else if essence == "application/json" || essence.ends_with("+json") {
            Some(BodyKind::Json)
        } else {
            None
        }
    }
}

/// Inspect a body prefix (possibly cut in the middle of a value).
pub fn inspect_body(spec: &WafSpec, kind: BodyKind, prefix: &[u8]) -> Option<Finding> {
    match kind {
        BodyKind::Form => inspect_form(spec, prefix, "form field"),
        BodyKind::Json => json_strings(prefix)
            .into_iter()
            .find_map(|s| check(spec, s.as_bytes()).map(|rule| found(rule, "JSON body"))),
    }
}

/// Every string literal (keys and values) of a JSON text, unescaped. A lenient scanner rather
/// than a parser so that a prefix cut at the inspection limit still yields its strings.
pub fn json_strings(text: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'"' {
            i += 1;
            continue;
        }
        let mut s = Vec::new();
        i += 1;
        while i < text.len() && text[i] != b'"' {
            if text[i] == b'\\' && i + 1 < text.len() {
                i += 1;
                match text[i] {
                    b'n' => s.push(b'\n'),
                    b't' => s.push(b'\t'),
                    b'r' => s.push(b'\r'),
                    b'b' | b'f' => s.push(b' '),
                    b'u' => {
                        let hex = text
                            .get(i + 1..i + 5)
                            .and_then(|h| std::str::from_utf8(h).ok());
                        if let Some(c) = hex
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                        {
                            let mut buf = [0; 4];
                            s.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            i += 4;
                        }
                    }
                    other => s.push(other),
                }
            } else {
                s.push(text[i]);
            }
            i += 1;
        }
        i += 1;
        out.push(String::from_utf8_lossy(&s).into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_config::security::model::SecurityConfig;

    fn spec() -> WafSpec {
        let mut c = SecurityConfig::default();
        c.waf.mode = meshgate_config::security::WafMode::Block;
        meshgate_config::security::SecurityPolicy::new(&c, std::time::Duration::from_secs(1)).waf
    }

    #[test]
    fn payloads_are_found_where_they_hide() {
        let s = spec();
        let mut h = HeaderMap::new();
        h.insert("user-agent", "Mozilla/5.0".parse().unwrap());
        assert_eq!(
            inspect_head(&s, "/users/1", Some("id=1%27%20OR%20%271%27%3D%271"), &h)
                .unwrap()
                .to_string(),
            "sqli in query parameter \"id\""
        );
        assert_eq!(
            inspect_head(&s, "/p/%3Cscript%3Ealert(1)%3C%2Fscript%3E", None, &h)
                .unwrap()
                .to_string(),
            "xss in path"
        );
        h.insert(
            "cookie",
            "theme=dark; sid=1%27%20UNION%20SELECT%20password%20FROM%20users--"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            inspect_head(&s, "/", None, &h).unwrap().to_string(),
            "sqli in cookie \"sid\""
        );
        h.remove("cookie");
        h.insert("authorization", "Bearer ' OR 1=1--".parse().unwrap());
        assert_eq!(
            inspect_head(&s, "/", None, &h),
            None,
            "Authorization is never inspected"
        );
        let body = br#"{"name": "x", "comment": "<img src=x onerror=alert(1)>"}"#;
        assert_eq!(
            inspect_body(&s, BodyKind::Json, body).unwrap().rule,
            Rule::Xss
        );
        assert_eq!(
            inspect_body(&s, BodyKind::Form, b"a=1&q=1%27+or+%271%27%3D%271")
                .unwrap()
                .to_string(),
            "sqli in form field \"q\""
        );
    }

    #[test]
    fn plain_values_skip_the_detectors_but_comments_do_not() {
        let s = spec();
        for plain in [
            &b"/api/v1/users/42"[..],
            b"550e8400-e29b-41d4",
            b"red_shoes.v2~x",
        ] {
            assert!(is_plain(plain));
            assert_eq!(check(&s, plain), None);
        }
        for not_plain in [&b"1--"[..], b"1 or 1", b"a'b", b"<b>", b"x=1", b"a:b"] {
            assert!(
                !is_plain(not_plain),
                "{}",
                String::from_utf8_lossy(not_plain)
            );
        }
        assert_eq!(
            check(&s, b"1--"),
            Some(Rule::Sqli),
            "a numeric context cut by a comment"
        );
    }

    #[test]
    fn cached_verdicts_compare_whole_values() {
        let s = spec();
        for _ in 0..3 {
            assert_eq!(check(&s, b"hello world"), None);
            assert_eq!(check(&s, b"1' OR '1'='1"), Some(Rule::Sqli));
        }
    }

    #[test]
    fn json_strings_survive_escapes_and_truncation() {
        let got = json_strings(br#"{"a\"b": "x\u0027y", "n": 1, "cut": "abc"#);
        assert_eq!(got, vec!["a\"b", "x'y", "n", "cut", "abc"]);
    }
}
