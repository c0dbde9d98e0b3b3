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
fn empty_text_is_an_error_in_every_format() {
    for (text, format) in [
        ("", Format::Yaml),
        ("  \n\n", Format::Yaml),
        ("", Format::Json),
    ] {
        let err = parse_with_env(text, format, "f", &env(&[])).unwrap_err();
        assert!(matches!(err, LoadError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("the file is empty"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshgate.yaml");
    std::fs::write(&path, "").unwrap();
    let err = load_file(&path).unwrap_err();
    assert!(err.to_string().contains("the file is empty"), "{err}");
}

#[test]
fn a_file_without_listeners_is_refused_unless_it_only_registers() {
    let path = Path::new("meshgate.yaml");
    // A file truncated before its listeners: valid YAML, valid sections, nothing to serve.
    let half = "admin: { address: \"127.0.0.1:0\" }\nroutes: [{ match: { paths: ['/x'] }, respond: {} }]\n";
    let err = load_text(half, path).unwrap_err();
    let problems = err.problems().expect("a field problem");
    assert!(problems.has_path("listeners"), "{problems}");
    assert!(
        problems.to_string().contains("at least one listener"),
        "{problems}"
    );
    let registrar = "discovery: { consul: { address: 'http://127.0.0.1:8500' } }\nregistration: { backend: consul, service: web, address: 127.0.0.1, port: 80 }\n";
    assert!(load_text(registrar, path).is_ok());
    let full = format!("listeners: [{{ name: a, address: '127.0.0.1:0' }}]\n{half}");
    assert!(load_text(&full, path).is_ok());
}

#[test]
fn yaml_tags_other_than_the_core_schema_are_refused_at_their_path() {
    let text = "listeners:\n  - { name: a, address: !!binary MTI3LjAuMC4xOjE= }\n  - name: !custom b\n    address: !!str '127.0.0.1:2'\nroutes: !!seq [{ match: { paths: ['/x'] }, respond: { status: !!int 204 } }]\n";
    let p = problems(text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("listeners[0].address: the YAML tag !!binary is not supported"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("listeners[1].name: the YAML tag !custom is not supported"),
        "{p:?}"
    );
    // The core schema's tags mean what they say and stay allowed.
    let core = "listeners: [{ name: !!str a, address: '127.0.0.1:1', http2: !!bool false }]\n";
    assert_eq!(problems(core), Vec::<String>::new());
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
