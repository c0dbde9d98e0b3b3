//! An endpoint that dies under load is its own problem, not its upstream's: with the example
//! configuration of docs/resilience.md, two endpoints and forty connections sending, killing
//! one endpoint fails fewer than 0.1 % of the requests and leaves the circuit closed (the dead
//! endpoint is ejected, its requests are retried on the other, and the failures of requests it
//! had in flight do not count against the upstream); killing the second opens the circuit.
//! Without retries the circuit stays closed as well: only requests on the dead endpoint fail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::harness::PATIENCE;
use support::{Backend, Proto, TestClient, TestNode};

use crate::{admin_json, endpoint_json};

/// Connections kept busy, half HTTP/1.1, half HTTP/2.
const CONNECTIONS: usize = 40;
/// Requests per connection in the first part: 24,000 in all.
const PER_CONNECTION: usize = 600;
/// How long each backend takes to answer: most of a request's time is spent there, so the
/// endpoint that dies has about half the connections' requests in flight, and they fail
/// together — more than `circuit_breaker.consecutive_failures`.
const BACKEND_DELAY: Duration = Duration::from_millis(5);
/// What the documented example names its two targets.
const DOCUMENTED_TARGETS: [&str; 2] = ["127.0.0.1:9001", "127.0.0.1:9002"];

/// The first `# full config` example of docs/resilience.md, on these two endpoints.
fn documented_config(targets: [SocketAddr; 2]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/resilience.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let example = doc
        .split("```yaml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|body| body.starts_with("# full config"))
        .expect("docs/resilience.md has a full config example");
    let mut yaml = example.to_string();
    for (documented, real) in DOCUMENTED_TARGETS.iter().zip(targets) {
        assert!(
            yaml.contains(documented),
            "the example no longer names {documented}"
        );
        yaml = yaml.replace(documented, &real.to_string());
    }
    yaml
}

/// The documented example's upstream and a path its route sends there.
const UPSTREAM: &str = "users";
const PATH: &str = "/users/1";

/// How requests ended.
#[derive(Debug, Default)]
struct Outcomes {
    /// Answered by a backend.
    served: usize,
    /// Anything else: a gateway error, the circuit's fallback, a broken connection.
    failed: Vec<String>,
}

impl Outcomes {
    fn total(&self) -> usize {
        self.served + self.failed.len()
    }

    fn add(&mut self, other: Outcomes) {
        self.served += other.served;
        self.failed.extend(other.failed);
    }
}

/// One request; `Ok` when a backend answered it.
async fn request(c: &TestClient) -> Result<(), String> {
    let req = c
        .request(http::Method::GET, PATH)
        .body(support::client::empty());
    match c.send(req.unwrap()).await {
        Ok(r) if r.status == 200 && r.header("x-backend").is_some() => Ok(()),
        Ok(r) => Err(format!("{} {}", r.status, r.text())),
        Err(e) => Err(format!("{:?}: {e}", c.proto)),
    }
}

/// `CONNECTIONS` clients of the documented listener, half HTTP/1.1, half HTTP/2.
fn clients(node: &TestNode) -> Vec<TestClient> {
    (0..CONNECTIONS)
        .map(|i| {
            let proto = if i % 2 == 0 {
                Proto::Http1
            } else {
                Proto::Http2
            };
            node.client(proto, "public")
        })
        .collect()
}

/// Every client sends up to `per_connection` requests one after the other; with
/// `until_open`, all stop once one gets the open circuit's fallback.
async fn load(clients: Vec<TestClient>, per_connection: usize, until_open: bool) -> Outcomes {
    let open = Arc::new(AtomicBool::new(false));
    let mut running = tokio::task::JoinSet::new();
    for c in clients {
        let open = open.clone();
        running.spawn(async move {
            let mut outcomes = Outcomes::default();
            for _ in 0..per_connection {
                if until_open && open.load(Ordering::SeqCst) {
                    break;
                }
                match request(&c).await {
                    Ok(()) => outcomes.served += 1,
                    Err(e) => {
                        if e.contains("degraded") {
                            open.store(true, Ordering::SeqCst);
                        }
                        outcomes.failed.push(e);
                    }
                }
            }
            outcomes
        });
    }
    let mut all = Outcomes::default();
    while let Some(done) = running.join_next().await {
        all.add(done.unwrap());
    }
    all
}

async fn breaker(node: &TestNode) -> serde_json::Value {
    admin_json(node, &format!("/upstreams/{UPSTREAM}/health")).await["circuit_breaker"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_endpoint_of_two_leaves_the_circuit_closed_and_two_open_it() {
    let first = Backend::start_with_delay("first", BACKEND_DELAY).await;
    let second = Backend::start_with_delay("second", BACKEND_DELAY).await;
    let (dead, alive) = (first.addr(), second.addr());
    let node = TestNode::start(&documented_config([dead, alive])).await;

    // Part one: the first endpoint dies an eighth of the way through.
    let running = tokio::spawn(load(clients(&node), PER_CONNECTION, false));
    first
        .wait_for_requests(CONNECTIONS * PER_CONNECTION / 16)
        .await;
    first.stop().await;
    let outcomes = tokio::time::timeout(6 * PATIENCE, running)
        .await
        .expect("the load did not finish")
        .unwrap();
    assert_eq!(outcomes.total(), CONNECTIONS * PER_CONNECTION);
    assert!(
        outcomes.failed.len() * 1000 < outcomes.total(),
        "{} of {} requests failed: {:?}",
        outcomes.failed.len(),
        outcomes.total(),
        outcomes.failed
    );
    let state = breaker(&node).await;
    assert_eq!(state["state"], "closed", "{state}");
    assert_eq!(state["trips"], 0, "{state}");
    let ejected = endpoint_json(&node, UPSTREAM, dead).await;
    assert_eq!(ejected["total_ejections"], 1, "{ejected}");
    assert!(ejected["ejected"].is_object(), "{ejected}");

    // Part two: the second endpoint dies too; the upstream is down and the circuit opens.
    second.stop().await;
    let outcomes = tokio::time::timeout(6 * PATIENCE, load(clients(&node), PER_CONNECTION, true))
        .await
        .expect("the load did not finish");
    assert_eq!(outcomes.served, 0, "no backend is left");
    let state = breaker(&node).await;
    assert_eq!(
        state["state"],
        "open",
        "{state}: {:?}",
        outcomes.failed.last()
    );
    assert_eq!(state["trips"], 1, "{state}");
    // Open: answered at once with the documented fallback.
    let r = node.client(Proto::Http1, "public").get(PATH).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("degraded"), "{}", r.text());
}

/// The same death without retries: the requests the dead endpoint had in flight, and those
/// sent to it before its ejection, fail — a few dozen at most — but they are that endpoint's
/// failures, and the circuit stays closed for the other endpoint's sake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_dead_endpoint_still_leaves_the_circuit_closed() {
    let first = Backend::start_with_delay("first", BACKEND_DELAY).await;
    let second = Backend::start_with_delay("second", BACKEND_DELAY).await;
    let (dead, alive) = (first.addr(), second.addr());
    let yaml = format!(
        r#"
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
routes:
  - {{ match: {{ paths: ["/users/*"] }}, proxy: {{ upstream: users, retry: {{ attempts: 0 }} }} }}
upstreams:
  - name: users
    targets: [{{ address: "{dead}" }}, {{ address: "{alive}" }}]
"#
    );
    let node = TestNode::start(&yaml).await;
    let per_connection = PER_CONNECTION / 2;
    let running = tokio::spawn(load(clients(&node), per_connection, false));
    first
        .wait_for_requests(CONNECTIONS * per_connection / 8)
        .await;
    first.stop().await;
    let outcomes = tokio::time::timeout(6 * PATIENCE, running)
        .await
        .expect("the load did not finish")
        .unwrap();
    assert_eq!(outcomes.total(), CONNECTIONS * per_connection);
    assert!(
        outcomes.failed.len() * 100 < outcomes.total(),
        "{} of {} requests failed: {:?}",
        outcomes.failed.len(),
        outcomes.total(),
        outcomes.failed
    );
    let state = breaker(&node).await;
    assert_eq!(state["state"], "closed", "{state}");
    assert_eq!(state["trips"], 0, "{state}");
    assert_eq!(
        endpoint_json(&node, UPSTREAM, dead).await["total_ejections"],
        1
    );
}
