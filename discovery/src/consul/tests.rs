//! Unit tests of `consul`: pure logic only; behaviour against real servers is in tests/tests/discovery.rs.

use std::time::Duration;

use super::client::{HealthQuery, health_path, parse_authority, tag_filter};
use super::watch::{RateLimit, bucket_waits_for_tests, endpoint_set, next_index};
use super::wire::ServiceEntry;
use super::*;

#[test]
fn go_durations_parse_in_go() {
    assert_eq!(go_duration(Duration::from_secs(15)), "15s");
    assert_eq!(go_duration(Duration::from_secs(0)), "0s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(go_duration(Duration::from_nanos(1_000_001)), "1000001ns");
}

#[test]
fn index_rules_follow_blocking_docs() {
    assert_eq!(next_index(0, 42), 42);
    assert_eq!(next_index(42, 42), 42, "an unchanged index is kept");
    assert_eq!(next_index(42, 50), 50);
    assert_eq!(next_index(42, 7), 0, "backwards resets to 0");
    assert_eq!(next_index(0, 0), 1, "0 is never blocked on");
    assert_eq!(next_index(5, 0), 0, "0 after 5 is backwards: reset first");
}

#[test]
fn health_path_carries_filters_and_blocking_params() {
    let query = HealthQuery {
        service: "web api".into(),
        datacenter: Some("dc 2".into()),
        tags: vec!["primary".into(), "v\"2".into()],
        passing_only: true,
    };
    assert_eq!(
        health_path(&query, 0, Duration::from_secs(60)),
        "/v1/health/service/web%20api?passing&dc=dc%202&filter=%22primary%22%20in%20Service.Tags%20and%20%22v%5C%222%22%20in%20Service.Tags"
    );
    let plain = HealthQuery {
        service: "web".into(),
        datacenter: None,
        tags: vec![],
        passing_only: false,
    };
    assert_eq!(
        health_path(&plain, 12, Duration::from_secs(60)),
        "/v1/health/service/web?index=12&wait=60s"
    );
    assert_eq!(tag_filter(&[]), None);
}

#[test]
fn agent_address_forms() {
    assert_eq!(
        parse_authority("http://127.0.0.1:8500").unwrap(),
        "127.0.0.1:8500"
    );
    assert_eq!(
        parse_authority("127.0.0.1:8500/").unwrap(),
        "127.0.0.1:8500"
    );
    assert_eq!(parse_authority("[::1]:8500").unwrap(), "[::1]:8500");
    assert!(
        !parse_authority("https://consul:8501")
            .unwrap_err()
            .is_transient()
    );
    assert!(parse_authority("consul").is_err(), "a port is required");
    assert!(parse_authority("http://h:1/v1").is_err());
}

/// The sample answer of api-docs/health.mdx, plus instances that must be skipped.
const SAMPLE: &str = r#"[
  {"Node":{"ID":"40e4a748","Node":"foobar","Address":"10.1.10.12","Datacenter":"dc1",
           "TaggedAddresses":{"lan":"10.1.10.12","wan":"10.1.10.12"},"Meta":{"instance_type":"t2.medium"}},
   "Service":{"ID":"redis","Service":"redis","Tags":["primary"],"Address":"",
              "TaggedAddresses":{"lan":{"address":"10.1.10.12","port":8000}},
              "Meta":{"redis_version":"4.0"},"Port":8000,"Weights":{"Passing":10,"Warning":1},"Namespace":"default"},
   "Checks":[{"Node":"foobar","CheckID":"service:redis","Name":"Service 'redis' check","Status":"passing",
              "Notes":"","Output":"","ServiceID":"redis","ServiceName":"redis","ServiceTags":["primary"]},
             {"Node":"foobar","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing",
              "Notes":"","Output":"","ServiceID":"","ServiceName":"","ServiceTags":[]}]},
  {"Node":{"Node":"n2","Address":"10.1.10.13"},
   "Service":{"ID":"redis2","Service":"redis","Tags":null,"Address":"10.9.9.9","Meta":null,"Port":8001,"Weights":null},
   "Checks":[{"CheckID":"service:redis2","Status":"warning","ServiceID":"redis2"}]},
  {"Node":{"Node":"n3","Address":"10.1.10.14"},
   "Service":{"ID":"redis3","Service":"redis","Tags":[],"Address":"","Port":8002},
   "Checks":[{"CheckID":"serfHealth","Status":"critical"}]},
  {"Node":{"Node":"n4","Address":"redis4.example"},
   "Service":{"ID":"redis4","Service":"redis","Address":"","Port":8003},"Checks":[]}
]"#;

#[test]
fn entries_become_endpoints() {
    let entries: Vec<ServiceEntry> = serde_json::from_str(SAMPLE).unwrap();

    let passing = endpoint_set(&entries, true);
    assert_eq!(
        passing.len(),
        1,
        "warning, critical node and hostname instances are skipped"
    );
    let redis = &passing.as_slice()[0];
    assert_eq!(
        redis.socket_addr(),
        "10.1.10.12:8000".parse().unwrap(),
        "empty Service.Address → Node.Address"
    );
    assert_eq!(redis.weight, 10);
    assert_eq!(redis.tags, vec!["primary".to_string()]);
    assert_eq!(
        redis.metadata.get("redis_version").map(String::as_str),
        Some("4.0")
    );
    assert_eq!(redis.id.as_deref(), Some("redis"));

    let with_warning = endpoint_set(&entries, false);
    assert_eq!(with_warning.len(), 2);
    let warned = with_warning.get("10.9.9.9:8001".parse().unwrap()).unwrap();
    assert_eq!(warned.weight, 1, "default Weights when null");
    assert!(warned.tags.is_empty() && warned.metadata.is_empty());
}

#[tokio::test(start_paused = true)]
async fn bucket_allows_a_burst_then_paces() {
    let limit = RateLimit {
        burst: 2,
        interval: Duration::from_secs(15),
    };
    assert_eq!(bucket_waits_for_tests(limit, 2).await, Duration::ZERO);
    let paced = bucket_waits_for_tests(limit, 4).await;
    assert!(
        paced >= Duration::from_secs(30) && paced < Duration::from_secs(31),
        "{paced:?}"
    );
    let unlimited = RateLimit {
        burst: 2,
        interval: Duration::ZERO,
    };
    assert_eq!(bucket_waits_for_tests(unlimited, 100).await, Duration::ZERO);
}

#[test]
fn registration_body_follows_agent_service_registration() {
    let mut service = ServiceRegistration::new("web-1", "web", 8080);
    service.address = Some([10, 0, 0, 5].into());
    service.tags = vec!["v2".into()];
    service.weights = Some(ServiceWeights {
        passing: 3,
        warning: 1,
    });
    service.deregister_critical_after = Duration::from_secs(60);
    let client = ConsulClient::new(&ConsulConfig::new("127.0.0.1:8500")).unwrap();
    let registration = ConsulRegistration::new(client.clone(), service.clone()).unwrap();
    assert_eq!(registration.check_id(), "service:web-1");
    assert_eq!(registration.heartbeat_interval(), Duration::from_secs(5));

    let body = serde_json::to_value(registration_body_for_tests(&service)).unwrap();
    assert_eq!(body["ID"], "web-1");
    assert_eq!(body["Name"], "web");
    assert_eq!(body["Address"], "10.0.0.5");
    assert_eq!(body["Port"], 8080);
    assert_eq!(body["Weights"]["Passing"], 3);
    assert_eq!(body["Check"]["TTL"], "15s");
    assert_eq!(body["Check"]["DeregisterCriticalServiceAfter"], "60s");
    assert!(
        body["Check"].get("CheckID").is_none(),
        "the agent names it service:<ID>"
    );
    assert!(
        body["Check"].get("Status").is_none(),
        "starts critical by default"
    );

    service.address = Some("0.0.0.0".parse().unwrap());
    assert!(ConsulRegistration::new(client, service).is_err());
}

fn registration_body_for_tests(service: &ServiceRegistration) -> wire::RegisterBody {
    service.body_for_tests()
}
