use super::*;
use crate::compile::compile;
use crate::load::{Format, parse_with_env};

struct Fixture {
    table: Arc<RouteTable>,
}

impl Fixture {
    fn new(routes_yaml: &str) -> Self {
        let text =
            format!("listeners: [{{name: l, address: '127.0.0.1:0'}}]\nroutes:\n{routes_yaml}");
        let config = parse_with_env(&text, Format::Yaml, "t", &|_| None).unwrap();
        let compiled = compile(&config).unwrap();
        Self {
            table: compiled.listeners[0].routes.clone(),
        }
    }

    fn find(
        &self,
        method: &str,
        host: Option<&str>,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Option<RouteMatch> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        self.table.find(&RequestView {
            host,
            path,
            method: &method,
            headers: &map,
            query,
        })
    }

    fn name(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<String> {
        self.find(method, host, path, headers)
            .map(|m| m.route.name.to_string())
    }

    fn get(&self, path: &str) -> Option<String> {
        self.name("GET", None, path, &[])
    }
}

#[test]
fn exact_paths_match_only_themselves() {
    let f = Fixture::new("  - {name: health, match: {paths: ['/health']}, respond: {}}\n");
    assert_eq!(f.get("/health").as_deref(), Some("health"));
    assert_eq!(f.get("/health/"), None);
    assert_eq!(f.get("/healthz"), None);
    assert_eq!(f.get("/"), None);
}

#[test]
fn prefixes_match_whole_segments() {
    let f = Fixture::new("  - {name: api, match: {paths: ['/api/*']}, respond: {}}\n");
    for hit in ["/api", "/api/", "/api/v1/users"] {
        assert_eq!(f.get(hit).as_deref(), Some("api"), "{hit}");
    }
    for miss in ["/apix", "/ap", "/"] {
        assert_eq!(f.get(miss), None, "{miss}");
    }
}

#[test]
fn root_prefix_and_empty_paths_match_everything() {
    let f = Fixture::new("  - {name: all, respond: {}}\n");
    assert_eq!(f.get("/").as_deref(), Some("all"));
    assert_eq!(f.get("/a/b/c").as_deref(), Some("all"));
}

#[test]
fn templates_capture_params() {
    let f = Fixture::new(
        "  - {name: user, match: {paths: ['/users/{id}/posts/{post}']}, respond: {}}\n  - {name: files, match: {paths: ['/files/{*path}']}, respond: {}}\n",
    );
    let m = f.find("GET", None, "/users/42/posts/7", &[]).unwrap();
    assert_eq!(&*m.route.name, "user");
    let params: Vec<(String, String)> = m
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(
        params,
        vec![("id".into(), "42".into()), ("post".into(), "7".into())]
    );
    let m = f.find("GET", None, "/files/a/b.txt", &[]).unwrap();
    assert_eq!(m.params[0].1, "a/b.txt");
    assert_eq!(f.get("/users/42/posts"), None);
}

#[test]
fn same_template_shape_with_different_names_keeps_each_routes_names() {
    let f = Fixture::new(
        "  - {name: a, match: {paths: ['/x/{user}'], methods: [GET]}, respond: {}}\n  - {name: b, match: {paths: ['/x/{order}'], methods: [POST]}, respond: {}}\n",
    );
    let a = f.find("GET", None, "/x/1", &[]).unwrap();
    assert_eq!(&*a.params[0].0, "user");
    let b = f.find("POST", None, "/x/1", &[]).unwrap();
    assert_eq!(&*b.route.name, "b");
    assert_eq!(&*b.params[0].0, "order");
}

#[test]
fn hosts_exact_and_wildcard() {
    let f = Fixture::new(
        "  - {name: exact, match: {hosts: ['api.example.com']}, respond: {}}\n  - {name: wild, match: {hosts: ['*.example.com']}, respond: {}}\n  - {name: deeper, match: {hosts: ['*.eu.example.com']}, respond: {}}\n  - {name: any, respond: {}}\n",
    );
    let at = |h| f.name("GET", Some(h), "/", &[]);
    assert_eq!(at("api.example.com").as_deref(), Some("exact"));
    assert_eq!(at("www.example.com").as_deref(), Some("wild"));
    assert_eq!(at("a.b.example.com").as_deref(), Some("wild"));
    assert_eq!(at("x.eu.example.com").as_deref(), Some("deeper"));
    assert_eq!(at("example.com").as_deref(), Some("any"));
    assert_eq!(at("other.org").as_deref(), Some("any"));
    assert_eq!(f.name("GET", None, "/", &[]).as_deref(), Some("any"));
}

#[test]
fn methods_headers_and_query() {
    let f = Fixture::new(
        r#"  - {name: post, match: {methods: [POST, PUT]}, respond: {}}
  - {name: canary, match: {headers: [{name: x-canary, exact: "1"}]}, respond: {}}
  - {name: version, match: {headers: [{name: x-version, regex: "v[0-9]+"}]}, respond: {}}
  - {name: traced, match: {headers: [{name: x-trace, present: true}]}, respond: {}}
  - {name: debug, match: {query: [{name: debug, exact: "on"}]}, respond: {}}
  - {name: fallback, respond: {}}
"#,
    );
    assert_eq!(f.name("PUT", None, "/", &[]).as_deref(), Some("post"));
    assert_eq!(
        f.name("GET", None, "/", &[("x-canary", "1")]).as_deref(),
        Some("canary")
    );
    assert_eq!(
        f.name("GET", None, "/", &[("x-canary", "2")]).as_deref(),
        Some("fallback")
    );
    assert_eq!(
        f.name("GET", None, "/", &[("x-version", "v12")]).as_deref(),
        Some("version")
    );
    // Regexes are anchored: a partial match is no match.
    assert_eq!(
        f.name("GET", None, "/", &[("x-version", "v12-beta")])
            .as_deref(),
        Some("fallback")
    );
    assert_eq!(
        f.name("GET", None, "/", &[("x-trace", "")]).as_deref(),
        Some("traced")
    );
    assert_eq!(
        f.name("GET", None, "/?a=1&debug=on", &[]).as_deref(),
        Some("debug")
    );
    assert_eq!(
        f.name("GET", None, "/?debug=%6Fn", &[]).as_deref(),
        Some("debug")
    );
    assert_eq!(
        f.name("GET", None, "/?debug=off", &[]).as_deref(),
        Some("fallback")
    );
}

#[test]
fn header_absence_can_be_required() {
    let f = Fixture::new(
        "  - {name: anon, match: {headers: [{name: authorization, present: false}]}, respond: {}}\n  - {name: authed, respond: {}}\n",
    );
    assert_eq!(f.get("/").as_deref(), Some("anon"));
    assert_eq!(
        f.name("GET", None, "/", &[("authorization", "x")])
            .as_deref(),
        Some("authed")
    );
}

#[test]
fn specificity_order_exact_then_template_then_longest_prefix() {
    let f = Fixture::new(
        r#"  - {name: root, match: {paths: ["/*"]}, respond: {}}
  - {name: users-prefix, match: {paths: ["/users/*"]}, respond: {}}
  - {name: user, match: {paths: ["/users/{id}"]}, respond: {}}
  - {name: me, match: {paths: ["/users/me"]}, respond: {}}
"#,
    );
    assert_eq!(f.get("/users/me").as_deref(), Some("me"));
    assert_eq!(f.get("/users/7").as_deref(), Some("user"));
    assert_eq!(f.get("/users/7/x").as_deref(), Some("users-prefix"));
    assert_eq!(f.get("/users").as_deref(), Some("users-prefix"));
    assert_eq!(f.get("/other").as_deref(), Some("root"));
}

#[test]
fn failed_conditions_fall_back_to_less_specific_paths() {
    let f = Fixture::new(
        r#"  - {name: me-get, match: {paths: ["/users/me"], methods: [GET]}, respond: {}}
  - {name: user, match: {paths: ["/users/{id}"]}, respond: {}}
  - {name: prefix, match: {paths: ["/users/*"]}, respond: {}}
"#,
    );
    assert_eq!(
        f.name("GET", None, "/users/me", &[]).as_deref(),
        Some("me-get")
    );
    assert_eq!(
        f.name("POST", None, "/users/me", &[]).as_deref(),
        Some("user")
    );
}

#[test]
fn explicit_priority_beats_specificity_and_conditions_break_ties() {
    let f = Fixture::new(
        r#"  - {name: exact, match: {paths: ["/a/b"]}, respond: {}}
  - {name: boosted, priority: 10, match: {paths: ["/a/*"], headers: [{name: x-boost, present: true}]}, respond: {}}
  - {name: plain, match: {paths: ["/x"]}, respond: {}}
  - {name: with-method, match: {paths: ["/x"], methods: [GET]}, respond: {}}
  - {name: first, match: {paths: ["/y"]}, respond: {}}
  - {name: second, match: {paths: ["/y"]}, respond: {}}
"#,
    );
    assert_eq!(f.get("/a/b").as_deref(), Some("exact"));
    assert_eq!(
        f.name("GET", None, "/a/b", &[("x-boost", "1")]).as_deref(),
        Some("boosted")
    );
    assert_eq!(f.get("/x").as_deref(), Some("with-method"));
    assert_eq!(f.name("POST", None, "/x", &[]).as_deref(), Some("plain"));
    assert_eq!(f.get("/y").as_deref(), Some("first"));
}

#[test]
fn host_specific_routes_beat_host_agnostic_ones() {
    let f = Fixture::new(
        r#"  - {name: generic-exact, match: {paths: ["/a"]}, respond: {}}
  - {name: host-prefix, match: {hosts: ["h.example.com"], paths: ["/*"]}, respond: {}}
"#,
    );
    assert_eq!(
        f.name("GET", Some("h.example.com"), "/a", &[]).as_deref(),
        Some("host-prefix")
    );
    assert_eq!(
        f.name("GET", Some("other"), "/a", &[]).as_deref(),
        Some("generic-exact")
    );
}

#[test]
fn ten_thousand_routes_index_and_match() {
    let mut yaml = String::new();
    for i in 0..10_000 {
        yaml.push_str(&format!(
            "  - {{name: r{i}, match: {{paths: ['/svc{i}/items/{{id}}', '/svc{i}/static/*']}}, respond: {{}}}}\n"
        ));
    }
    let f = Fixture::new(&yaml);
    assert_eq!(f.table.len(), 10_000);
    assert_eq!(f.get("/svc9999/items/1").as_deref(), Some("r9999"));
    assert_eq!(f.get("/svc1234/static/a/b").as_deref(), Some("r1234"));
    assert_eq!(f.get("/svc10000/items/1"), None);
}
