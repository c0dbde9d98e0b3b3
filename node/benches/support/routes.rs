//! Generated route tables shared by the benches: `n` proxy routes, a third each exact,
//! template and prefix, compiled by `meshgate_config::compile` as `meshgate run` would.

use std::sync::Arc;

use http::Request;
use meshgate_config::{Format, RouteTable, compile, parse_str};

/// The listener's route table for a config with `n` proxy routes: route `i` is
/// `/t{i}/items/{id}` (i % 3 == 0), `/e{i}/status` (1) or `/p{i}/*` (2).
pub fn route_table(n: usize) -> Arc<RouteTable> {
    let routes: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let path = match i % 3 {
                0 => format!("/t{i}/items/{{id}}"),
                1 => format!("/e{i}/status"),
                _ => format!("/p{i}/*"),
            };
            serde_json::json!({
                "name": format!("r{i}"),
                "match": { "paths": [path] },
                "proxy": { "upstream": "backend" },
            })
        })
        .collect();
    let config = serde_json::json!({
        "admin": { "enabled": false },
        "listeners": [{ "name": "main", "address": "127.0.0.1:0" }],
        "routes": routes,
        "upstreams": [{ "name": "backend", "targets": [{ "address": "127.0.0.1:9" }] }],
    });
    let config = parse_str(&config.to_string(), Format::Json).expect("generated config parses");
    let compiled = compile(&config).expect("generated config compiles");
    compiled.listeners[0].routes.clone()
}

/// A template route near the middle of an `n`-route table (no size favours its position).
pub fn middle_template(n: usize) -> usize {
    let mid = n / 2;
    mid - mid % 3
}

/// A request as wrk or curl sends it.
pub fn request(path: &str) -> Request<()> {
    Request::get(path)
        .header("host", "127.0.0.1:8080")
        .header("user-agent", "bench")
        .header("accept", "*/*")
        .body(())
        .expect("valid request")
}
