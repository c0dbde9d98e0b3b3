use http::HeaderMap;

use super::*;

#[test]
fn an_unsampled_root_gets_a_traceparent_with_the_flag_off() {
    let sampling = Sampling { ratio: 0.0 };
    let mut headers = HeaderMap::new();
    headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
    let span = sampling.request_span(&Method::GET, "/", &mut headers);
    assert!(span.is_disabled());
    let tp = headers.get(TRACEPARENT).unwrap().to_str().unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "00", "not sampled");
    assert!(headers.get(TRACESTATE).is_none());
}

#[test]
fn a_clients_unsampled_trace_passes_through_untouched() {
    let sampling = Sampling { ratio: 1.0 };
    let mut headers = HeaderMap::new();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    headers.insert(TRACEPARENT, HeaderValue::from_static(tp));
    headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
    let span = sampling.request_span(&Method::GET, "/", &mut headers);
    assert!(span.is_disabled(), "the client's flag wins over the ratio");
    assert_eq!(headers.get(TRACEPARENT).unwrap(), tp);
    assert_eq!(headers.get(TRACESTATE).unwrap(), "vendor=1");
}

#[test]
fn helpers_do_nothing_for_untraced_requests() {
    let none = Span::none();
    assert!(routing_span(&none).is_disabled());
    assert!(filters_span(&none).is_disabled());
    assert!(upstream_span(&none, "u").is_disabled());
    let mut headers = HeaderMap::new();
    inject(&none, &mut headers);
    assert!(headers.is_empty());
    assert_eq!(trace_id(&none), None);
}
