//! examples/mesh, run as shipped: the three config files with only ports and the CA directory
//! swapped for test ones.

use support::tls::MeshCa;
use support::{Backend, Proto, TestNode};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../examples/mesh/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn adapt(text: &str, ca: &MeshCa, swaps: &[(&str, String)]) -> String {
    let mut text = text.replace("examples/mesh/ca", &ca.path().display().to_string());
    for (from, to) in swaps {
        text = text.replace(from, to);
    }
    text
}

#[tokio::test]
async fn the_mesh_example_runs_end_to_end() {
    let ca = MeshCa::new("mesh.local");
    let app_a = Backend::start("a").await;
    let app_b = Backend::start("b").await;
    let any = "127.0.0.1:0".to_string();

    let b = TestNode::start(&adapt(
        &example("sidecar-b.yaml"),
        &ca,
        &[
            ("127.0.0.1:8103", any.clone()),
            ("127.0.0.1:15012", any.clone()),
            ("127.0.0.1:9102", app_b.addr().to_string()),
        ],
    ))
    .await;
    let a = TestNode::start(&adapt(
        &example("sidecar-a.yaml"),
        &ca,
        &[
            ("127.0.0.1:8102", any.clone()),
            ("127.0.0.1:15011", any.clone()),
            ("127.0.0.1:15001", any.clone()),
            ("127.0.0.1:15012", b.addr("inbound").to_string()),
            ("127.0.0.1:9101", app_a.addr().to_string()),
        ],
    ))
    .await;
    let gateway = TestNode::start(&adapt(
        &example("gateway.yaml"),
        &ca,
        &[
            ("127.0.0.1:8101", any.clone()),
            ("127.0.0.1:8080", any.clone()),
            ("127.0.0.1:15011", a.addr("inbound").to_string()),
        ],
    ))
    .await;

    let c = gateway.client(Proto::Http1, "public");
    let r = c.get("/a/hello").await;
    assert_eq!(r.text(), "hello from a");
    let r = c.get(&format!("/a/call/{}/", a.addr("outbound"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "a -> hello from b");
}
