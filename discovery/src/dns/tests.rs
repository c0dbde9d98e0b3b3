//! Unit tests of `dns`: pure logic only; behaviour against real servers is in tests/tests/discovery.rs.

use super::*;

#[test]
fn refresh_is_bounded() {
    let mut config = DnsWatchConfig::new("web.test.", DnsQuery::Ip { port: 80 });
    config.nameserver = Some("127.0.0.1:5353".parse().unwrap());
    config.min_refresh = Duration::from_secs(1);
    config.max_refresh = Duration::from_secs(30);
    let watch = DnsWatch::new(config).unwrap();
    assert_eq!(watch.refresh_after(Duration::ZERO), Duration::from_secs(1));
    assert_eq!(
        watch.refresh_after(Duration::from_secs(7)),
        Duration::from_secs(7)
    );
    assert_eq!(
        watch.refresh_after(Duration::from_secs(3600)),
        Duration::from_secs(30)
    );
}

#[test]
fn bad_bounds_are_config_errors() {
    let mut config = DnsWatchConfig::new("web.test.", DnsQuery::Srv);
    config.nameserver = Some("127.0.0.1:5353".parse().unwrap());
    config.min_refresh = Duration::from_secs(10);
    config.max_refresh = Duration::from_secs(1);
    let error = DnsWatch::new(config).unwrap_err();
    assert!(!error.is_transient());
}
