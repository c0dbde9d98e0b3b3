//! Loading: file → YAML/JSON value → `${ENV}` substitution → typed [`Config`] → validation.
//! Each top-level section and each list element is deserialized on its own so that one broken
//! route does not hide the problems in the next one: every problem is reported at once.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ConfigError, ConfigErrors, FieldPath, LoadError};
use crate::model::Config;
use crate::validate::{validate, validate_runnable};

mod tags;

/// The syntax of a config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` files are JSON; everything else is YAML (a superset of JSON).
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        }
    }
}

/// The top-level keys a config may have, in the order they are documented.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "mode",
    "server",
    "admin",
    "listeners",
    "routes",
    "upstreams",
    "mesh",
    "discovery",
    "registration",
    "telemetry",
    "auth",
    "consumers",
    "rate_limiting",
    "security",
];

/// Read, parse and validate a config file, using the process environment for `${VAR}`.
/// A file is what a node runs, so beyond [`validate`] it must serve something (see
/// [`validate_runnable`]).
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_text(&text, path)
}

/// [`load_file`] on text already read from `path` (the config watcher reads the file itself
/// to check that it stopped changing).
pub fn load_text(text: &str, path: &Path) -> Result<Config, LoadError> {
    let config = parse_named(text, Format::from_path(path), &path.display().to_string())?;
    validate_runnable(&config).map_err(LoadError::Invalid)?;
    Ok(config)
}

/// Parse and validate a config text, using the process environment for `${VAR}`.
pub fn parse_str(text: &str, format: Format) -> Result<Config, LoadError> {
    parse_named(text, format, "<config>")
}

fn parse_named(text: &str, format: Format, name: &str) -> Result<Config, LoadError> {
    parse_with_env(text, format, name, &|var| std::env::var(var).ok())
}

/// Parse and validate with an explicit environment lookup (tests use this).
pub fn parse_with_env(
    text: &str,
    format: Format,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, LoadError> {
    let mut value = parse_value(text, format, name)?;
    let mut errors = Vec::new();
    substitute_env(&mut value, &FieldPath::root(), env, &mut errors);
    if !errors.is_empty() {
        return Err(LoadError::Invalid(ConfigErrors(errors)));
    }
    let config = from_value(value).map_err(LoadError::Invalid)?;
    validate(&config).map_err(LoadError::Invalid)?;
    Ok(config)
}

fn parse_value(text: &str, format: Format, name: &str) -> Result<Value, LoadError> {
    let syntax = |message: String| LoadError::Syntax {
        path: name.to_string(),
        format: format.name(),
        message,
    };
    // A file caught between truncation and rewrite is empty: never a config, never "no change".
    if text.trim().is_empty() {
        return Err(syntax(
            "the file is empty (a config needs at least a listener)".into(),
        ));
    }
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string())),
        Format::Yaml => {
            let yaml: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?;
            let tags = tags::unsupported_tags(text);
            if !tags.is_empty() {
                return Err(LoadError::Invalid(ConfigErrors(tags)));
            }
            serde_json::to_value(yaml).map_err(|e| syntax(format!("unsupported YAML: {e}")))
        }
    }
}

/// Turn a parsed value into a [`Config`], collecting every type error with its field path.
pub fn from_value(value: Value) -> Result<Config, ConfigErrors> {
    let root = FieldPath::root();
    let mut errors = Vec::new();
    let Value::Object(mut map) = value else {
        return Err(ConfigErrors(vec![root.error(
            "the config must be a mapping with keys such as listeners, routes and upstreams",
        )]));
    };
    for key in map.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            errors.push(root.field(key).error(format!(
                "unknown field, expected one of: {}",
                TOP_LEVEL_KEYS.join(", ")
            )));
        }
    }
    let mut take = |key: &str| map.remove(key);
    let config = Config {
        mode: section(take("mode"), &root.field("mode"), &mut errors),
        server: section(take("server"), &root.field("server"), &mut errors),
        admin: section(take("admin"), &root.field("admin"), &mut errors),
        listeners: list(take("listeners"), &root.field("listeners"), &mut errors),
        routes: list(take("routes"), &root.field("routes"), &mut errors),
        upstreams: list(take("upstreams"), &root.field("upstreams"), &mut errors),
        mesh: optional(take("mesh"), &root.field("mesh"), &mut errors),
        discovery: section(take("discovery"), &root.field("discovery"), &mut errors),
        registration: optional(
            take("registration"),
            &root.field("registration"),
            &mut errors,
        ),
        telemetry: section(take("telemetry"), &root.field("telemetry"), &mut errors),
        auth: section(take("auth"), &root.field("auth"), &mut errors),
        consumers: list(take("consumers"), &root.field("consumers"), &mut errors),
        rate_limiting: section(
            take("rate_limiting"),
            &root.field("rate_limiting"),
            &mut errors,
        ),
        security: section(take("security"), &root.field("security"), &mut errors),
    };
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn section<T: DeserializeOwned + Default>(
    value: Option<Value>,
    path: &FieldPath,
    errors: &mut Vec<ConfigError>,
) -> T {
    match value {
        None | Some(Value::Null) => T::default(),
        Some(value) => deserialize_at(value, path, errors).unwrap_or_default(),
    }
}

fn optional<T: DeserializeOwned>(
    value: Option<Value>,
    path: &FieldPath,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match value {
        None | Some(Value::Null) => None,
        Some(value) => deserialize_at(value, path, errors),
    }
}

fn list<T: DeserializeOwned>(
    value: Option<Value>,
    path: &FieldPath,
    errors: &mut Vec<ConfigError>,
) -> Vec<T> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| deserialize_at(item, &path.index(i), errors))
            .collect(),
        Some(_) => {
            errors.push(path.error("expected a list"));
            Vec::new()
        }
    }
}

fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    path: &FieldPath,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let message = e.inner().to_string();
            let mut full = path.as_str().to_string();
            if inner != "." {
                full = join_path(&full, &inner);
            }
            // serde reports an unknown field at its parent; point at the field itself.
            if let Some(field) = unknown_field_name(&message)
                && !full.ends_with(field)
            {
                full = join_path(&full, field);
            }
            errors.push(ConfigError::new(full, message));
            None
        }
    }
}

fn join_path(base: &str, tail: &str) -> String {
    if base.is_empty() {
        tail.to_string()
    } else if tail.starts_with('[') {
        format!("{base}{tail}")
    } else {
        format!("{base}.{tail}")
    }
}

fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Replace `${VAR}` and `${VAR:-default}` inside every string value; `$${` is a literal `${`.
/// A string that is exactly one `${VAR}` becomes a number or boolean when the variable's value
/// is one, so `port: ${PORT}` works.
fn substitute_env(
    value: &mut Value,
    path: &FieldPath,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(expanded) => {
                let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                *value = if whole {
                    typed_scalar(expanded)
                } else {
                    Value::String(expanded)
                };
            }
            Err(message) => errors.push(path.error(message)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_env(item, &path.index(i), env, errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                substitute_env(item, &path.field(key), env, errors);
            }
        }
        _ => {}
    }
}

fn typed_scalar(text: String) -> Value {
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text),
    }
}

fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {input:?}"))?;
            let expr = &tail[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    ));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
