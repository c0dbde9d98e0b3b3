use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderValue, Method, Uri};
use meshgate_config::telemetry::AccessLogSpec;

use super::*;

fn record(i: usize) -> FinishedRequest {
    FinishedRequest {
        time: SystemTime::now(),
        request_id: HeaderValue::from_str(&format!("req-{i}")).unwrap(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        method: Method::GET,
        uri: Uri::from_static("/"),
        status: 200,
        bytes_in: 0,
        bytes_out: 0,
        total: Duration::from_millis(1),
        upstream_time: None,
        gateway_time: Duration::from_millis(1),
        route: "r".into(),
        upstream: None,
        endpoint: None,
        consumer: None,
        user_agent: None,
        tls_version: None,
        listener: "main".into(),
        trace_id: None,
        headers: Vec::new(),
        aborted: false,
    }
}

/// A writer stuck on its output (here: a FIFO nobody reads yet, so opening it blocks) never
/// holds up a request: the queue fills, the rest is dropped and counted, and what was queued
/// is written once the output is back.
#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let settings = RecorderSettings {
        access_log: Some(AccessLogSpec {
            path: Some(fifo.clone()),
            include_query: false,
            headers: Vec::new(),
            redact: Vec::<String>::new().into(),
            buffer: 4,
        }),
        analytics: None,
    };
    let recorder = Recorder::start(4, settings).unwrap();
    for i in 0..10 {
        recorder.push(record(i));
    }
    assert_eq!(recorder.stats().dropped, 6);
    assert_eq!(recorder.stats().lines, 0);
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(std::fs::File::open(&fifo).unwrap()).lines();
        (0..4)
            .map(|_| lines.next().unwrap().unwrap())
            .collect::<Vec<String>>()
    });
    recorder.flush().await;
    let written = reader.join().unwrap();
    for (i, line) in written.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["request_id"], format!("req-{i}"));
    }
    assert_eq!(recorder.stats().lines, 4);
}
