use super::*;
use crate::error::LoadError;

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

fn problems(text: &str) -> Vec<String> {
    match parse_with_env(text, Format::Yaml, "t", &env(&[])) {
        Err(LoadError::Invalid(errors)) => errors.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![format!("other: {other}")],
        Ok(_) => vec![],
    }
}

#[test]
fn empty_text_is_a_valid_idle_config() {
    let config = parse_with_env("", Format::Yaml, "t", &env(&[])).unwrap();
    assert!(config.listeners.is_empty());
    assert_eq!(config.admin.address, "127.0.0.1:8001");
}

#[test]
fn json_and_yaml_give_the_same_config() {
    let yaml = "listeners: [{name: a, address: '127.0.0.1:1'}]\nroutes: [{match: {paths: ['/x']}, respond: {status: 204}}]\n";
    let json = r#"{"listeners":[{"name":"a","address":"127.0.0.1:1"}],"routes":[{"match":{"paths":["/x"]},"respond":{"status":204}}]}"#;
    let a = parse_with_env(yaml, Format::Yaml, "t", &env(&[])).unwrap();
    let b = parse_with_env(json, Format::Json, "t", &env(&[])).unwrap();
    assert_eq!(a, b);
}

#[test]
fn env_vars_are_substituted_with_types_and_defaults() {
    let text = "server: { worker_threads: '${THREADS}' }\nlisteners: [{name: '${NAME:-main}', address: '127.0.0.1:${PORT}'}]\nroutes: [{match: {paths: ['/x']}, respond: {body: 'cost $${not_a_var}'}}]\n";
    let config = parse_with_env(
        text,
        Format::Yaml,
        "t",
        &env(&[("THREADS", "3"), ("PORT", "9000")]),
    )
    .unwrap();
    assert_eq!(config.server.worker_threads, Some(3));
    assert_eq!(config.listeners[0].name, "main");
    assert_eq!(config.listeners[0].address, "127.0.0.1:9000");
    assert_eq!(
        config.routes[0].respond.as_ref().unwrap().body.as_deref(),
        Some("cost ${not_a_var}")
    );
}

#[test]
fn missing_env_var_names_the_field() {
    let p = problems("listeners: [{name: a, address: '${NOPE_ADDR}'}]");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("listeners[0].address: environment variable NOPE_ADDR is not set"),
        "{p:?}"
    );
}

#[test]
fn unknown_fields_are_reported_at_their_own_path() {
    let p = problems("routes:\n  - match: { pathz: ['/x'] }\n    respond: {}\nbogus: 1\n");
    assert!(
        p.iter().any(|e| e.starts_with("bogus: unknown field")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|e| e.starts_with("routes[0].match.pathz: unknown field `pathz`")),
        "{p:?}"
    );
}

#[test]
fn every_broken_element_is_reported_at_once() {
    let text = r#"
listeners:
  - { name: a, address: "127.0.0.1:1" }
  - { name: b, address: 5 }
routes:
  - { match: { paths: ["/ok"] }, respond: {} }
  - { match: { paths: "/not-a-list" }, respond: {} }
  - { match: { paths: ["/x"] }, proxy: { upstream: u, timeout: 5 } }
upstreams:
  - { name: u, targets: [{ address: "127.0.0.1:9", weight: "heavy" }] }
"#;
    let p = problems(text);
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(p[0].starts_with("listeners[1].address:"), "{p:?}");
    assert!(p[1].starts_with("routes[1].match.paths:"), "{p:?}");
    assert!(p[2].starts_with("routes[2].proxy.timeout:"), "{p:?}");
    assert!(p[2].contains("ambiguous"), "{p:?}");
    assert!(p[3].starts_with("upstreams[0].targets[0].weight:"), "{p:?}");
}

#[test]
fn syntax_errors_name_the_format() {
    let err = parse_with_env("routes: [", Format::Yaml, "f.yaml", &env(&[])).unwrap_err();
    assert!(
        matches!(err, LoadError::Syntax { format: "YAML", .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("f.yaml: not valid YAML"),
        "{err}"
    );
}

#[test]
fn missing_file_is_a_read_error() {
    let err = load_file(Path::new("/definitely/not/here.yaml")).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }));
    assert!(
        err.to_string().contains("/definitely/not/here.yaml"),
        "{err}"
    );
}
