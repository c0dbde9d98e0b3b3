//! deploy/: the alert rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), and the rules and the Grafana dashboard only query metrics that a
//! live node exports.

use std::path::PathBuf;

use support::prometheus::{Scrape, promtool};
use support::{Proto, TestNode, eventually};

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

#[tokio::test]
async fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = deploy("prometheus/meshgate-alerts.yml");
    let (ok, output) = promtool(&["check", "rules", rules.to_str().unwrap()], None).await;
    assert!(ok, "{output}");
    assert!(output.contains("SUCCESS: 6 rules found"), "{output}");
    let tests = deploy("prometheus/meshgate-alerts.test.yml");
    let (ok, output) = promtool(&["test", "rules", tests.to_str().unwrap()], None).await;
    assert!(ok, "promtool test rules failed:\n{output}");
}

/// Every `meshgate_*` name in `text`, with histogram suffixes reduced to the family.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("meshgate_"))
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn rules_and_dashboard_query_only_exported_metrics() {
    let node = TestNode::start(
        r#"
listeners:
  - { name: main, address: "127.0.0.1:0" }
routes:
  - { name: hello, match: { paths: ["/hello"] }, respond: {} }
"#,
    )
    .await;
    node.client(Proto::Http1, "main").get("/hello").await;
    let admin = node.admin();
    let scrape = eventually("the request counted", || async {
        let s = Scrape::fetch(admin).await;
        (s.sum("meshgate_requests_total", &[]) == 1.0).then_some(s)
    })
    .await;
    let exported = scrape.families();
    let dashboard_text =
        std::fs::read_to_string(deploy("grafana/meshgate-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 10);
    let rules = std::fs::read_to_string(deploy("prometheus/meshgate-alerts.yml")).unwrap();
    for (file, text) in [("dashboard", &dashboard_text), ("alert rules", &rules)] {
        let used = metric_names(text);
        assert!(used.len() >= 5, "{file} uses {used:?}");
        for name in used {
            assert!(
                exported.contains(&name),
                "the {file} query {name}, which /metrics does not export"
            );
        }
    }
}

/// The `# full config` example of docs/observability.md loads and compiles, telemetry included.
#[tokio::test]
async fn the_documented_telemetry_config_is_valid() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/observability.md"),
    )
    .unwrap();
    let body = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|body| body.starts_with("# full config"))
        .expect("docs/observability.md has a full config example");
    let config = meshgate_config::parse_str(body, meshgate_config::Format::Yaml)
        .unwrap_or_else(|e| panic!("documented config does not load: {e}"));
    let compiled = meshgate_config::compile(&config).unwrap();
    let t = &compiled.telemetry;
    assert!(t.metrics && t.access_log.is_some() && t.analytics.is_some());
    assert_eq!(
        t.tracing.as_ref().unwrap().otlp_endpoint,
        "http://127.0.0.1:4317"
    );
    assert!(t.latency_headers_on("users") && !t.latency_headers_on("health"));
}
