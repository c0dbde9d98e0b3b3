//! Discovery and registration end to end (issue 4): the Registrar keeping the local service
//! registered with heartbeats that follow its health, and gateways following the registry
//! (Consul double, real etcd, real DNS): scale up and down, health, stale and empty answers,
//! subsets and zone preference. Every wait awaits a published state, never a sleep.
#![allow(clippy::unwrap_used)]

mod consul;
mod dns;
mod etcd;
mod lifecycle;
mod registrar;
mod selection;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use meshgate_actors::upstream::{UpstreamHandle, UpstreamState};
pub use support::upstreams::{admin_json, await_state, upstream};
use support::{Backend, Proto, TestNode};

/// The addresses that take traffic in this state.
pub fn rotation(state: &UpstreamState) -> BTreeSet<SocketAddr> {
    state.rotation.iter().map(|e| e.address).collect()
}

/// Wait until exactly these backends take the upstream's traffic.
pub async fn await_rotation(handle: &UpstreamHandle, backends: &[&Backend]) {
    let want: BTreeSet<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    await_state(handle, &format!("rotation = {names:?}"), |s| {
        rotation(s) == want
    })
    .await;
}

/// Send `n` requests through the node's `main` listener; count them per answering backend.
pub async fn tally(node: &TestNode, path: &str, n: usize) -> HashMap<String, usize> {
    let client = node.client(Proto::Http1, "main");
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        *counts
            .entry(r.header("x-backend").unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// The names of the backends that answered, sorted.
pub fn answered(counts: &HashMap<String, usize>) -> Vec<String> {
    let mut names: Vec<String> = counts.keys().cloned().collect();
    names.sort();
    names
}

/// A gateway with one listener `main` routing everything to each named upstream by path
/// prefix (`/<upstream>/…`, prefix stripped), plus `/*` to the first one.
pub fn gateway_config(discovery: &str, upstreams: &[(&str, &str)]) -> String {
    let mut routes = String::new();
    for (name, _) in upstreams {
        routes.push_str(&format!(
            "  - {{ match: {{ paths: [\"/{name}/*\"] }}, proxy: {{ upstream: {name}, strip_prefix: /{name} }} }}\n"
        ));
    }
    routes.push_str(&format!(
        "  - {{ match: {{ paths: [\"/*\"] }}, proxy: {{ upstream: {} }} }}\n",
        upstreams[0].0
    ));
    let mut blocks = String::new();
    for (name, body) in upstreams {
        blocks.push_str(&format!("  - name: {name}\n{body}\n"));
    }
    format!(
        "discovery:\n{discovery}\nlisteners:\n  - {{ name: main, address: \"127.0.0.1:0\" }}\nroutes:\n{routes}upstreams:\n{blocks}"
    )
}

/// Documented configs load: every ```yaml block of docs/discovery.md that starts with
/// `# full config` validates and compiles.
#[test]
fn the_documented_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/discovery.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut blocks = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let body = block.split("```").next().unwrap();
        if !body.starts_with("# full config") {
            continue;
        }
        blocks += 1;
        let config = meshgate_config::parse_str(body, meshgate_config::Format::Yaml)
            .unwrap_or_else(|e| panic!("documented config does not load: {e}\n{body}"));
        meshgate_config::compile(&config)
            .unwrap_or_else(|e| panic!("documented config does not compile: {e}\n{body}"));
    }
    assert!(blocks >= 1, "docs/discovery.md has no full config example");
}
