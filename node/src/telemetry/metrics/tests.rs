use super::*;

#[test]
fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(100)); // ≤ 0.5 ms
    h.observe(Duration::from_millis(1)); // exactly the 1 ms bound: counted in it
    h.observe(Duration::from_millis(700)); // ≤ 1 s
    h.observe(Duration::from_secs(120)); // +Inf
    let c = h.cumulative();
    assert_eq!(c[0], 1, "0.5 ms bucket");
    assert_eq!(c[1], 2, "1 ms bucket includes its bound");
    assert_eq!(c[10], 3, "1 s bucket");
    assert_eq!(c[15], 3, "60 s bucket");
    assert_eq!(c[16], 4, "+Inf is the count");
    assert_eq!(h.count(), 4);
    assert!(
        (h.sum_seconds() - 120.7011).abs() < 1e-9,
        "{}",
        h.sum_seconds()
    );
}

#[test]
fn methods_and_statuses_map_to_bounded_labels() {
    assert_eq!(METHOD_LABELS[method_index(&Method::GET)], "GET");
    assert_eq!(METHOD_LABELS[method_index(&Method::PATCH)], "PATCH");
    let custom = Method::from_bytes(b"PURGE").unwrap();
    assert_eq!(METHOD_LABELS[method_index(&custom)], "OTHER");
    assert_eq!(STATUS_CLASSES[status_class(101)], "1xx");
    assert_eq!(STATUS_CLASSES[status_class(204)], "2xx");
    assert_eq!(STATUS_CLASSES[status_class(404)], "4xx");
    assert_eq!(STATUS_CLASSES[status_class(599)], "5xx");
    assert_eq!(STATUS_CLASSES[status_class(999)], "5xx");
}

#[test]
fn route_handles_survive_a_reload_for_the_same_name_and_upstream() {
    let metrics = Metrics::default();
    let key = |r: &str, u: &str| (Arc::<str>::from(r), Arc::<str>::from(u));
    let first = metrics.resolve_routes(&[key("users", "u1"), key("old", "-")]);
    first[0].record(&Outcome {
        method: 0,
        status: 200,
        total: Duration::from_millis(3),
        upstream: Some(Duration::from_millis(2)),
        gateway: Duration::from_millis(1),
        request_bytes: 10,
        response_bytes: 20,
    });
    let second = metrics.resolve_routes(&[key("users", "u1"), key("users2", "u2")]);
    assert!(
        Arc::ptr_eq(&first[0], &second[0]),
        "same route and upstream: same handle"
    );
    assert_eq!(second[0].requests(0, 1), 1, "the count carried over");
    assert!(!Arc::ptr_eq(&first[1], &second[1]));
    // The same name pointed at another upstream is another series.
    let third = metrics.resolve_routes(&[key("users", "u9")]);
    assert!(!Arc::ptr_eq(&first[0], &third[0]));
    assert_eq!(
        metrics.routes.load().len(),
        1,
        "removed routes stop being exported"
    );
}

#[test]
fn connection_guards_count_active_and_total() {
    let metrics = Metrics::default();
    let listeners = metrics.resolve_listeners(&["main".into()]);
    let main = &listeners["main"];
    let a = main.open();
    let b = main.open();
    assert_eq!((main.active(), main.total()), (2, 2));
    drop(a);
    drop(b);
    assert_eq!((main.active(), main.total()), (0, 2));
    let again = metrics.resolve_listeners(&["main".into()]);
    assert!(Arc::ptr_eq(main, &again["main"]));
}

#[test]
fn hooks_record_ejections_and_times() {
    let metrics = Metrics::default();
    metrics.upstream_ejected("users");
    metrics.upstream_ejected("users");
    assert_eq!(metrics.ejections.load()["users"].load(Ordering::Relaxed), 2);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
    metrics.discovery_synced("consul:users", at);
    metrics.certificate_expires("mesh-leaf", at);
    assert_eq!(metrics.discovery_synced.load()["consul:users"], at);
    assert_eq!(metrics.certificates.load()["mesh-leaf"], at);
}

#[test]
fn label_values_are_escaped_in_the_exposition() {
    let mut out = String::new();
    exposition_escape(&mut out, "a\"b\\c\nd");
    assert_eq!(out, "a\\\"b\\\\c\\nd");
}

fn exposition_escape(out: &mut String, value: &str) {
    super::exposition::escape_label(out, value);
}

#[test]
fn every_family_is_declared_once_with_help_and_type() {
    let metrics = Metrics::default();
    let handles = metrics.resolve_routes(&[("we\"ird".into(), "u".into())]);
    handles[0].auth_rejected(&Method::POST);
    handles[0].rate_limited(&Method::GET);
    let snapshot = meshgate_actors::Snapshot {
        generation: 3,
        config: std::sync::Arc::new(
            meshgate_config::compile(&meshgate_config::Config::default()).unwrap(),
        ),
        upstreams: Vec::new(),
        bound: Vec::new(),
        tls: Vec::new(),
        mesh: None,
        ca_address: None,
        loaded_at: SystemTime::now(),
        extension: None,
    };
    let view = meshgate_actors::NodeView::new(snapshot);
    let text = exposition::render(&exposition::Scrape {
        metrics: &metrics,
        view: &view,
        recorder: exposition::RecorderStats::default(),
        security: Some(Default::default()),
    });
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(types.len(), helps);
    let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a family declared twice");
    assert!(text.contains("meshgate_config_generation 3\n"), "{text}");
    assert!(
        text.contains("meshgate_auth_rejections_total{route=\"we\\\"ird\",method=\"POST\"} 1\n")
    );
    assert!(
        text.contains(
            "meshgate_rate_limit_rejections_total{route=\"we\\\"ird\",method=\"GET\"} 1\n"
        )
    );
    assert!(text.contains(
        "meshgate_request_duration_seconds_bucket{route=\"-\",upstream=\"-\",le=\"+Inf\"} 0\n"
    ));
}
