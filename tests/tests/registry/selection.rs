//! Which discovered instances take traffic: a `subset` by tags and metadata, and
//! `prefer_zone` (local instances only while one is available — with active health checks
//! deciding availability — then every zone).

use support::consul_double::ConsulDouble;
use support::{Backend, TestNode};

use crate::consul::{consul_discovery, instance};
use crate::{admin_json, answered, await_rotation, gateway_config, tally, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subsets_select_by_metadata_and_tags() {
    let consul = ConsulDouble::start().await;
    let v1 = Backend::start("web-v1").await;
    let v2 = Backend::start("web-v2").await;
    let canary = Backend::start("web-v2-canary").await;
    let mut first = instance(&v1);
    first.meta.insert("version".into(), "v1".into());
    consul.register_instance(first.clone()).await;
    let mut second = instance(&v2);
    second.meta.insert("version".into(), "v2".into());
    consul.register_instance(second).await;
    let mut third = instance(&canary);
    third.meta.insert("version".into(), "v2".into());
    third.tags = vec!["canary".into()];
    consul.register_instance(third).await;

    let gateway = TestNode::start(&gateway_config(
        &consul_discovery(&consul, "60s"),
        &[
            (
                "v2",
                "    discovery: { consul: { service: web } }\n    subset: { metadata: { version: v2 } }",
            ),
            (
                "canary",
                "    discovery: { consul: { service: web } }\n    subset: { tags: [canary], metadata: { version: v2 } }",
            ),
        ],
    ))
    .await;
    await_rotation(&upstream(&gateway, "v2"), &[&v2, &canary]).await;
    await_rotation(&upstream(&gateway, "canary"), &[&canary]).await;
    let counts = tally(&gateway, "/v2/hello", 20).await;
    assert_eq!(answered(&counts), ["web-v2", "web-v2-canary"], "{counts:?}");
    let counts = tally(&gateway, "/canary/hello", 5).await;
    assert_eq!(answered(&counts), ["web-v2-canary"], "{counts:?}");

    // The admin API shows what discovery says about each endpoint.
    let doc = admin_json(&gateway, "/upstreams/canary/health").await;
    let shown = &doc["endpoints"][0];
    assert_eq!(shown["tags"], serde_json::json!(["canary"]), "{doc}");
    assert_eq!(shown["metadata"]["version"], "v2", "{doc}");
    assert_eq!(shown["id"], "web-v2-canary", "{doc}");
    assert_eq!(
        doc["discovery"]["subset"]["tags"],
        serde_json::json!(["canary"])
    );

    // The v1 instance is upgraded in place: it joins the v2 subset.
    first.meta.insert("version".into(), "v2".into());
    consul.register_instance(first).await;
    await_rotation(&upstream(&gateway, "v2"), &[&v1, &v2, &canary]).await;
    let counts = tally(&gateway, "/v2/hello", 30).await;
    assert_eq!(
        answered(&counts),
        ["web-v1", "web-v2", "web-v2-canary"],
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_zone_is_preferred_while_it_has_an_available_endpoint() {
    let consul = ConsulDouble::start().await;
    let local_1 = Backend::start("local-1").await;
    let local_2 = Backend::start("local-2").await;
    let remote = Backend::start("remote").await;
    for (app, zone) in [(&local_1, "a"), (&local_2, "a"), (&remote, "b")] {
        let mut entry = instance(app);
        entry.meta.insert("zone".into(), zone.into());
        consul.register_instance(entry).await;
    }
    let discovery = format!("{}\n  zone: a", consul_discovery(&consul, "60s"));
    let gateway = TestNode::start(&gateway_config(
        &discovery,
        &[(
            "web",
            "    discovery: { consul: { service: web } }
    prefer_zone: true
    health_check: { path: /health, interval: 50ms, timeout: 500ms, unhealthy_threshold: 1, healthy_threshold: 1, jitter_percent: 0 }
    outlier_detection: { enabled: false }
    panic_threshold: 0",
        )],
    ))
    .await;
    let web = upstream(&gateway, "web");
    await_rotation(&web, &[&local_1, &local_2]).await;
    assert!(web.load().zone_local);
    let counts = tally(&gateway, "/hello", 20).await;
    assert_eq!(answered(&counts), ["local-1", "local-2"], "{counts:?}");

    // One local endpoint fails its probes: the other local one takes everything.
    local_1.set_healthy(false);
    await_rotation(&web, &[&local_2]).await;
    let counts = tally(&gateway, "/hello", 10).await;
    assert_eq!(answered(&counts), ["local-2"], "{counts:?}");

    // No local endpoint available: the other zone takes the traffic.
    local_2.set_healthy(false);
    await_rotation(&web, &[&remote]).await;
    assert!(!web.load().zone_local);
    let counts = tally(&gateway, "/hello", 10).await;
    assert_eq!(answered(&counts), ["remote"], "{counts:?}");
    let doc = admin_json(&gateway, "/upstreams/web/health").await;
    assert_eq!(doc["discovery"]["zone"], "a", "{doc}");
    assert_eq!(doc["discovery"]["zone_local"], false, "{doc}");

    // A local endpoint recovers: back to the local zone only.
    local_1.set_healthy(true);
    await_rotation(&web, &[&local_1]).await;
    let counts = tally(&gateway, "/hello", 10).await;
    assert_eq!(answered(&counts), ["local-1"], "{counts:?}");

    // The local instances leave the registry: the other zone again.
    assert!(consul.deregister("local-1").await);
    assert!(consul.deregister("local-2").await);
    await_rotation(&web, &[&remote]).await;
    let counts = tally(&gateway, "/hello", 10).await;
    assert_eq!(answered(&counts), ["remote"], "{counts:?}");
}
