use std::net::IpAddr;
use std::time::Duration;

use super::model::{ByteSize, WafMode};
use crate::{Format, compile, parse_str};

fn errors(yaml: &str) -> Vec<String> {
    match parse_str(yaml, Format::Yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems()
            .map(|p| p.iter().map(|e| e.to_string()).collect())
            .unwrap_or_else(|| vec![e.to_string()]),
    }
}

const BASE: &str = "listeners: [{ name: main, address: \"127.0.0.1:0\" }]\n";

#[test]
fn defaults_match_the_documented_numbers() {
    let yaml =
        format!("{BASE}routes: [{{ match: {{ paths: [\"/\"] }}, respond: {{ status: 200 }} }}]\n");
    let config = parse_str(&yaml, Format::Yaml).unwrap();
    let compiled = compile(&config).unwrap();
    let p = &compiled.listeners[0].security.policy;
    assert!(p.enabled);
    assert_eq!(
        p.max_connections_per_ip, 0,
        "unlimited: load balancers and NATs"
    );
    assert_eq!(p.max_body_size, 10 * 1024 * 1024);
    assert_eq!(p.max_headers, 100);
    assert_eq!(p.max_header_bytes, 8 * 1024);
    assert_eq!(p.max_uri_length, 8 * 1024);
    assert_eq!(p.max_query_params, 100);
    assert_eq!(p.header_timeout, Duration::from_secs(10));
    let rate = p.min_body_rate.unwrap();
    assert_eq!(
        (rate.bytes_per_second, rate.window),
        (1024, Duration::from_secs(10))
    );
    assert_eq!(p.waf.mode, WafMode::Off);
    assert!(
        p.bots
            .deny
            .as_ref()
            .unwrap()
            .is_match("sqlmap/1.7.2#stable (https://sqlmap.org)")
    );
    assert!(
        !p.bots
            .deny
            .as_ref()
            .unwrap()
            .is_match("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")
    );
    assert!(!compiled.listeners[0].security.proxy_protocol);
    assert_eq!(
        p.headers_with_underscores,
        super::model::UnderscoreAction::Drop
    );
    assert!(!p.reject_escaped_slashes);
    assert!(p.allows_upgrade("websocket") && p.allows_upgrade("WebSocket"));
    assert!(!p.allows_upgrade("h2c") && !p.allows_upgrade("foo"));
}

#[test]
fn protocol_settings_are_checked_and_h2c_is_never_allowed() {
    let yaml = r#"
security:
  protocol: { upgrades: [websocket, h2c, "a b"] }
listeners:
  - name: main
    address: "127.0.0.1:0"
    security: { protocol: { headers_with_underscores: sometimes } }
routes:
  - match: { paths: ["/"] }
    respond: { status: 200 }
    security: { protocol: { headers_with_underscores: allow, escaped_slashes: reject } }
"#;
    let errs = errors(yaml);
    let has = |path: &str| errs.iter().any(|e| e.starts_with(&format!("{path}:")));
    for path in [
        "security.protocol.upgrades[1]",
        "security.protocol.upgrades[2]",
        "listeners[0].security.protocol.headers_with_underscores",
        "routes[0].security.protocol.headers_with_underscores",
        "routes[0].security.protocol.escaped_slashes",
    ] {
        assert!(has(path), "no error at {path}: {errs:#?}");
    }
    let yaml = format!(
        "{BASE}routes: [{{ match: {{ paths: [\"/\"] }}, respond: {{ status: 200 }}, security: {{ protocol: {{ upgrades: [] }} }} }}]\n"
    );
    let compiled = compile(&parse_str(&yaml, Format::Yaml).unwrap()).unwrap();
    assert!(
        !compiled.listeners[0]
            .security
            .for_route(0)
            .allows_upgrade("websocket")
    );
}

#[test]
fn sizes_take_units() {
    for (text, bytes) in [
        ("512", 512),
        ("8KB", 8192),
        ("8 KiB", 8192),
        ("10MiB", 10 << 20),
        ("1g", 1 << 30),
    ] {
        assert_eq!(text.parse::<ByteSize>().unwrap().get(), bytes, "{text}");
    }
    assert!("10 parsecs".parse::<ByteSize>().is_err());
    assert!("-1".parse::<ByteSize>().is_err());
}

#[test]
fn listener_and_route_overrides_merge_field_by_field() {
    let yaml = r#"
security:
  limits: { max_body_size: 1MB, max_query_params: 20 }
  ip_rules: { deny: [10.0.0.0/8] }
listeners:
  - name: edge
    address: "127.0.0.1:0"
    proxy_protocol: true
    security:
      client_ip: { trusted_proxies: ["192.0.2.0/24"] }
      limits: { max_headers: 80 }
  - { name: inner, address: "127.0.0.1:0" }
routes:
  - name: upload
    match: { paths: ["/upload"] }
    respond: { status: 200 }
    security:
      limits: { max_body_size: 100MB }
      waf: { mode: block }
      ip_rules: { deny: [] }
  - name: other
    match: { paths: ["/other"] }
    respond: { status: 200 }
"#;
    let compiled = compile(&parse_str(yaml, Format::Yaml).unwrap()).unwrap();
    let edge = &compiled.listeners[0].security;
    assert!(edge.proxy_protocol);
    assert_eq!(edge.policy.max_headers, 80);
    assert_eq!(edge.policy.max_body_size, 1 << 20);
    assert!(
        edge.policy
            .trusted_proxies
            .contains("192.0.2.7".parse().unwrap())
    );
    let upload = edge.for_route(0);
    assert_eq!(upload.max_body_size, 100 << 20);
    assert_eq!(
        upload.max_query_params, 20,
        "unset fields come from the global section"
    );
    assert_eq!(upload.max_headers, 80, "and from the listener");
    assert_eq!(upload.waf.mode, WafMode::Block);
    assert!(
        upload.ip_deny.is_empty(),
        "a list replaces the inherited one"
    );
    let other = edge.for_route(1);
    assert!(other.ip_deny.contains("10.1.2.3".parse().unwrap()));
    assert_eq!(other.waf.mode, WafMode::Off);
    let inner = &compiled.listeners[1].security;
    assert_eq!(inner.policy.max_headers, 100);
    assert!(inner.policy.trusted_proxies.is_empty());
}

#[test]
fn ipv4_mapped_addresses_match_ipv4_rules() {
    let list = super::IpList::parse(&["10.0.0.0/8".into(), "2001:db8::/32".into(), "::1".into()]);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(list.contains(ip("::ffff:10.9.8.7")));
    assert!(list.contains(ip("2001:db8:1::5")));
    assert!(list.contains(ip("::1")));
    assert!(!list.contains(ip("11.0.0.1")));
    assert!(!list.contains(ip("2001:db9::1")));
}

#[test]
fn every_problem_has_its_field_path() {
    let yaml = r#"
security:
  client_ip: { trusted_proxies: ["10.0.0.0/33"] }
  limits: { max_headers: 0, max_header_bytes: 10 }
  bots: { deny: ["(unclosed"] }
  waf: { mode: block, inspect: [] }
listeners:
  - name: main
    address: "127.0.0.1:0"
    security: { ip_rules: { allow: [nope] }, limits: { max_uri_length: huge } }
routes:
  - match: { paths: ["/"] }
    respond: { status: 200 }
    security: { client_ip: { trusted_proxies: [] }, limits: { max_headers: 10 }, colour: red }
"#;
    let errs = errors(yaml);
    let has = |path: &str| errs.iter().any(|e| e.starts_with(&format!("{path}:")));
    for path in [
        "security.client_ip.trusted_proxies[0]",
        "security.limits.max_headers",
        "security.limits.max_header_bytes",
        "security.bots.deny[0]",
        "security.waf.inspect",
        "listeners[0].security.limits.max_uri_length",
        "routes[0].security.client_ip",
        "routes[0].security.limits.max_headers",
    ] {
        assert!(has(path), "no error at {path}: {errs:#?}");
    }
    assert!(
        errs.iter()
            .any(|e| e.starts_with("routes[0].security") && e.contains("colour")),
        "{errs:#?}"
    );
    // The global section's problems are reported once, not again under each override.
    assert_eq!(
        errs.iter()
            .filter(|e| e.contains("max_header_bytes"))
            .count(),
        1,
        "{errs:#?}"
    );
}

#[test]
fn a_listener_override_value_is_checked() {
    let yaml = "listeners:\n  - name: main\n    address: \"127.0.0.1:0\"\n    security: { ip_rules: { allow: [nope] } }\n";
    let errs = errors(yaml);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("listeners[0].security.ip_rules.allow[0]:")),
        "{errs:#?}"
    );
}

#[test]
fn the_documented_example_loads() {
    let path = format!("{}/../docs/security.md", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(path).unwrap();
    let body = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    assert!(body.starts_with("# full config"), "{body}");
    let config = parse_str(body, Format::Yaml).unwrap_or_else(|e| panic!("{e}"));
    let compiled = compile(&config).unwrap();
    let public = &compiled.listeners[0].security;
    assert_eq!(public.policy.max_connections_per_ip, 200);
    assert!(!compiled.listeners[1].security.policy.enabled);
    let uploads = public.for_route(1);
    assert_eq!(uploads.max_body_size, 1 << 30);
    assert!(uploads.min_body_rate.is_none());
    assert_eq!(public.for_route(0).waf.mode, WafMode::Block);
}
