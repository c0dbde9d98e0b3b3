//! End-to-end tests of rate limiting (issue 7): every key kind, bursts and 429s with their
//! headers, several windows at once, per-route overrides, each algorithm, anonymous traffic per
//! IP, counters across reloads, and limits shared by two nodes through a real Redis — killed,
//! paused and restarted under them.
#![allow(clippy::unwrap_used)]

mod client_ip;
mod keys;
mod local;
mod redis;

use std::net::IpAddr;

use support::{Proto, TestClient, TestNode};

/// One listener named `main`, then `extra` (consumers, upstreams…), the `rate_limiting:`
/// section and the routes.
pub fn node_yaml(section: &str, extra: &str, routes: &str) -> String {
    format!(
        "listeners:\n  - {{ name: main, address: \"127.0.0.1:0\" }}\n{extra}\n{section}\nroutes:\n{routes}\n"
    )
}

/// A direct `200 ok` route at `path` with a `rate_limit:` value (YAML flow) and extra lines.
pub fn ok_route(name: &str, path: &str, rate_limit: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{ paths: [\"{path}\"] }}\n    respond: {{ status: 200, body: \"ok\\n\" }}\n    rate_limit: {rate_limit}\n"
    )
}

/// A client whose connections come from `ip` (a 127.0.0.0/8 address).
pub fn client_from(node: &TestNode, proto: Proto, ip: &str) -> TestClient {
    let ip: IpAddr = ip.parse().unwrap();
    TestClient::from_ip(proto, node.addr("main"), Some(ip))
}

/// The statuses of `n` GETs of `path`, sent one after another.
pub async fn statuses(c: &TestClient, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.get_with(path, headers).await.status.as_u16());
    }
    out
}

/// How many of `statuses` are `code`.
pub fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|&&s| s == code).count()
}

/// The node's Prometheus exposition.
pub fn scrape(node: &TestNode) -> String {
    node.handle().telemetry().scrape(node.handle().view())
}

/// The value of one sample line of a scrape (`name{labels} value`).
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
