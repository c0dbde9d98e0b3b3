//! The WAF: detection rate on corpora of SQL injection and XSS payloads and false positives on a
//! corpus of benign inputs (printed, and asserted at floors justified below), payloads in every
//! inspected place, `detect` versus `block` mode, and the bounded body inspection.

use http::Method;
use support::client::body;
use support::{BOTH, Backend, Proto};

use super::{start, yaml};

fn corpus(name: &str) -> Vec<String> {
    let path = format!("{}/fixtures/waf/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn query(value: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("q", value)
        .finish()
}

const ROUTES: &str = r#"  - name: app
    match: { paths: ["/*"] }
    respond: { status: 200, body: "ok" }
    security: { waf: { mode: block } }
"#;

#[tokio::test]
async fn detection_and_false_positive_rates_on_the_corpora() {
    let node = start(&yaml("", "", ROUTES, None)).await;
    let c = node.client(Proto::Http1, "main");
    let mut rates = Vec::new();
    for (name, attack) in [("sqli.txt", true), ("xss.txt", true), ("benign.txt", false)] {
        let inputs = corpus(name);
        let mut blocked = Vec::new();
        let mut passed = Vec::new();
        for input in &inputs {
            let r = c.get(&format!("/search?{}", query(input))).await;
            match r.status.as_u16() {
                403 => blocked.push(input.clone()),
                200 => passed.push(input.clone()),
                other => panic!("{input:?} answered {other}"),
            }
        }
        let rate = 100.0 * blocked.len() as f64 / inputs.len() as f64;
        println!(
            "{name}: {}/{} blocked ({rate:.1}%)",
            blocked.len(),
            inputs.len()
        );
        if attack {
            println!("  missed: {passed:?}");
        } else {
            println!("  false positives: {blocked:?}");
        }
        rates.push((name, attack, blocked.len(), inputs.len(), blocked));
    }
    let (hits, total) = rates
        .iter()
        .filter(|r| r.1)
        .fold((0, 0), |(h, t), r| (h + r.2, t + r.3));
    let detection = 100.0 * hits as f64 / total as f64;
    println!("attack corpora: {hits}/{total} detected ({detection:.1}%)");
    // Floors: libinjection's fingerprints catch ~97% of these classic payloads; the misses are
    // known blind spots (a lone `#` comment, ORDER BY without a quote, double-encoding, a
    // tag split inside another). 95% leaves room for those and nothing more. Benign inputs
    // must never be blocked: a WAF that refuses O'Reilly is switched off by its users.
    assert!(
        detection >= 95.0,
        "detection {detection:.1}% is below the 95% floor"
    );
    for (name, attack, n, total, _) in &rates {
        if *attack {
            assert!(*n as f64 / *total as f64 >= 0.9, "{name}: {n}/{total}");
        }
    }
    let fp = rates.iter().find(|r| !r.1).unwrap();
    assert!(fp.4.is_empty(), "false positives: {:?}", fp.4);
}

#[tokio::test]
async fn payloads_are_found_in_path_headers_cookies_and_bodies() {
    let backend = Backend::start("b").await;
    let routes = "  - name: api\n    match: { paths: [\"/*\"] }\n    proxy: { upstream: backend }\n    security: { waf: { mode: block } }\n";
    let node = start(&yaml("", "", routes, Some(backend.addr()))).await;
    for proto in BOTH {
        let c = node.client(proto, "main");
        let blocked = |r: &support::TestResponse, rule: &str, place: &str| {
            assert_eq!(r.status, 403, "{proto:?} {place}: {}", r.text());
            let message = r.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(
                message.contains(rule) && message.contains(place),
                "{message}"
            );
        };
        let r = c.get("/users/1'%20OR%20'1'='1").await;
        blocked(&r, "sqli", "path");
        let r = c
            .get_with("/echo", &[("x-comment", "<script>alert(1)</script>")])
            .await;
        blocked(&r, "xss", "header \"x-comment\"");
        let r = c
            .get_with(
                "/echo",
                &[("cookie", "a=1; sid=' UNION SELECT password FROM users--")],
            )
            .await;
        blocked(&r, "sqli", "cookie \"sid\"");
        let json = r#"{"user": {"name": "x", "bio": "<img src=x onerror=alert(1)>"}}"#;
        let req = c
            .request(Method::POST, "/echo")
            .header("content-type", "application/json")
            .body(body(json))
            .unwrap();
        blocked(&c.send(req).await.unwrap(), "xss", "JSON body");
        let req = c
            .request(Method::POST, "/echo")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body("name=bob&q=1%27+OR+%271%27%3D%271"))
            .unwrap();
        blocked(&c.send(req).await.unwrap(), "sqli", "form field \"q\"");
        // Benign bodies pass whole.
        let req = c
            .request(Method::POST, "/echo")
            .header("content-type", "application/json")
            .body(body(
                r#"{"author": "O'Reilly", "note": "I <3 SQL: select the best"}"#,
            ))
            .unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body_len"], 59);
    }
    assert_eq!(
        backend.requests(),
        2,
        "blocked requests never reach the upstream"
    );
}

#[tokio::test]
async fn detect_mode_logs_and_counts_but_lets_requests_through() {
    let routes = "  - { match: { paths: [\"/*\"] }, respond: { status: 200, body: \"ok\" }, security: { waf: { mode: detect } } }\n";
    let node = start(&yaml("", "", routes, None)).await;
    let c = node.client(Proto::Http1, "main");
    let r = c.get(&format!("/s?{}", query("1' OR '1'='1"))).await;
    assert_eq!(r.status, 200);
    let stats = node.handle().security_stats();
    assert_eq!((stats.waf_detections, stats.waf_blocks), (1, 0));
    let metrics = scrape_metrics(node.admin()).await;
    assert!(
        metrics.contains("meshgate_security_events_total{event=\"waf_detection\"} 1\n"),
        "{metrics}"
    );
}

async fn scrape_metrics(admin: std::net::SocketAddr) -> String {
    support::TestClient::new(Proto::Http1, admin)
        .get("/metrics")
        .await
        .text()
}

#[tokio::test]
async fn only_the_configured_prefix_of_a_body_is_inspected() {
    let backend = Backend::start("b").await;
    let routes = "  - name: api\n    match: { paths: [\"/*\"] }\n    proxy: { upstream: backend }\n    security: { waf: { mode: block, max_body_inspect: 1KB } }\n";
    let node = start(&yaml("", "", routes, Some(backend.addr()))).await;
    let c = node.client(Proto::Http1, "main");
    let filler = "a".repeat(4000);
    let late = format!(r#"{{"pad": "{filler}", "q": "1' OR '1'='1"}}"#);
    let req = c
        .request(Method::POST, "/echo")
        .header("content-type", "application/json")
        .body(body(late.clone()))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(
        r.status, 200,
        "beyond the inspected prefix: not read by the WAF"
    );
    assert_eq!(r.json()["body_len"], late.len(), "and forwarded whole");
    let early = format!(r#"{{"q": "1' OR '1'='1", "pad": "{filler}"}}"#);
    let req = c
        .request(Method::POST, "/echo")
        .header("content-type", "application/json")
        .body(body(early))
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status, 403);
}
