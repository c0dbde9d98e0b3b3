//! End-to-end tests of failure handling (issue 3): circuit breaking, active health checks,
//! outlier ejection, retries and their budget, timeouts, concurrency limits, upstream faults
//! mapped to client outcomes, client faults kept off the upstream's account, an endpoint dying
//! under load, and the admin views of it all. Real backends on loopback; short
//! configured durations instead of sleeps.
#![allow(clippy::unwrap_used)]

mod admin;
mod breaker;
mod client_faults;
mod endpoint_death;
mod faults;
mod health;
mod limits;
mod outlier;
mod raw;
mod retries;

use meshgate_actors::upstream::UpstreamState;
use support::TestNode;
pub use support::upstreams::{admin_json, await_state, upstream};

/// Whether the endpoint at `addr` takes traffic in this state.
pub fn in_rotation(state: &UpstreamState, addr: std::net::SocketAddr) -> bool {
    state.rotation.iter().any(|e| e.address == addr)
}

/// The admin view of one endpoint of an upstream.
pub async fn endpoint_json(
    node: &TestNode,
    upstream: &str,
    addr: std::net::SocketAddr,
) -> serde_json::Value {
    let doc = admin_json(node, &format!("/upstreams/{upstream}/health")).await;
    doc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == addr.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint {addr} in {doc}"))
}

/// Documented configs load: every ```yaml block of docs/resilience.md that starts with
/// `# full config` validates and compiles.
#[test]
fn the_documented_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/resilience.md");
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
    assert!(blocks >= 1, "docs/resilience.md has no full config example");
}
