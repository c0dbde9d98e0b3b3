//! Path patterns as users write them (`/exact`, `/users/{id}`, `/files/{*rest}`, `/api/*`) and
//! rewrite templates (`/v2/users/{id}`): parsing, validation, and the normalized form the
//! router indexes.

use std::fmt::Write as _;

/// One parsed entry of `match.paths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// The path must equal this string.
    Exact(String),
    /// The path must be this prefix or continue it with `/`. Stored without a trailing slash
    /// (`""` for the root prefix `/*`).
    Prefix(String),
    /// A matchit template with parameters renamed positionally (`/users/{p0}`), so that
    /// `/a/{x}` and `/a/{y}` index to the same node; `params` keeps the user's names in order.
    Template {
        normalized: String,
        params: Vec<String>,
        /// Characters outside parameters: more literal text = more specific.
        literal_len: usize,
    },
}

impl PathPattern {
    /// Parse `pattern` or explain what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path {pattern:?} must start with '/'"));
        }
        if let Some(bad) = pattern
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '\\'))
        {
            return Err(format!("path {pattern:?} contains {bad:?}"));
        }
        if let Some(prefix) = pattern.strip_suffix("/*") {
            if prefix.contains('*') || prefix.contains('{') || prefix.contains('}') {
                return Err(format!(
                    "prefix {pattern:?} may not contain '*' or parameters before the trailing /*"
                ));
            }
            return Ok(PathPattern::Prefix(prefix.to_string()));
        }
        if pattern.contains('{') || pattern.contains('}') {
            return parse_template(pattern);
        }
        if pattern.contains('*') {
            return Err(format!(
                "path {pattern:?}: '*' is only allowed as a trailing /* (prefix match) or in {{*name}}"
            ));
        }
        Ok(PathPattern::Exact(pattern.to_string()))
    }

    /// The parameter names this pattern captures.
    pub fn params(&self) -> &[String] {
        match self {
            PathPattern::Template { params, .. } => params,
            _ => &[],
        }
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_template(pattern: &str) -> Result<PathPattern, String> {
    let mut normalized = String::with_capacity(pattern.len());
    let mut params: Vec<String> = Vec::new();
    let mut literal_len = 0;
    let segments: Vec<&str> = pattern[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        normalized.push('/');
        let mut rest = *segment;
        let mut params_in_segment = 0;
        while !rest.is_empty() {
            match rest.find('{') {
                None => {
                    if rest.contains('}') || rest.contains('*') {
                        return Err(format!("path {pattern:?}: stray '}}' or '*'"));
                    }
                    normalized.push_str(rest);
                    literal_len += rest.len();
                    rest = "";
                }
                Some(open) => {
                    let literal = &rest[..open];
                    if literal.contains('}') || literal.contains('*') {
                        return Err(format!("path {pattern:?}: stray '}}' or '*'"));
                    }
                    normalized.push_str(literal);
                    literal_len += literal.len();
                    let after = &rest[open + 1..];
                    let close = after
                        .find('}')
                        .ok_or_else(|| format!("path {pattern:?}: unclosed '{{'"))?;
                    let raw = &after[..close];
                    let (catch_all, name) = match raw.strip_prefix('*') {
                        Some(n) => (true, n),
                        None => (false, raw),
                    };
                    if !is_param_name(name) {
                        return Err(format!(
                            "path {pattern:?}: parameter name {name:?} must be letters, digits or _"
                        ));
                    }
                    if params.iter().any(|p| p == name) {
                        return Err(format!(
                            "path {pattern:?}: parameter {name:?} appears twice"
                        ));
                    }
                    params_in_segment += 1;
                    if params_in_segment > 1 {
                        return Err(format!(
                            "path {pattern:?}: at most one parameter per segment"
                        ));
                    }
                    let rest_after = &after[close + 1..];
                    if catch_all && (i != last || !literal.is_empty() || !rest_after.is_empty()) {
                        return Err(format!(
                            "path {pattern:?}: {{*{name}}} must be the whole last segment"
                        ));
                    }
                    let _ = write!(
                        normalized,
                        "{{{}p{}}}",
                        if catch_all { "*" } else { "" },
                        params.len()
                    );
                    params.push(name.to_string());
                    rest = rest_after;
                }
            }
        }
    }
    Ok(PathPattern::Template {
        normalized,
        params,
        literal_len,
    })
}

/// A full-path replacement with `{name}` placeholders filled from captured parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteTemplate {
    parts: Vec<RewritePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RewritePart {
    Literal(String),
    Param(String),
}

impl RewriteTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        if !template.starts_with('/') {
            return Err(format!("rewrite {template:?} must start with '/'"));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(RewritePart::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("rewrite {template:?}: unclosed '{{'"))?;
            let name = &after[..close];
            if !is_param_name(name) {
                return Err(format!(
                    "rewrite {template:?}: parameter name {name:?} must be letters, digits or _"
                ));
            }
            parts.push(RewritePart::Param(name.to_string()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("rewrite {template:?}: stray '}}'"));
        }
        if !rest.is_empty() {
            parts.push(RewritePart::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The parameter names the template needs.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            RewritePart::Param(name) => Some(name.as_str()),
            RewritePart::Literal(_) => None,
        })
    }

    /// Fill the template; a missing parameter becomes empty (validation prevents it).
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                RewritePart::Literal(s) => out.push_str(s),
                RewritePart::Param(name) => out.push_str(lookup(name).unwrap_or("")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_patterns() {
        assert_eq!(
            PathPattern::parse("/health").unwrap(),
            PathPattern::Exact("/health".into())
        );
        assert_eq!(
            PathPattern::parse("/api/*").unwrap(),
            PathPattern::Prefix("/api".into())
        );
        assert_eq!(
            PathPattern::parse("/*").unwrap(),
            PathPattern::Prefix("".into())
        );
        match PathPattern::parse("/users/{id}/posts/{post}").unwrap() {
            PathPattern::Template {
                normalized, params, ..
            } => {
                assert_eq!(normalized, "/users/{p0}/posts/{p1}");
                assert_eq!(params, vec!["id", "post"]);
            }
            other => panic!("{other:?}"),
        }
        match PathPattern::parse("/files/{*rest}").unwrap() {
            PathPattern::Template { normalized, .. } => assert_eq!(normalized, "/files/{*p0}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in [
            "users",
            "/a b",
            "/a?x=1",
            "/a/{id",
            "/a/{}",
            "/a/{1x}",
            "/a/{id}/{id}",
            "/a/{*rest}/b",
            "/a/x{*rest}",
            "/a*",
            "/{a}{b}",
            "/a\\b",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn rewrite_renders_params() {
        let t = RewriteTemplate::parse("/v2/users/{id}/x").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), vec!["id"]);
        let out = t.render(|n| (n == "id").then_some("42"));
        assert_eq!(out, "/v2/users/42/x");
        assert!(RewriteTemplate::parse("v2").is_err());
        assert!(RewriteTemplate::parse("/{a").is_err());
    }
}
