use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderValue, Method, Uri};

use super::*;

fn finished(day: i64, consumer: Option<&str>, route: &str, status: u16) -> FinishedRequest {
    FinishedRequest {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(day as u64 * SECONDS_PER_DAY + 3600),
        request_id: HeaderValue::from_static("r"),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        method: Method::GET,
        uri: Uri::from_static("/"),
        status,
        bytes_in: 10,
        bytes_out: 100,
        total: Duration::from_millis(2),
        upstream_time: None,
        gateway_time: Duration::ZERO,
        route: route.into(),
        upstream: None,
        endpoint: None,
        consumer: consumer.map(Into::into),
        user_agent: None,
        tls_version: None,
        listener: "main".into(),
        trace_id: None,
        headers: Vec::new(),
        aborted: false,
    }
}

fn spec(max_entries: usize, retention_days: u32) -> AnalyticsSpec {
    AnalyticsSpec {
        max_entries,
        retention_days,
    }
}

#[test]
fn dates_round_trip_through_days() {
    for (text, day) in [
        ("1970-01-01", 0),
        ("2000-03-01", 11_017),
        ("2024-02-29", 19_782),
    ] {
        assert_eq!(parse_day(text), Some(day), "{text}");
        assert_eq!(format_day(day), text);
    }
    for bad in [
        "2023-02-29",
        "2024-13-01",
        "2024-1-01",
        "yesterday",
        "2024-00-10",
    ] {
        assert_eq!(parse_day(bad), None, "{bad}");
    }
    assert_eq!(
        day_of(SystemTime::UNIX_EPOCH + Duration::from_secs(86_399)),
        0
    );
    assert_eq!(
        day_of(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)),
        1
    );
}

#[test]
fn usage_sums_per_consumer_route_class_and_day() {
    let mut store = UsageStore::new(spec(100, 30));
    for _ in 0..3 {
        store.add(&finished(100, Some("acme"), "users", 200));
    }
    store.add(&finished(100, Some("acme"), "users", 503));
    store.add(&finished(101, None, "users", 201));
    let all = store.query(&UsageQuery::default());
    assert_eq!(all.rows.len(), 3);
    assert_eq!(all.totals().requests, 5);
    assert_eq!(all.totals().bytes_out, 500);
    assert_eq!(all.totals().latency_us_sum, 10_000);
    let acme = store.query(&UsageQuery {
        consumer: Some("acme".into()),
        ..Default::default()
    });
    assert_eq!(acme.totals().requests, 4);
    let day = store.query(&UsageQuery {
        from: Some(101),
        to: Some(101),
        consumer: None,
    });
    assert_eq!(day.rows.len(), 1);
    assert_eq!(day.rows[0].day, format_day(101));
    assert_eq!(day.rows[0].consumer, None);
    assert_eq!(day.rows[0].status_class, "2xx");
}

#[test]
fn memory_is_bounded_and_totals_stay_right() {
    let mut store = UsageStore::new(spec(2, 30));
    store.add(&finished(5, Some("a"), "r", 200));
    store.add(&finished(5, Some("b"), "r", 200));
    store.add(&finished(5, Some("c"), "r", 200));
    store.add(&finished(5, Some("d"), "r", 200));
    assert_eq!(store.overflowed(), 2);
    assert_eq!(store.len(), 3, "two keys and the overflow key");
    let report = store.query(&UsageQuery::default());
    assert_eq!(report.totals().requests, 4);
    assert!(report.rows.iter().any(|r| r.route == OVERFLOW));
}

#[test]
fn old_days_fall_out_of_the_retention_window() {
    let mut store = UsageStore::new(spec(100, 2));
    store.add(&finished(10, None, "r", 200));
    store.add(&finished(11, None, "r", 200));
    store.add(&finished(12, None, "r", 200));
    let days: Vec<String> = store
        .query(&UsageQuery::default())
        .rows
        .into_iter()
        .map(|r| r.day)
        .collect();
    assert_eq!(days, vec![format_day(11), format_day(12)]);
    store.add(&finished(9, None, "r", 200));
    assert_eq!(
        store.len(),
        2,
        "a late record for a dropped day is not kept"
    );
}

#[test]
fn queries_parse_dates_formats_and_reject_nonsense() {
    let (q, f) =
        UsageQuery::parse(Some("from=2024-01-01&to=2024-01-31&consumer=ac%20me"), None).unwrap();
    assert_eq!(q.from, parse_day("2024-01-01"));
    assert_eq!(q.to, parse_day("2024-01-31"));
    assert_eq!(q.consumer.as_deref(), Some("ac me"));
    assert_eq!(f, UsageFormat::Json);
    assert_eq!(
        UsageQuery::parse(Some("format=csv"), None).unwrap().1,
        UsageFormat::Csv
    );
    assert_eq!(
        UsageQuery::parse(None, Some("text/csv")).unwrap().1,
        UsageFormat::Csv
    );
    assert!(UsageQuery::parse(Some("from=2024-02-30"), None).is_err());
    assert!(UsageQuery::parse(Some("from=2024-02-02&to=2024-02-01"), None).is_err());
    assert!(UsageQuery::parse(Some("format=xml"), None).is_err());
    assert!(UsageQuery::parse(Some("limit=3"), None).is_err());
}

#[test]
fn csv_quotes_fields_that_need_it() {
    let mut store = UsageStore::new(spec(10, 30));
    store.add(&finished(3, Some("a,\"b\""), "r", 404));
    let csv = store.query(&UsageQuery::default()).to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "day,consumer,route,status_class,requests,bytes_in,bytes_out,latency_ms_sum"
    );
    assert_eq!(lines[1], "1970-01-04,\"a,\"\"b\"\"\",r,4xx,1,10,100,2");
}
