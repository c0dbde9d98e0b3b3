//! A gateway following DNS A records served by a real DNS server: when the records change,
//! routing follows once their 1 s TTL runs out.

use std::net::{IpAddr, SocketAddr};

use support::Backend;
use support::TestNode;
use support::dns_server::DnsServer;

use crate::{answered, await_rotation, gateway_config, tally, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_changed_address_records() {
    // A records carry no port: the instances listen on one port on two loopback addresses.
    let first = Backend::start_on("web-a", "127.0.0.2:0".parse().unwrap()).await;
    let port = first.addr().port();
    let second = Backend::start_on("web-b", SocketAddr::from(([127, 0, 0, 3], port))).await;
    let ip = |b: &Backend| -> IpAddr { b.addr().ip() };

    let dns = DnsServer::start("test.", 1).await;
    dns.set_addresses("web.test.", &[ip(&first)]).await;
    let gateway = TestNode::start(&gateway_config(
        &format!(
            "  dns: {{ nameserver: \"{}\", min_refresh: 1s, max_refresh: 5s }}",
            dns.addr()
        ),
        &[(
            "web",
            &format!("    discovery: {{ dns: {{ name: web.test., port: {port} }} }}"),
        )],
    ))
    .await;
    let web = upstream(&gateway, "web");
    await_rotation(&web, &[&first]).await;
    let counts = tally(&gateway, "/hello", 5).await;
    assert_eq!(answered(&counts), ["web-a"], "{counts:?}");

    dns.set_addresses("web.test.", &[ip(&second)]).await;
    await_rotation(&web, &[&second]).await;
    let counts = tally(&gateway, "/hello", 5).await;
    assert_eq!(answered(&counts), ["web-b"], "{counts:?}");

    dns.set_addresses("web.test.", &[ip(&first), ip(&second)])
        .await;
    await_rotation(&web, &[&first, &second]).await;
    let counts = tally(&gateway, "/hello", 20).await;
    assert_eq!(answered(&counts), ["web-a", "web-b"], "{counts:?}");
}
