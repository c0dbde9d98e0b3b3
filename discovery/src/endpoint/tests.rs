//! Unit tests of `endpoint`: pure logic only; behaviour against real servers is in tests/tests/discovery.rs.

use super::*;

fn ep(addr: &str) -> Endpoint {
    Endpoint::from_socket_addr(addr.parse().unwrap())
}

#[test]
fn set_is_sorted_and_unique_per_address() {
    let set = EndpointSet::new([
        ep("10.0.0.2:80"),
        ep("10.0.0.1:80").with_weight(5),
        ep("10.0.0.1:80").with_weight(2),
        ep("10.0.0.1:81"),
    ]);
    assert_eq!(
        set.addrs(),
        vec![
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.1:81".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap()
        ]
    );
    // The duplicate that sorts first (lower weight) wins, whatever the input order.
    assert_eq!(set.get("10.0.0.1:80".parse().unwrap()).unwrap().weight, 2);
    let reversed = EndpointSet::new(set.clone().into_vec().into_iter().rev());
    assert_eq!(set, reversed);
}

#[test]
fn get_misses_unknown_address() {
    let set = EndpointSet::new([ep("[::1]:443")]);
    assert!(set.get("127.0.0.1:443".parse().unwrap()).is_none());
    assert!(set.get("[::1]:443".parse().unwrap()).is_some());
}
