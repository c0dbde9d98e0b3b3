//! Unit tests of `etcd`: pure logic only; behaviour against real servers is in tests/tests/discovery.rs.

use super::*;

#[test]
fn prefixes_end_with_a_slash() {
    assert_eq!(
        service_prefix("meshgate/services/", "web"),
        "meshgate/services/web/"
    );
    assert_eq!(service_prefix("/svc", "web"), "/svc/web/");
    assert_eq!(service_prefix("", "web"), "web/");
}

#[test]
fn naming_values_round_trip() {
    let endpoint = Endpoint::new("10.0.0.1".parse().unwrap(), 8080)
        .with_weight(3)
        .with_tags(["canary"])
        .with_metadata("zone", "eu-1");
    let value = NamingValue::from_endpoint(&endpoint);
    let json = serde_json::to_value(&value).unwrap();
    assert_eq!(json["Op"], 0);
    assert_eq!(json["Addr"], "10.0.0.1:8080");
    assert_eq!(json["Metadata"]["zone"], "eu-1");
    let back = value.to_endpoint("svc/web/10.0.0.1:8080").unwrap();
    assert_eq!(back, endpoint.with_id("svc/web/10.0.0.1:8080"));
}

#[test]
fn values_written_by_go_clients_are_read() {
    // endpoints.Endpoint{Addr, Metadata: nil} as Go's json.Marshal writes it, and IPv6.
    let go: NamingValue =
        serde_json::from_str(r#"{"Op":0,"Addr":"[::1]:9000","Metadata":null}"#).unwrap();
    let endpoint = go.to_endpoint("k").unwrap();
    assert_eq!(endpoint.socket_addr(), "[::1]:9000".parse().unwrap());
    assert_eq!(endpoint.weight, Endpoint::DEFAULT_WEIGHT);

    let odd: NamingValue = serde_json::from_str(
        r#"{"Addr":"10.0.0.2:1","Metadata":{"weight":"x","replicas":3,"on":true}}"#,
    )
    .unwrap();
    let endpoint = odd.to_endpoint("k").unwrap();
    assert_eq!(
        endpoint.metadata.get("replicas").map(String::as_str),
        Some("3")
    );
    assert_eq!(
        endpoint.metadata.get("weight").map(String::as_str),
        Some("x")
    );

    let host: NamingValue = serde_json::from_str(r#"{"Op":0,"Addr":"web.internal:80"}"#).unwrap();
    assert!(
        host.to_endpoint("k").is_none(),
        "hostnames are not endpoints"
    );
}

#[test]
fn registration_keys_and_ttls() {
    let etcd = EtcdConfig::new(["http://127.0.0.1:2379"]);
    let endpoint = Endpoint::new("10.0.0.1".parse().unwrap(), 8080);
    let registration = EtcdRegistration::new(
        etcd.clone(),
        "meshgate/services",
        "web",
        &endpoint,
        Duration::from_millis(1500),
    )
    .unwrap();
    assert_eq!(registration.key(), "meshgate/services/web/10.0.0.1:8080");
    assert_eq!(
        registration.keep_alive_interval(),
        Duration::from_secs(2) / 3,
        "TTL rounded up to 2s"
    );
    let unspecified = Endpoint::new("0.0.0.0".parse().unwrap(), 8080);
    assert!(
        EtcdRegistration::new(
            etcd.clone(),
            "p",
            "web",
            &unspecified,
            Duration::from_secs(10)
        )
        .is_err()
    );
    assert!(EtcdRegistration::new(etcd, "p", "a/b", &endpoint, Duration::from_secs(10)).is_err());
}
