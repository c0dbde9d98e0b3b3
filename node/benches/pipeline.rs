//! One proxied request through the data plane's own per-request work, without the network:
//! request id, path normalisation, routing (1,000 routes), header rewriting towards the
//! upstream and back. What a proxy spends beyond this is hyper, tokio and the kernel.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Version};
use meshgate::proxy::headers::{self, ClientSide};
use meshgate::router;
use meshgate::server::request_id;

#[path = "support/routes.rs"]
mod routes;

fn upstream_response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    h.insert("content-length", HeaderValue::from_static("13"));
    h.insert(
        "date",
        HeaderValue::from_static("Fri, 27 Nov 2026 19:45:12 GMT"),
    );
    h
}

fn pipeline(c: &mut Criterion) {
    let table = routes::route_table(1_000);
    let t = routes::middle_template(1_000);
    let incoming = routes::request(&format!("/t{t}/items/42?x=1"));
    let response = upstream_response_headers();
    // Formatted once per connection in the server.
    let ip = &meshgate::server::ip_header_value(IpAddr::V4(Ipv4Addr::LOCALHOST));
    c.bench_function("request_pipeline", |b| {
        b.iter(|| {
            let mut req = incoming.clone();
            let id = request_id::take_or_generate(req.headers());
            let path = router::normalize(req.uri().path()).expect("canonical path");
            let matched = router::find_route(&table, &req, &path).expect("a route matches");
            let host = req.headers().get(http::header::HOST).cloned();
            let client = ClientSide {
                ip,
                tls: false,
                version: Version::HTTP_11,
                host: host.as_ref(),
            };
            headers::to_upstream(req.headers_mut(), &client, &id, false);
            let mut back = response.clone();
            headers::to_client(&mut back, Version::HTTP_11, &id, false);
            black_box((matched, req, back))
        })
    });
    // The pieces, to see which dominates.
    c.bench_function("request_id_generate", |b| b.iter(request_id::generate));
    let host = HeaderValue::from_static("127.0.0.1:8080");
    let client = ClientSide {
        ip,
        tls: false,
        version: Version::HTTP_11,
        host: Some(&host),
    };
    let id = HeaderValue::from_static("0b6c3a52-6a8e-4d38-9d0c-3c5b1a3f4e11");
    c.bench_function("headers_to_upstream", |b| {
        b.iter(|| {
            let mut h = incoming.headers().clone();
            headers::to_upstream(&mut h, &client, &id, false);
            black_box(h)
        })
    });
    c.bench_function("request_clone_baseline", |b| {
        b.iter(|| black_box(incoming.clone()))
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
