//! End-to-end tests of authentication and consumers (issue 6): every method's success and
//! failure, the attacks on each, caches and rate limits counted at a real test IdP, ACLs,
//! anonymous fallback, identity headers, and `meshgate hash-key`.
#![allow(clippy::unwrap_used)]

mod access;
mod api_keys;
mod cli;
mod https;
mod introspection;
mod jwt;
mod reload;

use support::TestNode;

/// One listener named `main`; `routes`, `auth` and `consumers` are YAML blocks (may be empty).
pub fn node_yaml(auth: &str, consumers: &str, routes: &str) -> String {
    format!(
        "listeners:\n  - {{ name: main, address: \"127.0.0.1:0\" }}\n{auth}\n{consumers}\nroutes:\n{routes}\n"
    )
}

/// An echo route (the request as the upstream would see it) at `path` with an `auth:` block.
pub fn echo_route(name: &str, path: &str, auth: &str) -> String {
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("    auth: {auth}\n")
    };
    format!(
        "  - name: {name}\n    match: {{ paths: [\"{path}\"] }}\n    respond: {{ echo: true }}\n{auth}"
    )
}

pub async fn start(yaml: &str) -> TestNode {
    TestNode::start(yaml).await
}
