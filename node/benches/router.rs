//! Route matching cost against table size: 10, 1,000 and 10,000 routes, one lookup through
//! `meshgate::router::find_route`. The goal (docs/performance.md, "Goals") is a flat cost:
//! 10,000 routes within 5% of 10.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use meshgate::router;

#[path = "support/routes.rs"]
mod routes;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in SIZES {
        let table = routes::route_table(n);
        let t = routes::middle_template(n);
        let cases = [
            ("template", routes::request(&format!("/t{t}/items/42"))),
            ("exact", routes::request(&format!("/e{}/status", t + 1))),
            ("prefix", routes::request(&format!("/p{}/a/b", t + 2))),
        ];
        for (kind, req) in &cases {
            assert!(router::find_route(&table, req, req.uri().path()).is_some());
            group.bench_with_input(BenchmarkId::new(*kind, n), req, |b, req| {
                b.iter(|| router::find_route(&table, black_box(req), black_box(req.uri().path())))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, route_match);
criterion_main!(benches);
