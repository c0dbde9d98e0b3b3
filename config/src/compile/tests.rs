use super::*;
use crate::load::{Format, parse_with_env};

fn config(text: &str) -> Config {
    parse_with_env(text, Format::Yaml, "t", &|_| None).unwrap()
}

fn errors_of(text: &str) -> Vec<String> {
    let parsed = match parse_with_env(text, Format::Yaml, "t", &|_| None) {
        Ok(c) => c,
        Err(e) => {
            return e
                .problems()
                .map(|p| p.iter().map(|e| e.to_string()).collect())
                .unwrap_or_else(|| vec![e.to_string()]);
        }
    };
    match compile(&parsed) {
        Ok(_) => vec![],
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

/// Every bad-config case and the field path it must report.
#[test]
fn each_bad_config_reports_its_field_path() {
    let cases: &[(&str, &str)] = &[
        (
            "listeners: [{name: a, address: nowhere}]",
            "listeners[0].address",
        ),
        (
            "listeners: [{name: a, address: '127.0.0.1:1'}, {name: a, address: '127.0.0.1:2'}]",
            "listeners[1].name",
        ),
        (
            "listeners: [{name: 'a b', address: '127.0.0.1:1'}]",
            "listeners[0].name",
        ),
        ("admin: {address: 'localhost'}", "admin.address"),
        ("server: {worker_threads: 0}", "server.worker_threads"),
        (
            "server: {header_read_timeout: 0s}",
            "server.header_read_timeout",
        ),
        ("routes: [{match: {paths: ['/x']}}]", "routes[0]"),
        (
            "routes: [{match: {paths: ['/x']}, respond: {}, proxy: {upstream: u}}]\nupstreams: [{name: u, targets: [{address: '127.0.0.1:1'}]}]",
            "routes[0]",
        ),
        (
            "routes: [{match: {paths: ['x']}, respond: {}}]",
            "routes[0].match.paths[0]",
        ),
        (
            "routes: [{match: {paths: ['/ok', '/a/{id']}, respond: {}}]",
            "routes[0].match.paths[1]",
        ),
        (
            "routes: [{match: {hosts: ['*.*.x.com']}, respond: {}}]",
            "routes[0].match.hosts[0]",
        ),
        (
            "routes: [{match: {hosts: ['API.x.com']}, respond: {}}]",
            "routes[0].match.hosts[0]",
        ),
        (
            "routes: [{match: {methods: ['get']}, respond: {}}]",
            "routes[0].match.methods[0]",
        ),
        (
            "routes: [{match: {methods: ['G T']}, respond: {}}]",
            "routes[0].match.methods[0]",
        ),
        (
            "routes: [{match: {headers: [{name: 'x y', exact: a}]}, respond: {}}]",
            "routes[0].match.headers[0].name",
        ),
        (
            "routes: [{match: {headers: [{name: x, exact: a, present: true}]}, respond: {}}]",
            "routes[0].match.headers[0]",
        ),
        (
            "routes: [{match: {headers: [{name: x, regex: '('}]}, respond: {}}]",
            "routes[0].match.headers[0].regex",
        ),
        (
            "routes: [{match: {query: [{name: '', present: true}]}, respond: {}}]",
            "routes[0].match.query[0].name",
        ),
        (
            "routes: [{listeners: [nope], respond: {}}]",
            "routes[0].listeners[0]",
        ),
        (
            "routes: [{name: a, respond: {}}, {name: a, respond: {}}]",
            "routes[1].name",
        ),
        (
            "routes: [{proxy: {upstream: missing}}]",
            "routes[0].proxy.upstream",
        ),
        (
            "routes: [{proxy: {upstream: u, strip_prefix: 'api'}}]\nupstreams: [{name: u, targets: [{address: '127.0.0.1:1'}]}]",
            "routes[0].proxy.strip_prefix",
        ),
        (
            "routes: [{match: {paths: ['/u/{id}']}, proxy: {upstream: u, rewrite: '/v/{name}'}}]\nupstreams: [{name: u, targets: [{address: '127.0.0.1:1'}]}]",
            "routes[0].proxy.rewrite",
        ),
        (
            "routes: [{proxy: {upstream: u, timeout: 0s}}]\nupstreams: [{name: u, targets: [{address: '127.0.0.1:1'}]}]",
            "routes[0].proxy.timeout",
        ),
        (
            "routes: [{respond: {status: 99}}]",
            "routes[0].respond.status",
        ),
        (
            "routes: [{respond: {echo: true, body: x}}]",
            "routes[0].respond.body",
        ),
        (
            "routes: [{respond: {headers: {'bad name': x}}}]",
            "routes[0].respond.headers.bad name",
        ),
        (
            "upstreams: [{name: u, targets: []}]",
            "upstreams[0].targets",
        ),
        (
            "upstreams: [{name: u, targets: [{address: 'nohost'}]}]",
            "upstreams[0].targets[0].address",
        ),
        (
            "upstreams: [{name: u, targets: [{address: '127.0.0.1:1', weight: 0}]}]",
            "upstreams[0].targets[0].weight",
        ),
        (
            "upstreams: [{name: u, targets: [{address: '127.0.0.1:1'}], connect_timeout: 0s}]",
            "upstreams[0].connect_timeout",
        ),
        (
            "upstreams: [{name: u, targets: [{address: '127.0.0.1:1'}], load_balancing: {consistent_hash: {header: 'a b'}}}]",
            "upstreams[0].load_balancing.consistent_hash.header",
        ),
        (
            "upstreams: [{name: u, targets: [{address: '127.0.0.1:1'}], load_balancing: fastest}]",
            "upstreams[0].load_balancing",
        ),
        (
            "upstreams: [{name: u, targets: [{address: '127.0.0.1:1'}]}, {name: u, targets: [{address: '127.0.0.1:1'}]}]",
            "upstreams[1].name",
        ),
        (
            "routes: [{match: {paths: ['/a/{x}.png']}, respond: {}}, {match: {paths: ['/a/{*y}']}, respond: {}}]",
            "routes[1].match.paths[0]",
        ),
    ];
    for (text, path) in cases {
        let errors = errors_of(text);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "config {text:?} should report {path}, got {errors:?}"
        );
    }
}

#[test]
fn all_problems_of_one_config_are_reported_together() {
    let errors = errors_of(
        "routes:\n  - proxy: {upstream: a}\n  - proxy: {upstream: b}\n  - respond: {status: 700}\n",
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn compiles_listeners_upstreams_and_actions() {
    let c = compile(&config(
        r#"
listeners:
  - { name: public, address: "127.0.0.1:0" }
  - { name: internal, address: "127.0.0.1:0", http2: false }
routes:
  - name: api
    match: { paths: ["/api/*"] }
    proxy: { upstream: users, strip_prefix: /api, preserve_host: false, timeout: 2s }
  - name: only-internal
    listeners: [internal]
    match: { paths: ["/debug"] }
    respond: { status: 418, headers: { x-teapot: "yes" }, body: "short and stout" }
upstreams:
  - name: users
    targets: [{ address: "127.0.0.1:9001", weight: 3 }, { address: "localhost:9002" }]
    load_balancing: { consistent_hash: { header: x-user } }
    protocol: http2
"#,
    ))
    .unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].routes.len(), 1);
    assert_eq!(c.listeners[1].routes.len(), 2);
    assert!(!c.listeners[1].http2);
    let u = &c.upstreams[0];
    assert_eq!(u.targets[0].weight, 3);
    assert_eq!(u.targets[1].host, "localhost");
    assert_eq!(
        u.load_balancing,
        LoadBalancing::ConsistentHash(HashOn::Header(HeaderName::from_static("x-user")))
    );
    match &c.routes[0].action {
        RouteAction::Proxy(p) => {
            assert_eq!(p.upstream, 0);
            assert_eq!(p.host, HostPolicy::Upstream);
            assert_eq!(p.timeout, Duration::from_secs(2));
            assert_eq!(p.rewrite.apply("/api/users/1", &[]), "/users/1");
            assert_eq!(p.rewrite.apply("/api", &[]), "/");
            assert_eq!(p.rewrite.apply("/apix", &[]), "/apix");
        }
        other => panic!("{other:?}"),
    }
    match &c.routes[1].action {
        RouteAction::Respond(r) => {
            assert_eq!(r.status, StatusCode::IM_A_TEAPOT);
            assert_eq!(r.headers["x-teapot"], "yes");
            assert_eq!(&r.body[..], b"short and stout");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rewrite_helpers_compose() {
    let r = PathRewrite {
        strip_prefix: Some("/v1".into()),
        add_prefix: Some("/internal".into()),
        template: None,
    };
    assert_eq!(r.apply("/v1/x", &[]), "/internal/x");
    assert_eq!(r.apply("/v1", &[]), "/internal");
    let t = PathRewrite {
        template: Some(RewriteTemplate::parse("/users/{id}/profile").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        t.apply("/u/7", &[(Arc::from("id"), "7".to_string())]),
        "/users/7/profile"
    );
}

#[test]
fn discovery_sources_and_zone_preference() {
    let c = compile(&config(
        "discovery:
  consul: { address: 'http://127.0.0.1:8500', rate_limit: { interval: 0s } }
  zone: a
upstreams:
  - { name: near, discovery: { consul: { service: web } }, prefer_zone: true, subset: { tags: [v2] } }
  - { name: any, discovery: { consul: { service: web } } }",
    ))
    .unwrap();
    let consul = c.discovery.consul.as_ref().unwrap();
    assert_eq!(consul.rate_limit.burst, 2, "the default burst");
    assert!(consul.rate_limit.interval.get().is_zero());
    assert_eq!(c.upstreams[0].local_zone.as_deref(), Some("a"));
    assert_eq!(c.upstreams[0].subset.as_ref().unwrap().tags, vec!["v2"]);
    assert_eq!(c.upstreams[1].local_zone, None, "only with prefer_zone");
    assert!(c.upstreams[1].targets.is_empty());

    let errors = errors_of(
        "discovery: { consul: { rate_limit: { burst: 0 } } }
upstreams: [{ name: u, discovery: { consul: { service: web } } }]",
    );
    assert_eq!(
        errors,
        vec!["discovery.consul.rate_limit.burst: must be at least 1".to_string()]
    );
}
