//! Bodies stream through the gateway in both directions without being buffered whole: a
//! transfer many times larger than the allowed memory growth completes.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use support::{BOTH, Backend, TestNode};

const TOTAL: usize = 256 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Far below TOTAL: a proxy that buffered the body would blow through it.
const MAX_GROWTH_KB: u64 = 96 * 1024;

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn streaming_body() -> support::client::ClientBody {
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let frames = futures_util::stream::unfold(TOTAL, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let n = left.min(CHUNK);
                (Ok(Frame::data(chunk.slice(..n))), left - n)
            })
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_flat_memory() {
    let backend = Backend::start("b").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: main, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/*"] }}, proxy: {{ upstream: b, timeout: 60s }} }}
upstreams:
  - {{ name: b, targets: [{{ address: "{}" }}] }}
security:
  limits: {{ max_body_size: 1GB }}   # the default 10 MB would answer 413 (docs/security.md)
"#,
        backend.addr()
    );
    let node = TestNode::start(&yaml).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        // Warm up connections and allocator arenas before taking the baseline.
        assert_eq!(c.get("/hello").await.status, 200);
        let baseline = peak_rss_kb();

        let upload = c
            .send(
                c.request(http::Method::POST, "/upload")
                    .body(streaming_body())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(upload.status, 200);
        assert_eq!(upload.text(), TOTAL.to_string(), "{proto:?}");

        let response = c
            .send_streaming(
                c.request(http::Method::GET, &format!("/stream/{TOTAL}"))
                    .body(support::client::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let mut body = response.into_body();
        let mut received = 0;
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().data_ref().map_or(0, |d| d.len());
        }
        assert_eq!(received, TOTAL, "{proto:?}");

        let growth = peak_rss_kb().saturating_sub(baseline);
        assert!(
            growth < MAX_GROWTH_KB,
            "{proto:?}: peak RSS grew by {growth} kB while moving 2 × {TOTAL} bytes"
        );
    }
}
