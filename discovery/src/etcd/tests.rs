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

#[test]
fn prefix_range_ends_as_etcd_computes_them() {
    use super::client::prefix_end;
    // clientv3.GetPrefixRangeEnd: the last byte below 0xff incremented, what follows dropped.
    assert_eq!(prefix_end(b"svc/web/"), b"svc/web0".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
    // Nothing to increment: "\0" means every key from the start key on.
    assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    assert_eq!(prefix_end(b""), vec![0]);
}

#[test]
fn endpoints_need_a_usable_url() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect =
        |endpoints: Vec<&str>| runtime.block_on(EtcdClient::connect(&EtcdConfig::new(endpoints)));
    assert!(matches!(
        connect(vec![]),
        Err(crate::error::DiscoveryError::Config { .. })
    ));
    let https = connect(vec!["https://127.0.0.1:2379"]).unwrap_err();
    assert!(https.to_string().contains("only http://"), "{https}");
    assert!(!https.is_transient());

    // Nobody listens: transient, and the error names the endpoint.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = connect(vec![url.as_str()]).unwrap_err();
    assert!(down.is_transient(), "{down}");
    assert!(down.to_string().contains(&url), "{down}");
}
