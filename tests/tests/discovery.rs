//! meshgate-discovery against real components: the Consul double (docs/consul.md), a real etcd
//! and a real DNS server. Every wait is an awaited update with a bound; no sleep stands in for
//! an event.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use http::StatusCode;
use meshgate_discovery::{
    Backoff, CheckStatus, ConsulClient, ConsulConfig, ConsulRegistration, ConsulWatch,
    ConsulWatchConfig, DiscoveryError, DnsQuery, DnsWatch, DnsWatchConfig, Endpoint, EndpointSet,
    EndpointSource, EtcdConfig, EtcdRegistration, EtcdWatch, EtcdWatchConfig, Heartbeat, RateLimit,
    ServiceRegistration, ServiceWeights,
};
use support::consul_double::{ConsulDouble, ConsulDoubleConfig, Instance, RequestCounts};
use support::dns_server::{DnsServer, Srv};
use support::etcd_server::EtcdServer;

/// Longest wait for anything that should happen "now" (one blocking round, one TTL).
const PATIENCE: Duration = Duration::from_secs(10);

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn addrs(set: &EndpointSet) -> Vec<String> {
    set.addrs().iter().map(ToString::to_string).collect()
}

/// The next update, or a failure naming what we waited for.
async fn next<S: EndpointSource>(
    source: &mut S,
    what: &str,
) -> Result<EndpointSet, DiscoveryError> {
    tokio::time::timeout(PATIENCE, source.next_update())
        .await
        .unwrap_or_else(|_| panic!("no update within {PATIENCE:?}: {what}"))
}

/// Calls `next_update` like a DiscoveryWatcher (errors → backoff, retry) until `done` holds.
async fn converge<S: EndpointSource>(
    source: &mut S,
    what: &str,
    mut done: impl FnMut(&EndpointSet) -> bool,
) -> EndpointSet {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, source.next_update()).await {
            Err(_) => panic!("did not converge within {:?}: {what}", PATIENCE * 2),
            Ok(Ok(set)) if done(&set) => return set,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                assert!(
                    error.is_transient(),
                    "{what}: unexpected permanent error {error}"
                );
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consul

fn consul_client(double: &ConsulDouble, token: Option<&str>) -> ConsulClient {
    let mut config = ConsulConfig::new(double.url());
    config.token = token.map(str::to_owned);
    ConsulClient::new(&config).expect("consul client")
}

/// A watch whose blocking wait is long: an update that arrives quickly proves the agent woke
/// the query, not that the wait ran out.
fn consul_watch(client: ConsulClient, service: &str) -> ConsulWatch {
    let mut config = ConsulWatchConfig::new(service);
    config.wait = Duration::from_secs(60);
    config.rate_limit = RateLimit {
        burst: 2,
        interval: Duration::from_millis(20),
    };
    ConsulWatch::new(client, config).expect("consul watch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_watch_follows_scale_up_and_down() {
    let double = ConsulDouble::start().await;
    let mut web1 = Instance::new("web", "web-1", ip("10.0.0.1"), 8080);
    web1.tags = vec!["primary".into()];
    web1.meta = BTreeMap::from([("version".into(), "1.2".into())]);
    web1.weights = (7, 1);
    double.register_instance(web1).await;
    let mut web2 = Instance::new("web", "web-2", ip("10.0.0.2"), 8080);
    web2.address = None;
    web2.node = Some(("node-2".into(), ip("10.0.9.2")));
    double.register_instance(web2).await;
    double
        .register_instance(Instance::new("db", "db-1", ip("10.0.5.1"), 5432))
        .await;

    let mut watch = consul_watch(consul_client(&double, None), "web");
    let first = next(&mut watch, "initial set").await.unwrap();
    assert_eq!(
        addrs(&first),
        ["10.0.0.1:8080", "10.0.9.2:8080"],
        "empty Service.Address → Node.Address"
    );
    let web1 = first.get("10.0.0.1:8080".parse().unwrap()).unwrap();
    assert_eq!(
        (web1.weight, web1.tags.as_slice(), web1.id.as_deref()),
        (7, &["primary".to_string()][..], Some("web-1"))
    );
    assert_eq!(
        web1.metadata.get("version").map(String::as_str),
        Some("1.2")
    );

    double
        .register_instance(Instance::new("web", "web-3", ip("10.0.0.3"), 8080))
        .await;
    let up = next(&mut watch, "scale up").await.unwrap();
    assert_eq!(
        addrs(&up),
        ["10.0.0.1:8080", "10.0.0.3:8080", "10.0.9.2:8080"]
    );

    // A change to another service wakes nothing here, and a removal is followed.
    double
        .register_instance(Instance::new("db", "db-2", ip("10.0.5.2"), 5432))
        .await;
    assert!(double.deregister("web-1").await);
    let down = next(&mut watch, "scale down").await.unwrap();
    assert_eq!(addrs(&down), ["10.0.0.3:8080", "10.0.9.2:8080"]);
    assert!(
        RequestCounts::get(&double.requests().blocking) >= 2,
        "updates came from blocking queries"
    );

    // A critical node check (serfHealth) removes its instances under `passing`.
    double.set_node_health(Some("node-2"), "critical").await;
    let node_down = next(&mut watch, "node check critical").await.unwrap();
    assert_eq!(addrs(&node_down), ["10.0.0.3:8080"]);
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_watch_filters_tags_and_rejects_unknown_datacenter() {
    let double = ConsulDouble::start().await;
    let mut tagged = Instance::new("api", "api-1", ip("10.1.0.1"), 80);
    tagged.tags = vec!["primary".into(), "v2".into()];
    double.register_instance(tagged).await;
    let mut other = Instance::new("api", "api-2", ip("10.1.0.2"), 80);
    other.tags = vec!["v2".into()];
    double.register_instance(other).await;
    let mut warning = Instance::new("api", "api-3", ip("10.1.0.3"), 80);
    warning.tags = vec!["primary".into(), "v2".into()];
    warning.status = "warning".into();
    warning.weights = (5, 2);
    double.register_instance(warning).await;

    let mut config = ConsulWatchConfig::new("api");
    config.tags = vec!["primary".into(), "v2".into()];
    let mut watch = ConsulWatch::new(consul_client(&double, None), config.clone()).unwrap();
    assert_eq!(
        addrs(&next(&mut watch, "tagged").await.unwrap()),
        ["10.1.0.1:80"]
    );

    config.passing_only = false;
    let mut lenient = ConsulWatch::new(consul_client(&double, None), config.clone()).unwrap();
    let with_warning = next(&mut lenient, "warning included").await.unwrap();
    assert_eq!(addrs(&with_warning), ["10.1.0.1:80", "10.1.0.3:80"]);
    assert_eq!(
        with_warning
            .get("10.1.0.3:80".parse().unwrap())
            .unwrap()
            .weight,
        2,
        "Weights.Warning"
    );

    config.datacenter = Some("dc-elsewhere".into());
    let mut remote = ConsulWatch::new(consul_client(&double, None), config).unwrap();
    match next(&mut remote, "unknown dc").await {
        Err(DiscoveryError::Server {
            status: 500, body, ..
        }) => assert_eq!(body, "No path to datacenter"),
        other => panic!("expected 500 No path to datacenter, got {other:?}"),
    }
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_ttl_check_that_stops_beating_leaves_the_set() {
    let double = ConsulDouble::start().await;
    let client = consul_client(&double, None);
    let mut service = ServiceRegistration::new("pay-1", "pay", 9000);
    service.address = Some(ip("10.2.0.1"));
    service.ttl = Duration::from_secs(1);
    let registration = ConsulRegistration::new(client.clone(), service).unwrap();
    registration.register().await.unwrap();
    let check = double
        .check("service:pay-1")
        .await
        .expect("check named service:<ID>");
    assert_eq!(
        (check.status.as_str(), check.name.as_str()),
        ("critical", "Service 'pay' check")
    );

    let mut watch = consul_watch(client, "pay");
    assert!(
        next(&mut watch, "critical at first")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        registration
            .heartbeat(CheckStatus::Passing, "ok")
            .await
            .unwrap(),
        Heartbeat::Sent
    );
    assert_eq!(
        addrs(&next(&mut watch, "passing").await.unwrap()),
        ["10.2.0.1:9000"]
    );

    // No more heartbeats: the TTL (1 s) runs out and the passing filter drops the instance.
    let gone = next(&mut watch, "TTL expiry").await.unwrap();
    assert!(gone.is_empty());
    let check = double.check("service:pay-1").await.unwrap();
    assert_eq!(check.status, "critical");
    assert_eq!(
        check.output,
        "TTL expired (last output before timeout follows): ok"
    );
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_registration_heartbeats_and_reregistration() {
    let double = ConsulDouble::start().await;
    let client = consul_client(&double, None);
    let mut service = ServiceRegistration::new("cart-1", "cart", 7000);
    service.address = Some(ip("10.3.0.1"));
    service.tags = vec!["blue".into()];
    service.weights = Some(ServiceWeights {
        passing: 4,
        warning: 1,
    });
    service.deregister_critical_after = Duration::from_secs(5);
    let registration = ConsulRegistration::new(client.clone(), service).unwrap();
    registration.register().await.unwrap();
    registration.register().await.unwrap();
    assert_eq!(
        double.service_ids().await,
        ["cart-1"],
        "re-registering replaces"
    );

    let mut watch = consul_watch(client.clone(), "cart");
    assert!(
        next(&mut watch, "starts critical")
            .await
            .unwrap()
            .is_empty()
    );
    registration
        .heartbeat(CheckStatus::Passing, "all good")
        .await
        .unwrap();
    let set = next(&mut watch, "passing").await.unwrap();
    assert_eq!(set.as_slice()[0].weight, 4);
    assert_eq!(set.as_slice()[0].tags, ["blue"]);

    registration
        .heartbeat(CheckStatus::Warning, "slow")
        .await
        .unwrap();
    assert!(
        next(&mut watch, "warning is not passing")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(double.check("service:cart-1").await.unwrap().output, "slow");
    registration
        .heartbeat(CheckStatus::Critical, "db down")
        .await
        .unwrap();
    assert_eq!(
        double.check("service:cart-1").await.unwrap().status,
        "critical"
    );
    registration
        .heartbeat(CheckStatus::Passing, "")
        .await
        .unwrap();
    assert_eq!(next(&mut watch, "passing again").await.unwrap().len(), 1);

    // The agent forgets the service (restart without state, reaper): 404 unknown check.
    assert!(double.deregister("cart-1").await);
    let error = client
        .update_ttl_check("service:cart-1", CheckStatus::Passing, "")
        .await
        .unwrap_err();
    assert!(error.is_not_registered(), "{error}");
    assert_eq!(
        registration
            .heartbeat(CheckStatus::Passing, "back")
            .await
            .unwrap(),
        Heartbeat::Reregistered
    );
    assert_eq!(
        double.check("service:cart-1").await.unwrap().status,
        "passing"
    );

    registration.deregister().await.unwrap();
    assert!(double.service_ids().await.is_empty());
    registration
        .deregister()
        .await
        .expect("an unknown service ID (404) counts as deregistered");
    assert_eq!(RequestCounts::get(&double.requests().deregister), 2);
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_index_going_backwards_restarts_the_loop() {
    let double = ConsulDouble::start().await;
    double
        .register_instance(Instance::new("auth", "auth-1", ip("10.4.0.1"), 443))
        .await;
    double
        .register_instance(Instance::new("auth", "auth-2", ip("10.4.0.2"), 443))
        .await;
    let mut watch = consul_watch(consul_client(&double, None), "auth");
    assert_eq!(next(&mut watch, "initial").await.unwrap().len(), 2);
    let before = watch.index();
    assert!(before > 100);

    // A blocking query is in flight when the agent comes back on an older snapshot.
    let pending = tokio::spawn(async move {
        let result = next(&mut watch, "after restart").await;
        (watch, result)
    });
    let mut index = double.subscribe();
    tokio::time::timeout(PATIENCE, double.blocked_queries(1))
        .await
        .expect("the watch blocks");
    let lower = double.restart_with_lower_index().await;
    assert!(lower < before);
    index.borrow_and_update();
    assert!(
        double.deregister("auth-2").await,
        "a change at an index below the old one"
    );

    let (mut watch, result) = tokio::time::timeout(PATIENCE * 2, pending)
        .await
        .unwrap()
        .unwrap();
    let mut set = result.unwrap();
    if set.len() == 2 {
        // The abandoned query answered before the change; the reset loop must still see it.
        set = next(&mut watch, "change below the old index")
            .await
            .unwrap();
    }
    assert_eq!(addrs(&set), ["10.4.0.1:443"]);
    assert!(watch.index() < before, "the index followed the agent down");
    double
        .register_instance(Instance::new("auth", "auth-3", ip("10.4.0.3"), 443))
        .await;
    assert_eq!(
        next(&mut watch, "blocking again at the new index")
            .await
            .unwrap()
            .len(),
        2
    );
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_index_zero_never_turns_into_a_busy_loop() {
    let double = ConsulDouble::start().await;
    double
        .register_instance(Instance::new("old", "old-1", ip("10.4.1.1"), 80))
        .await;
    double.set_zero_index(true);
    let mut config = ConsulWatchConfig::new("old");
    config.wait = Duration::from_secs(1);
    config.rate_limit = RateLimit {
        burst: 2,
        interval: Duration::ZERO,
    };
    let mut watch = ConsulWatch::new(consul_client(&double, None), config).unwrap();
    assert_eq!(next(&mut watch, "initial").await.unwrap().len(), 1);
    assert_eq!(watch.index(), 1, "index 0 is never blocked on");

    // The agent's index stays 0, so the query at index 1 blocks until `wait` runs out; a
    // client that re-sent index 0 would spin without any rate limit here.
    let requests = RequestCounts::get(&double.requests().health);
    double
        .register_instance(Instance::new("old", "old-2", ip("10.4.1.2"), 80))
        .await;
    assert_eq!(
        next(&mut watch, "change seen after wait")
            .await
            .unwrap()
            .len(),
        2
    );
    let spent = RequestCounts::get(&double.requests().health) - requests;
    assert!(
        spent <= 6,
        "{spent} health queries for one change: busy loop"
    );
    double.stop().await;
}

/// The double's own contract (docs/consul.md §1–3), spoken raw: any drift here would let the
/// client pass against a double that real Consul does not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_double_speaks_consul_plain_text_errors_and_conventions() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let double = ConsulDouble::start().await;
    let http: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let call = |method: &str, path: &str, body: &str| {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", double.url()))
            .body(Full::new(bytes::Bytes::from(body.to_owned())))
            .unwrap();
        let response = http.request(request);
        async move {
            let response = response.await.unwrap();
            let status = response.status().as_u16();
            let index = response
                .headers()
                .get("x-consul-index")
                .map(|v| v.to_str().unwrap().to_owned());
            let text = String::from_utf8(
                response
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            )
            .unwrap();
            (status, text, index)
        }
    };

    let (status, text, index) = call("GET", "/v1/health/service/none", "").await;
    assert_eq!(
        (status, text.as_str()),
        (200, "[]"),
        "unknown service: empty array"
    );
    assert!(index.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        call("GET", "/v1/health/service/x?index=1&wait=5", "")
            .await
            .1,
        "Invalid wait time"
    );
    assert_eq!(
        call("GET", "/v1/health/service/x?index=abc", "").await.1,
        "Invalid index"
    );
    assert_eq!(
        call("GET", "/v1/health/service/x?passing=maybe", "")
            .await
            .1,
        "Invalid value for ?passing"
    );
    assert_eq!(
        call("PUT", "/v1/agent/service/register", r#"{"Port":1}"#)
            .await
            .1,
        "Missing service name"
    );
    let any = call(
        "PUT",
        "/v1/agent/service/register",
        r#"{"Name":"a","Address":"0.0.0.0"}"#,
    )
    .await;
    assert_eq!((any.0, any.1.as_str()), (400, "Invalid service address"));

    // Two checks without IDs are service:<ID>:1 and :2, critical, named after the service;
    // snake_case keys are accepted as Go's decoder does.
    let body = r#"{"name":"svc","id":"svc-1","port":80,
        "check":{"ttl":"10s"},"checks":[{"TTL":"10s","Status":"passing"}]}"#;
    let (status, text, _) = call("PUT", "/v1/agent/service/register", body).await;
    assert_eq!(
        (status, text.as_str()),
        (200, ""),
        "writes answer 200 with an empty body"
    );
    let first = double.check("service:svc-1:1").await.unwrap();
    assert_eq!(
        (first.status.as_str(), first.name.as_str()),
        ("critical", "Service 'svc' check")
    );
    assert_eq!(
        double.check("service:svc-1:2").await.unwrap().status,
        "passing"
    );

    let unknown = call("PUT", "/v1/agent/check/pass/service:nope", "").await;
    assert_eq!(
        (unknown.0, unknown.1.as_str()),
        (
            404,
            r#"Unknown check ID "service:nope". Ensure that the check ID is passed, not the check name."#
        )
    );
    let bad = call(
        "PUT",
        "/v1/agent/check/update/service:svc-1:1",
        r#"{"Status":"ok"}"#,
    )
    .await;
    assert_eq!((bad.0, bad.1.as_str()), (400, "Invalid check status: 'ok'"));
    let long = "x".repeat(5000);
    let update = format!(r#"{{"Status":"warning","Output":"{long}"}}"#);
    assert_eq!(
        call("PUT", "/v1/agent/check/update/service:svc-1:1", &update)
            .await
            .0,
        200
    );
    let capped = double.check("service:svc-1:1").await.unwrap();
    assert!(
        capped
            .output
            .ends_with(" ... (captured 4096 of 5000 bytes)"),
        "OutputMaxSize"
    );
    let gone = call("PUT", "/v1/agent/service/deregister/svc-9", "").await;
    assert_eq!(
        (gone.0, gone.1.as_str()),
        (
            404,
            r#"Unknown service ID "svc-9". Ensure that the service ID is passed, not the service name."#
        )
    );
    assert_eq!(call("GET", "/v1/agent/service/register", "").await.0, 405);
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_agent_down_is_a_transient_error_then_recovers() {
    let double = ConsulDouble::start().await;
    double
        .register_instance(Instance::new("mail", "mail-1", ip("10.5.0.1"), 25))
        .await;
    let mut watch = consul_watch(consul_client(&double, None), "mail");
    let known = next(&mut watch, "initial").await.unwrap();

    // The agent dies while the watch blocks (connection cut), then refuses connections.
    let pending = tokio::spawn(async move {
        let result = next(&mut watch, "agent dies mid-block").await;
        (watch, result)
    });
    tokio::time::timeout(PATIENCE, double.blocked_queries(1))
        .await
        .expect("the watch blocks");
    double.set_down(true).await;
    let (mut watch, result) = pending.await.unwrap();
    let error = result.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let refused = next(&mut watch, "agent down").await.unwrap_err();
    assert!(
        matches!(refused, DiscoveryError::Unreachable { .. }),
        "{refused}"
    );

    // 5xx answers are transient too.
    double.set_down(false).await;
    double
        .set_fault(Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            "No cluster leader",
        )))
        .await;
    let no_leader = next(&mut watch, "no leader").await.unwrap_err();
    assert!(
        matches!(&no_leader, DiscoveryError::Server { status: 500, body, .. } if body == "No cluster leader")
    );
    double.set_fault(None).await;

    // Back: the unchanged set is delivered again, the signal that it is fresh.
    assert_eq!(next(&mut watch, "agent back").await.unwrap(), known);
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_acl_token_is_sent_and_checked() {
    let config = ConsulDoubleConfig {
        acl_token: Some("s3cret".into()),
        ..ConsulDoubleConfig::default()
    };
    let double = ConsulDouble::start_with(config).await;
    double
        .register_instance(Instance::new("vault", "vault-1", ip("10.6.0.1"), 8200))
        .await;

    let mut watch = consul_watch(consul_client(&double, Some("s3cret")), "vault");
    assert_eq!(next(&mut watch, "with token").await.unwrap().len(), 1);
    assert_eq!(double.last_token().await.as_deref(), Some("s3cret"));
    assert!(RequestCounts::get(&double.requests().with_valid_token) >= 1);

    // Without a token reads are filtered to nothing and writes are denied.
    let anonymous = consul_client(&double, None);
    let mut blind = consul_watch(anonymous.clone(), "vault");
    assert!(next(&mut blind, "anonymous").await.unwrap().is_empty());
    let registration =
        ConsulRegistration::new(anonymous, ServiceRegistration::new("x-1", "x", 1)).unwrap();
    let denied = registration.register().await.unwrap_err();
    assert!(
        matches!(&denied, DiscoveryError::Rejected { status: 403, body, .. } if body.starts_with("Permission denied"))
    );
    assert!(!denied.is_transient());

    let mut wrong = consul_watch(consul_client(&double, Some("nope")), "vault");
    let error = next(&mut wrong, "wrong token").await.unwrap_err();
    assert!(
        matches!(&error, DiscoveryError::Rejected { status: 403, body, .. } if body == "ACL not found")
    );
    double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_double_reaps_services_critical_past_the_deadline() {
    let config = ConsulDoubleConfig {
        reap_interval: Duration::from_millis(200),
        deregister_min: Duration::from_millis(500),
        ..ConsulDoubleConfig::default()
    };
    let double = ConsulDouble::start_with(config).await;
    let client = consul_client(&double, None);
    let mut service = ServiceRegistration::new("tmp-1", "tmp", 1234);
    service.ttl = Duration::from_secs(1);
    service.deregister_critical_after = Duration::from_millis(100);
    service.initial_status = Some(CheckStatus::Passing);
    ConsulRegistration::new(client, service)
        .unwrap()
        .register()
        .await
        .unwrap();
    assert_eq!(
        double.check("service:tmp-1").await.unwrap().status,
        "passing"
    );

    let mut index = double.subscribe();
    let reaped = tokio::time::timeout(PATIENCE, async {
        while !double.service_ids().await.is_empty() {
            index.changed().await.unwrap();
        }
    })
    .await;
    assert!(
        reaped.is_ok(),
        "TTL expiry then the reaper must remove the service"
    );
    double.stop().await;
}

// ---------------------------------------------------------------------------------------------
// etcd

const PREFIX: &str = "meshgate/services";

fn etcd_config(server: &EtcdServer) -> EtcdConfig {
    let mut config = EtcdConfig::new([server.endpoint()]);
    config.keep_alive_interval = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(2);
    config
}

fn etcd_watch(server: &EtcdServer, service: &str) -> EtcdWatch {
    let mut config = EtcdWatchConfig::new(service);
    config.prefix = PREFIX.into();
    EtcdWatch::new(etcd_config(server), config).expect("etcd watch")
}

fn etcd_registration(
    server: &EtcdServer,
    service: &str,
    addr: &str,
    ttl: Duration,
) -> EtcdRegistration {
    let endpoint = Endpoint::from_socket_addr(addr.parse().expect("ip:port"))
        .with_weight(3)
        .with_metadata("zone", "z1");
    EtcdRegistration::new(etcd_config(server), PREFIX, service, &endpoint, ttl)
        .expect("etcd registration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leases_register_and_expire() {
    let etcd = EtcdServer::start().await;
    let mut watch = etcd_watch(&etcd, "orders");
    assert!(next(&mut watch, "empty at first").await.unwrap().is_empty());

    let a = etcd_registration(&etcd, "orders", "10.7.0.1:80", Duration::from_secs(2))
        .register()
        .await
        .unwrap();
    let set = converge(&mut watch, "first registration", |s| s.len() == 1).await;
    let endpoint = &set.as_slice()[0];
    assert_eq!(
        (
            endpoint.weight,
            endpoint.metadata.get("zone").map(String::as_str)
        ),
        (3, Some("z1"))
    );
    assert_eq!(
        endpoint.id.as_deref(),
        Some("meshgate/services/orders/10.7.0.1:80")
    );
    let b = etcd_registration(&etcd, "orders", "10.7.0.2:80", Duration::from_secs(2))
        .register()
        .await
        .unwrap();
    assert_eq!(
        addrs(&converge(&mut watch, "second registration", |s| s.len() == 2).await),
        ["10.7.0.1:80", "10.7.0.2:80"]
    );

    // A key written by another etcd naming/endpoints client is read too; other services not.
    let raw = etcd.client().await;
    raw.put(
        format!("{PREFIX}/orders/[::1]:81"),
        r#"{"Op":0,"Addr":"[::1]:81","Metadata":null}"#,
        0,
    )
    .await
    .unwrap();
    raw.put(
        format!("{PREFIX}/orders-v2/10.7.0.9:80"),
        r#"{"Op":0,"Addr":"10.7.0.9:80"}"#,
        0,
    )
    .await
    .unwrap();
    assert_eq!(next(&mut watch, "raw put").await.unwrap().len(), 3);
    raw.delete(format!("{PREFIX}/orders/[::1]:81"))
        .await
        .unwrap();
    assert_eq!(next(&mut watch, "raw delete").await.unwrap().len(), 2);

    // Kept alive past its TTL, then dropped without revoke: the lease expires (2 s TTL).
    let kept_until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut raw_lease = raw.lease_time_to_live(a.lease_id()).await.unwrap();
    assert!(raw_lease.ttl > 0);
    tokio::time::sleep_until(kept_until).await; // inherent: outlive the TTL while beating
    raw_lease = raw.lease_time_to_live(a.lease_id()).await.unwrap();
    assert!(raw_lease.ttl > 0, "keep-alives hold the lease past its TTL");
    drop(a);
    let after_expiry = converge(&mut watch, "lease expiry", |s| s.len() == 1).await;
    assert_eq!(addrs(&after_expiry), ["10.7.0.2:80"]);

    b.deregister().await.unwrap();
    assert!(next(&mut watch, "revoked").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_mid_watch_resumes_and_converges() {
    let mut etcd = EtcdServer::start().await;
    let registration = etcd_registration(&etcd, "search", "10.8.0.1:80", Duration::from_secs(3))
        .register()
        .await
        .unwrap();
    let mut watch = etcd_watch(&etcd, "search");
    assert_eq!(
        converge(&mut watch, "registered", |s| s.len() == 1)
            .await
            .len(),
        1
    );
    let resyncs = watch.resyncs();

    let pending = tokio::spawn(async move {
        let result = tokio::time::timeout(PATIENCE, watch.next_update()).await;
        (watch, result)
    });
    etcd.restart().await;
    let (mut watch, result) = pending.await.unwrap();
    if let Ok(Err(error)) = &result {
        assert!(error.is_transient(), "{error}");
    }

    // After the restart: a second instance appears, the first one's key survives (re-granted
    // or kept alive), and the watch converges on both.
    let second = etcd_registration(&etcd, "search", "10.8.0.2:80", Duration::from_secs(3))
        .register()
        .await
        .unwrap();
    let set = converge(&mut watch, "after restart", |s| s.len() == 2).await;
    assert_eq!(addrs(&set), ["10.8.0.1:80", "10.8.0.2:80"]);
    assert!(
        watch.resyncs() > resyncs,
        "the watch resynced after the restart"
    );

    registration.deregister().await.unwrap();
    second.deregister().await.unwrap();
    assert!(
        converge(&mut watch, "deregistered", EndpointSet::is_empty)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_lease_lost_is_granted_again() {
    let etcd = EtcdServer::start().await;
    let registration = etcd_registration(&etcd, "kv", "10.9.0.1:80", Duration::from_secs(2))
        .register()
        .await
        .unwrap();
    let mut watch = etcd_watch(&etcd, "kv");
    assert_eq!(
        converge(&mut watch, "registered", |s| s.len() == 1)
            .await
            .len(),
        1
    );

    // Someone revokes our lease: the key goes, the keep-alive learns the lease is gone and
    // writes the key again under a new lease.
    let old_lease = registration.lease_id();
    let mut lease = registration.subscribe_lease();
    etcd.client().await.lease_revoke(old_lease).await.unwrap();
    assert!(
        next(&mut watch, "revoked by someone else")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(next(&mut watch, "written again").await.unwrap().len(), 1);
    let new_lease = *tokio::time::timeout(PATIENCE, lease.wait_for(|id| *id != old_lease))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(registration.lease_id(), new_lease);
    assert_eq!(registration.regrants(), 1);
    registration.deregister().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction_while_behind_forces_a_resync() {
    let etcd = EtcdServer::start().await;
    let raw = etcd.client().await;
    let key = |n: usize| format!("{PREFIX}/logs/10.10.{}.{}:80", n / 250, n % 250 + 1);
    raw.put(key(0), r#"{"Op":0,"Addr":"10.10.0.1:80"}"#, 0)
        .await
        .unwrap();
    let mut watch = etcd_watch(&etcd, "logs");
    assert_eq!(next(&mut watch, "initial").await.unwrap().len(), 1);
    let resyncs = watch.resyncs();

    // The watch is not read while a flood of large puts fills its stream: etcd marks the
    // watcher slow. A compaction past its position then cancels it (ErrCompacted).
    let padding = "x".repeat(8 * 1024);
    for n in 1..400 {
        let value = format!(
            r#"{{"Op":0,"Addr":"10.10.{}.{}:80","Metadata":{{"pad":"{padding}"}}}}"#,
            n / 250,
            n % 250 + 1
        );
        raw.put(key(n), value, 0).await.unwrap();
    }
    for n in 0..200 {
        raw.delete(key(n)).await.unwrap();
    }
    let revision = raw.get(key(0)).await.unwrap().header.unwrap().revision;
    raw.compact(revision, true).await.unwrap();

    let addr = |n: usize| key(n).rsplit('/').next().unwrap().parse().unwrap();
    let last_deleted = addr(199);
    let set = converge(&mut watch, "the final state", |s| {
        s.len() == 200 && s.get(last_deleted).is_none()
    })
    .await;
    assert!(set.get(addr(399)).is_some() && set.get(addr(200)).is_some());
    assert!(
        watch.resyncs() > resyncs,
        "the compaction cancelled the watch and forced a resync"
    );
    assert!(watch.revision() >= revision);
}

// ---------------------------------------------------------------------------------------------
// DNS

fn dns_watch(server: &DnsServer, name: &str, query: DnsQuery) -> DnsWatch {
    let mut config = DnsWatchConfig::new(name, query);
    config.nameserver = Some(server.addr());
    config.min_refresh = Duration::from_millis(500);
    config.max_refresh = Duration::from_secs(5);
    config.timeout = Duration::from_secs(1);
    DnsWatch::new(config).expect("dns watch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_address_records_followed_after_the_ttl() {
    let dns = DnsServer::start("test.", 1).await;
    dns.set_addresses("web.test.", &[ip("127.0.1.1"), ip("127.0.1.2"), ip("::1")])
        .await;
    let mut watch = dns_watch(&dns, "web.test.", DnsQuery::Ip { port: 8080 });
    let first = next(&mut watch, "A and AAAA").await.unwrap();
    assert_eq!(
        addrs(&first),
        ["127.0.1.1:8080", "127.0.1.2:8080", "[::1]:8080"]
    );
    assert!(first.iter().all(|e| e.weight == 1));

    dns.set_addresses("web.test.", &[ip("127.0.1.3")]).await;
    assert_eq!(
        addrs(&next(&mut watch, "changed records").await.unwrap()),
        ["127.0.1.3:8080"]
    );

    // A name the zone does not have is an empty set, not an error.
    dns.set_addresses("web.test.", &[]).await;
    assert!(
        next(&mut watch, "records removed")
            .await
            .unwrap()
            .is_empty()
    );
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_srv_priorities_and_weights() {
    let dns = DnsServer::start("test.", 1).await;
    dns.set_addresses("a.test.", &[ip("127.0.2.1")]).await;
    dns.set_addresses("b.test.", &[ip("127.0.2.2"), ip("::2")])
        .await;
    dns.set_addresses("backup.test.", &[ip("127.0.2.9")]).await;
    let srv = |priority, weight, port, target: &str| Srv {
        priority,
        weight,
        port,
        target: target.into(),
    };
    dns.set_srv(
        "_http._tcp.api.test.",
        &[
            srv(10, 5, 8001, "a.test."),
            srv(10, 1, 8002, "b.test."),
            srv(20, 9, 9000, "backup.test."),
        ],
    )
    .await;
    let mut watch = dns_watch(&dns, "_http._tcp.api.test.", DnsQuery::Srv);
    let set = next(&mut watch, "SRV").await.unwrap();
    assert_eq!(
        addrs(&set),
        ["127.0.2.1:8001", "127.0.2.2:8002", "[::2]:8002"],
        "only the lowest priority"
    );
    let weights: Vec<u32> = set.iter().map(|e| e.weight).collect();
    assert_eq!(weights, [5, 1, 1]);
    assert_eq!(set.as_slice()[0].id.as_deref(), Some("a.test.:8001"));

    // The lowest group's targets lose their addresses: the next group takes over.
    dns.set_addresses("a.test.", &[]).await;
    dns.set_addresses("b.test.", &[]).await;
    let fallback = next(&mut watch, "priority fallback").await.unwrap();
    assert_eq!(addrs(&fallback), ["127.0.2.9:9000"]);
    assert_eq!(fallback.as_slice()[0].weight, 9);

    // Weight 0 everywhere means "no selection to do": equal weights.
    dns.set_srv("_http._tcp.api.test.", &[srv(1, 0, 7000, "backup.test.")])
        .await;
    let equal = next(&mut watch, "zero weights").await.unwrap();
    assert_eq!(
        (addrs(&equal), equal.as_slice()[0].weight),
        (vec!["127.0.2.9:7000".to_string()], 1)
    );
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_server_gone_is_a_transient_error() {
    let dns = DnsServer::start("test.", 1).await;
    dns.set_addresses("svc.test.", &[ip("127.0.3.1")]).await;
    let mut watch = dns_watch(&dns, "svc.test.", DnsQuery::Ip { port: 53 });
    let known = next(&mut watch, "initial").await.unwrap();
    assert_eq!(known.len(), 1);
    dns.stop().await;
    let error = next(&mut watch, "server gone").await.unwrap_err();
    assert!(error.is_transient(), "{error}");
}

/// §6: the Connect CA's roots need no token, a leaf needs `service:write`; the agent answers
/// its cached leaf until it renews it or the root rotates (then with the cross-signed
/// intermediate after the leaf).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_connect_roots_and_cached_leaves() {
    let double = ConsulDouble::start_with(ConsulDoubleConfig {
        acl_token: Some("s3cret".into()),
        ..ConsulDoubleConfig::default()
    })
    .await;
    let anonymous = consul_client(&double, None);
    let roots = anonymous.connect_ca_roots().await.unwrap();
    assert_eq!(roots.roots.len(), 1);
    let first_root = roots.active().unwrap().clone();
    assert!(first_root.active && first_root.intermediate_certs.is_empty());
    assert_eq!(
        first_root.external_trust_domain,
        "7f42f496-fbc7-8692-05ed-334aa5340c1e"
    );
    let denied = anonymous.connect_ca_leaf("web").await.unwrap_err();
    assert!(
        matches!(&denied, DiscoveryError::Rejected { status: 403, body, .. } if body.contains("service:write")),
        "{denied}"
    );

    let client = consul_client(&double, Some("s3cret"));
    let leaf = client.connect_ca_leaf("web").await.unwrap();
    assert_eq!(leaf.service_uri, double.connect_spiffe_id("web").await);
    assert_eq!(leaf.service, "web");
    assert!(
        leaf.private_key_pem
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    assert_eq!(leaf.cert_pem.matches("BEGIN CERTIFICATE").count(), 1);
    let again = client.connect_ca_leaf("web").await.unwrap();
    assert_eq!(again.serial_number, leaf.serial_number, "the agent's cache");

    double.connect_renew_leaf("web").await;
    let renewed = client.connect_ca_leaf("web").await.unwrap();
    assert_ne!(renewed.serial_number, leaf.serial_number);
    assert!(renewed.modify_index > leaf.modify_index);

    double.connect_rotate_root().await;
    let roots = client.connect_ca_roots().await.unwrap();
    assert_eq!(roots.roots.len(), 2);
    let active = roots.active().unwrap();
    assert_ne!(active.id, first_root.id);
    assert_eq!(active.intermediate_certs.len(), 1);
    assert!(
        roots
            .roots
            .iter()
            .any(|r| r.id == first_root.id && !r.active)
    );
    let rotated = client.connect_ca_leaf("web").await.unwrap();
    assert_ne!(rotated.serial_number, renewed.serial_number);
    assert_eq!(rotated.cert_pem.matches("BEGIN CERTIFICATE").count(), 2);
    double.stop().await;
}
