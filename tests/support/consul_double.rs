//! An in-process double of the Consul agent's HTTP API, faithful to the agent's behaviour as
//! docs/consul.md describes it: health blocking queries, agent registration with TTL checks,
//! the critical-service reaper, ACL tokens and plain-text errors, on tokio time; and the Connect CA's roots and leaves
//! (`connect.rs`). It must behave like a real agent, so the client under test cannot tell;
//! test-only hooks (faults, direct catalog edits) are methods here, never HTTP endpoints.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod connect;

pub use connect::DEFAULT_LEAF_TTL;

/// Knobs of the double; the defaults are Consul's own (`agent/config/default.go`,
/// `agent/consul/rpc.go`), the limits can be shrunk so tests run fast.
#[derive(Debug, Clone)]
pub struct ConsulDoubleConfig {
    pub node_name: String,
    pub node_address: IpAddr,
    pub datacenter: String,
    /// `Some`: ACLs on with default-deny; this is the one token with full rights.
    pub acl_token: Option<String>,
    /// `wait` when the query gives none (5 m).
    pub default_wait: Duration,
    /// `wait` is clamped here (10 m).
    pub max_wait: Duration,
    /// `CheckReapInterval` (30 s).
    pub reap_interval: Duration,
    /// `CheckDeregisterIntervalMin` (1 m): smaller `DeregisterCriticalServiceAfter` is raised.
    pub deregister_min: Duration,
    /// `OutputMaxSize` (4096).
    pub output_max_size: usize,
    /// The raft index the double starts at.
    pub initial_index: u64,
    /// The cluster id; the Connect trust domain is `<cluster_id>.consul` (at least 8 chars).
    pub cluster_id: String,
    /// Connect's `LeafCertTTL` (72 h).
    pub connect_leaf_ttl: Duration,
}

impl Default for ConsulDoubleConfig {
    fn default() -> Self {
        Self {
            node_name: "consul-double".to_owned(),
            node_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            datacenter: "dc1".to_owned(),
            acl_token: None,
            default_wait: Duration::from_secs(300),
            max_wait: Duration::from_secs(600),
            reap_interval: Duration::from_secs(30),
            deregister_min: Duration::from_secs(60),
            output_max_size: 4096,
            initial_index: 100,
            cluster_id: "7f42f496-fbc7-8692-05ed-334aa5340c1e".to_owned(),
            connect_leaf_ttl: DEFAULT_LEAF_TTL,
        }
    }
}

/// A service instance placed in the catalog directly by a test (as if another agent had
/// registered it), with one non-TTL check `service:<id>` in `status`.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `None`: the double's own node.
    pub node: Option<(String, IpAddr)>,
    pub id: String,
    pub name: String,
    /// `None`: empty `Service.Address` (clients must fall back to `Node.Address`).
    pub address: Option<IpAddr>,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub weights: (i64, i64),
    pub status: String,
}

impl Instance {
    pub fn new(name: &str, id: &str, address: IpAddr, port: u16) -> Self {
        Self {
            node: None,
            id: id.to_owned(),
            name: name.to_owned(),
            address: Some(address),
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: (1, 1),
            status: "passing".to_owned(),
        }
    }
}

/// A check as a test can inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckView {
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub output: String,
    pub service_id: String,
}

/// How many requests of each kind arrived.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub total: AtomicU64,
    pub health: AtomicU64,
    pub blocking: AtomicU64,
    pub register: AtomicU64,
    pub deregister: AtomicU64,
    pub check_update: AtomicU64,
    pub with_valid_token: AtomicU64,
}

impl RequestCounts {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Acquire)
    }
}

/// The running double. Dropping it stops everything.
pub struct ConsulDouble {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    scheduler: JoinHandle<()>,
}

struct Shared {
    config: ConsulDoubleConfig,
    state: Mutex<State>,
    /// The raft index after every change; blocked queries wait on it.
    index_tx: watch::Sender<u64>,
    /// Bumped when the state is replaced (restart/restore): blocked queries return at once.
    abandon_tx: watch::Sender<u64>,
    /// Bumped to cut every open connection.
    kill_tx: watch::Sender<u64>,
    /// Wakes the TTL/reaper scheduler when deadlines change.
    schedule: Notify,
    /// Blocking queries currently held.
    blocked: watch::Sender<u64>,
    counts: RequestCounts,
    last_token: Mutex<Option<String>>,
    fault: Mutex<Option<(StatusCode, String)>>,
    /// Emulates old agents whose health index could be 0 (and was not rewritten to 1).
    zero_index: std::sync::atomic::AtomicBool,
    /// The Connect CA and this agent's leaf cache.
    connect: Mutex<connect::ConnectCa>,
    /// Bumped when a root rotates or a cached leaf is due: blocked Connect queries re-check.
    connect_tx: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
struct NodeRecord {
    name: String,
    address: IpAddr,
    serf_status: String,
    create_index: u64,
    modify_index: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct ServiceRecord {
    node: String,
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    meta: BTreeMap<String, String>,
    port: i64,
    weights: (i64, i64),
    create_index: u64,
    modify_index: u64,
}

#[derive(Debug, Clone)]
struct CheckRecord {
    node: String,
    check_id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    service_id: String,
    ttl: Option<Duration>,
    ttl_deadline: Option<Instant>,
    /// What `pass/warn/fail/update` last said, kept for the "TTL expired" output.
    last_output: String,
    deregister_after: Option<Duration>,
    /// `CheckState.CriticalTime`: set when an update makes the check critical, not at creation.
    critical_since: Option<Instant>,
    create_index: u64,
    modify_index: u64,
}

#[derive(Debug)]
struct State {
    index: u64,
    nodes: BTreeMap<String, NodeRecord>,
    /// Keyed by (node, service ID).
    services: BTreeMap<(String, String), ServiceRecord>,
    /// Keyed by (node, check ID).
    checks: BTreeMap<(String, String), CheckRecord>,
    /// The index of the last change touching each service name (Consul's `service.<name>`).
    service_index: BTreeMap<String, u64>,
    next_reap: Instant,
}

impl ConsulDouble {
    /// A double with Consul's defaults on `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self::start_with(ConsulDoubleConfig::default()).await
    }

    pub async fn start_with(config: ConsulDoubleConfig) -> Self {
        let now = Instant::now();
        let mut nodes = BTreeMap::new();
        nodes.insert(
            config.node_name.clone(),
            NodeRecord {
                name: config.node_name.clone(),
                address: config.node_address,
                serf_status: "passing".to_owned(),
                create_index: config.initial_index,
                modify_index: config.initial_index,
            },
        );
        let state = State {
            index: config.initial_index,
            nodes,
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            service_index: BTreeMap::new(),
            next_reap: now + config.reap_interval,
        };
        let shared = Arc::new(Shared {
            index_tx: watch::Sender::new(config.initial_index),
            abandon_tx: watch::Sender::new(0),
            kill_tx: watch::Sender::new(0),
            schedule: Notify::new(),
            blocked: watch::Sender::new(0),
            counts: RequestCounts::default(),
            last_token: Mutex::new(None),
            fault: Mutex::new(None),
            zero_index: std::sync::atomic::AtomicBool::new(false),
            connect: Mutex::new(connect::ConnectCa::new(
                &config.cluster_id,
                &config.datacenter,
                config.connect_leaf_ttl,
                config.initial_index,
            )),
            connect_tx: watch::Sender::new(0),
            state: Mutex::new(state),
            config,
        });
        let listener = bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await;
        let addr = listener.local_addr().expect("bound address");
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        let scheduler = tokio::spawn(run_scheduler(Arc::clone(&shared)));
        Self {
            shared,
            addr,
            accept: Mutex::new(Some(accept)),
            scheduler,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> &RequestCounts {
        &self.shared.counts
    }

    /// The token the last request carried, by Consul's precedence (§1).
    pub async fn last_token(&self) -> Option<String> {
        self.shared.last_token.lock().await.clone()
    }

    /// Waits until at least `count` blocking queries are held (bound it with a timeout).
    pub async fn blocked_queries(&self, count: u64) {
        let mut blocked = self.shared.blocked.subscribe();
        let _ = blocked.wait_for(|held| *held >= count).await;
    }

    pub async fn index(&self) -> u64 {
        self.shared.state.lock().await.index
    }

    /// A receiver of the raft index, to await changes instead of sleeping.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.index_tx.subscribe()
    }

    /// Puts `instance` in the catalog (replacing one with the same node and ID).
    pub async fn register_instance(&self, instance: Instance) -> u64 {
        let mut state = self.shared.state.lock().await;
        let index = state.bump();
        let (node, node_address) = instance.node.clone().unwrap_or_else(|| {
            (
                self.shared.config.node_name.clone(),
                self.shared.config.node_address,
            )
        });
        state
            .nodes
            .entry(node.clone())
            .or_insert_with(|| NodeRecord {
                name: node.clone(),
                address: node_address,
                serf_status: "passing".to_owned(),
                create_index: index,
                modify_index: index,
            });
        let service = ServiceRecord {
            node: node.clone(),
            id: instance.id.clone(),
            name: instance.name.clone(),
            tags: instance.tags,
            address: instance.address.map(|a| a.to_string()).unwrap_or_default(),
            meta: instance.meta,
            port: i64::from(instance.port),
            weights: instance.weights,
            create_index: index,
            modify_index: index,
        };
        let check_id = format!("service:{}", instance.id);
        let check = CheckRecord {
            node: node.clone(),
            check_id: check_id.clone(),
            name: format!("Service '{}' check", instance.name),
            critical_since: (instance.status == "critical").then(Instant::now),
            status: instance.status,
            notes: String::new(),
            output: String::new(),
            service_id: instance.id.clone(),
            ttl: None,
            ttl_deadline: None,
            last_output: String::new(),
            deregister_after: None,
            create_index: index,
            modify_index: index,
        };
        state.services.insert((node.clone(), instance.id), service);
        state.checks.insert((node, check_id), check);
        state.service_index.insert(instance.name, index);
        self.shared.publish(index);
        index
    }

    /// Removes a service (on any node) and its checks; false if it was unknown.
    pub async fn deregister(&self, service_id: &str) -> bool {
        let mut state = self.shared.state.lock().await;
        let Some(key) = state
            .services
            .keys()
            .find(|(_, id)| id == service_id)
            .cloned()
        else {
            return false;
        };
        let index = state.remove_service(&key);
        self.shared.publish(index);
        true
    }

    /// Sets a check's status directly (as if its checker ran); false if unknown.
    pub async fn set_check_status(&self, check_id: &str, status: &str, output: &str) -> bool {
        let mut state = self.shared.state.lock().await;
        let Some(key) = state.checks.keys().find(|(_, id)| id == check_id).cloned() else {
            return false;
        };
        let index = state.update_check(&key, status, output);
        self.shared.publish(index);
        true
    }

    /// Sets the `serfHealth` status of a node (the agent's own by default).
    pub async fn set_node_health(&self, node: Option<&str>, status: &str) {
        let mut state = self.shared.state.lock().await;
        let name = node.map_or_else(|| self.shared.config.node_name.clone(), str::to_owned);
        let index = state.bump();
        if let Some(record) = state.nodes.get_mut(&name) {
            record.serf_status = status.to_owned();
            record.modify_index = index;
        }
        let names: Vec<String> = state
            .services
            .values()
            .filter(|s| s.node == name)
            .map(|s| s.name.clone())
            .collect();
        for service in names {
            state.service_index.insert(service, index);
        }
        self.shared.publish(index);
    }

    pub async fn check(&self, check_id: &str) -> Option<CheckView> {
        let state = self.shared.state.lock().await;
        state
            .checks
            .values()
            .find(|c| c.check_id == check_id)
            .map(|c| CheckView {
                check_id: c.check_id.clone(),
                name: c.name.clone(),
                status: c.status.clone(),
                output: c.output.clone(),
                service_id: c.service_id.clone(),
            })
    }

    pub async fn service_ids(&self) -> Vec<String> {
        let state = self.shared.state.lock().await;
        state.services.values().map(|s| s.id.clone()).collect()
    }

    /// Simulates an agent restart onto an older snapshot: the raft index drops to half its
    /// value, every record's indexes are capped to it, and blocked queries are abandoned (they
    /// return at once with the lower index, as on a Consul snapshot restore). Returns the new
    /// index.
    pub async fn restart_with_lower_index(&self) -> u64 {
        let mut state = self.shared.state.lock().await;
        let lower = (state.index / 2).max(1);
        state.index = lower;
        for node in state.nodes.values_mut() {
            node.create_index = node.create_index.min(lower);
            node.modify_index = node.modify_index.min(lower);
        }
        for service in state.services.values_mut() {
            service.create_index = service.create_index.min(lower);
            service.modify_index = service.modify_index.min(lower);
        }
        for check in state.checks.values_mut() {
            check.create_index = check.create_index.min(lower);
            check.modify_index = check.modify_index.min(lower);
        }
        for index in state.service_index.values_mut() {
            *index = (*index).min(lower);
        }
        self.shared.index_tx.send_replace(lower);
        self.shared.abandon_tx.send_modify(|epoch| *epoch += 1);
        lower
    }

    /// `true`: the port is closed and every open connection cut (clients get "connection
    /// refused"); `false`: listening again on the same port with the same state.
    pub async fn set_down(&self, down: bool) {
        let mut accept = self.accept.lock().await;
        if down {
            if let Some(task) = accept.take() {
                task.abort();
                let _ = task.await;
            }
            self.shared
                .kill_tx
                .send_modify(|generation| *generation += 1);
        } else if accept.is_none() {
            let listener = bind(self.addr).await;
            *accept = Some(tokio::spawn(accept_loop(
                listener,
                Arc::clone(&self.shared),
            )));
        }
    }

    /// Answer every request with `status` and `body` (e.g. 500 "No cluster leader"), or stop.
    pub async fn set_fault(&self, fault: Option<(StatusCode, &str)>) {
        *self.shared.fault.lock().await = fault.map(|(status, body)| (status, body.to_owned()));
    }

    /// `true`: health queries report (and block on) index 0, as old agents with the "index 0"
    /// bug did (blocking.mdx), without the `setIndex` rewrite to 1.
    pub fn set_zero_index(&self, zero: bool) {
        self.shared.zero_index.store(zero, Ordering::Release);
    }

    /// Cuts every open connection (mid-block disconnect) without closing the port.
    pub fn disconnect_all(&self) {
        self.shared
            .kill_tx
            .send_modify(|generation| *generation += 1);
    }

    /// Stops the double and waits until its tasks are gone.
    pub async fn stop(self) {
        self.set_down(true).await;
        self.scheduler.abort();
    }
}

impl Drop for ConsulDouble {
    fn drop(&mut self) {
        self.scheduler.abort();
        if let Ok(mut accept) = self.accept.try_lock()
            && let Some(task) = accept.take()
        {
            task.abort();
        }
        self.shared
            .kill_tx
            .send_modify(|generation| *generation += 1);
    }
}

impl Shared {
    fn result_index(&self, state: &State, service: &str) -> u64 {
        if self.zero_index.load(Ordering::Acquire) {
            0
        } else {
            state.service_result_index(service)
        }
    }

    fn publish(&self, index: u64) {
        self.index_tx.send_replace(index);
        self.schedule.notify_one();
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    fn remove_service(&mut self, key: &(String, String)) -> u64 {
        let index = self.bump();
        if let Some(service) = self.services.remove(key) {
            self.service_index.insert(service.name, index);
        }
        self.checks
            .retain(|(node, _), check| !(node == &key.0 && check.service_id == key.1));
        index
    }

    /// `local.State.UpdateCheck`: tracks the critical time; a raft write (index bump) only
    /// happens when the status changes (output-only changes are deferred by Consul).
    fn update_check(&mut self, key: &(String, String), status: &str, output: &str) -> u64 {
        let current = self.index;
        let Some(check) = self.checks.get_mut(key) else {
            return current;
        };
        if status == "critical" {
            if check.critical_since.is_none() {
                check.critical_since = Some(Instant::now());
            }
        } else {
            check.critical_since = None;
        }
        check.output = output.to_owned();
        if check.status == status {
            return current;
        }
        check.status = status.to_owned();
        let service_id = check.service_id.clone();
        let node = check.node.clone();
        let index = self.bump();
        if let Some(check) = self.checks.get_mut(key) {
            check.modify_index = index;
        }
        if let Some(service) = self.services.get(&(node, service_id)) {
            self.service_index.insert(service.name.clone(), index);
        }
        index
    }

    /// The index a health query on `name` reports.
    fn service_result_index(&self, name: &str) -> u64 {
        self.service_index.get(name).copied().unwrap_or(self.index)
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind the Consul double");
    socket.listen(128).expect("listen")
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let mut kill = shared.kill_tx.subscribe();
        tokio::spawn(async move {
            let service = service_fn(|request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, request).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = kill.changed() => {}
            }
        });
    }
}

/// Expires TTL checks and runs the reaper, on tokio time.
async fn run_scheduler(shared: Arc<Shared>) {
    loop {
        let next = {
            let state = shared.state.lock().await;
            state
                .checks
                .values()
                .filter_map(|c| c.ttl_deadline)
                .fold(state.next_reap, Instant::min)
        };
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = shared.schedule.notified() => continue,
        }
        let now = Instant::now();
        let mut state = shared.state.lock().await;
        let expired: Vec<(String, String)> = state
            .checks
            .iter()
            .filter(|(_, c)| c.ttl_deadline.is_some_and(|d| d <= now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            let output = match state.checks.get_mut(&key) {
                Some(check) => {
                    check.ttl_deadline = None;
                    // agent/checks/check.go CheckTTL.getExpiredOutput
                    if check.last_output.is_empty() {
                        "TTL expired".to_owned()
                    } else {
                        format!(
                            "TTL expired (last output before timeout follows): {}",
                            check.last_output
                        )
                    }
                }
                None => continue,
            };
            let index = state.update_check(&key, "critical", &output);
            shared.index_tx.send_replace(index);
        }
        if now >= state.next_reap {
            state.next_reap = now + shared.config.reap_interval;
            reap(&mut state, now, &shared);
        }
    }
}

/// `agent.reapServicesInternal`: a service goes when one of its checks has been critical for
/// longer than its `DeregisterCriticalServiceAfter`.
fn reap(state: &mut State, now: Instant, shared: &Shared) {
    let doomed: Vec<(String, String)> = state
        .checks
        .values()
        .filter(|c| match (c.deregister_after, c.critical_since) {
            (Some(after), Some(since)) => now.duration_since(since) > after,
            _ => false,
        })
        .map(|c| (c.node.clone(), c.service_id.clone()))
        .collect();
    for key in doomed {
        if state.services.contains_key(&key) {
            let index = state.remove_service(&key);
            shared.index_tx.send_replace(index);
        }
    }
}

type Answer = Response<Full<Bytes>>;

async fn handle(shared: &Shared, request: Request<Incoming>) -> Answer {
    shared.counts.total.fetch_add(1, Ordering::AcqRel);
    let (parts, body) = request.into_parts();
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let token = request_token(&query, &parts.headers);
    *shared.last_token.lock().await = token.clone();
    if let Some((status, text)) = shared.fault.lock().await.clone() {
        return text_answer(status, &text);
    }
    // The roots endpoint resolves no token (agent/agent_endpoint.go AgentConnectCARoots).
    if parts.uri.path() == "/v1/agent/connect/ca/roots" {
        if parts.method != Method::GET {
            return method_not_allowed(&parts.method);
        }
        return connect::roots(shared, &query).await;
    }
    let Some(access) = authorize(shared, token.as_deref()) else {
        return text_answer(StatusCode::FORBIDDEN, "ACL not found");
    };
    if access == Access::Full && shared.config.acl_token.is_some() {
        shared
            .counts
            .with_valid_token
            .fetch_add(1, Ordering::AcqRel);
    }
    let path = percent_decode(parts.uri.path());
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text_answer(StatusCode::BAD_REQUEST, "Request decode failed"),
    };
    let route = |prefix: &str| path.strip_prefix(prefix).map(str::to_owned);
    if let Some(service) = route("/v1/health/service/") {
        if parts.method != Method::GET {
            return method_not_allowed(&parts.method);
        }
        shared.counts.health.fetch_add(1, Ordering::AcqRel);
        return health_service(shared, &service, &query, access).await;
    }
    if let Some(service) = route("/v1/agent/connect/ca/leaf/") {
        if parts.method != Method::GET {
            return method_not_allowed(&parts.method);
        }
        return connect::leaf(shared, &service, &query, access).await;
    }
    if path == "/v1/agent/service/register" {
        if parts.method != Method::PUT {
            return method_not_allowed(&parts.method);
        }
        shared.counts.register.fetch_add(1, Ordering::AcqRel);
        return register(shared, &body, &query, access).await;
    }
    if let Some(id) = route("/v1/agent/service/deregister/") {
        if parts.method != Method::PUT {
            return method_not_allowed(&parts.method);
        }
        shared.counts.deregister.fetch_add(1, Ordering::AcqRel);
        return deregister(shared, &id, access).await;
    }
    for (verb, status) in [
        ("pass", "passing"),
        ("warn", "warning"),
        ("fail", "critical"),
    ] {
        if let Some(check_id) = route(&format!("/v1/agent/check/{verb}/")) {
            if parts.method != Method::PUT {
                return method_not_allowed(&parts.method);
            }
            shared.counts.check_update.fetch_add(1, Ordering::AcqRel);
            let note = query
                .iter()
                .find(|(k, _)| k == "note")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            return update_ttl(shared, &check_id, status, &note, access).await;
        }
    }
    if let Some(check_id) = route("/v1/agent/check/update/") {
        if parts.method != Method::PUT {
            return method_not_allowed(&parts.method);
        }
        shared.counts.check_update.fetch_add(1, Ordering::AcqRel);
        let Ok(update) = serde_json::from_slice::<Value>(&body) else {
            return text_answer(StatusCode::BAD_REQUEST, "Request decode failed");
        };
        let status = field(&update, "Status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !matches!(status.as_str(), "passing" | "warning" | "critical") {
            return text_answer(
                StatusCode::BAD_REQUEST,
                &format!("Invalid check status: '{status}'"),
            );
        }
        let output = field(&update, "Output")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        return update_ttl(shared, &check_id, &status, &output, access).await;
    }
    text_answer(StatusCode::NOT_FOUND, "404 page not found")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Full,
    Anonymous,
}

/// §1: an unknown token is `403 ACL not found`; no token is the anonymous token, which under
/// default-deny may read nothing (reads are filtered) and write nothing (403).
/// `None`: the token is unknown.
fn authorize(shared: &Shared, token: Option<&str>) -> Option<Access> {
    let Some(expected) = shared.config.acl_token.as_deref() else {
        return Some(Access::Full);
    };
    match token {
        None => Some(Access::Anonymous),
        Some(token) if token == expected => Some(Access::Full),
        Some(_) => None,
    }
}

fn permission_denied(service: &str) -> Answer {
    text_answer(
        StatusCode::FORBIDDEN,
        &format!(
            "Permission denied: anonymous token lacks permission 'service:write' on \"{service}\""
        ),
    )
}

/// `agent/http.go parseTokenInternal`: `?token=`, then `X-Consul-Token`, then `Authorization:
/// Bearer`; an empty value counts as none.
fn request_token(query: &[(String, String)], headers: &HeaderMap) -> Option<String> {
    if let Some((_, token)) = query.iter().find(|(k, v)| k == "token" && !v.is_empty()) {
        return Some(token.clone());
    }
    if let Some(token) = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(token.to_owned());
    }
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let (scheme, value) = authorization.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !value.trim().is_empty())
        .then(|| value.trim().to_owned())
}

async fn health_service(
    shared: &Shared,
    service: &str,
    query: &[(String, String)],
    access: Access,
) -> Answer {
    if service.is_empty() {
        return text_answer(StatusCode::BAD_REQUEST, "Missing service name");
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let passing = match param("passing") {
        None => false,
        Some("") => true,
        Some(value) => match parse_go_bool(value) {
            Some(flag) => flag,
            None => return text_answer(StatusCode::BAD_REQUEST, "Invalid value for ?passing"),
        },
    };
    let wait = match param("wait") {
        None => shared.config.default_wait,
        Some(text) => match parse_go_duration(text) {
            Some(wait) if !wait.is_zero() => wait,
            Some(_) => shared.config.default_wait,
            None => return text_answer(StatusCode::BAD_REQUEST, "Invalid wait time"),
        },
    };
    let min_index = match param("index") {
        None => 0,
        Some(text) => match text.parse::<u64>() {
            Ok(index) => index,
            Err(_) => return text_answer(StatusCode::BAD_REQUEST, "Invalid index"),
        },
    };
    if let Some(dc) = param("dc").filter(|dc| !dc.is_empty())
        && dc != shared.config.datacenter
    {
        return text_answer(StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter");
    }
    let mut required_tags: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    if let Some(filter) = param("filter").filter(|f| !f.is_empty()) {
        match parse_tag_filter(filter) {
            Some(tags) => required_tags.extend(tags),
            None => {
                return text_answer(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Failed to create boolean expression evaluator: unsupported expression {filter:?}"
                    ),
                );
            }
        }
    }
    if min_index > 0 {
        shared.counts.blocking.fetch_add(1, Ordering::AcqRel);
    }

    // agent/blockingquery: clamp, then add RandomStagger(wait/16).
    let wait = wait.min(shared.config.max_wait);
    let stagger = u64::try_from((wait / 16).as_millis()).unwrap_or(u64::MAX);
    let jitter = Duration::from_millis(rand::rng().random_range(0..=stagger));
    let deadline = Instant::now() + wait + jitter;
    let mut index_rx = shared.index_tx.subscribe();
    let mut abandon_rx = shared.abandon_tx.subscribe();
    let mut held: Option<HeldQuery<'_>> = None;
    loop {
        index_rx.borrow_and_update();
        let (index, entries) = {
            let state = shared.state.lock().await;
            let entries = if access == Access::Full {
                health_entries(&state, &shared.config, service, passing, &required_tags)
            } else {
                Vec::new()
            };
            (shared.result_index(&state, service), entries)
        };
        let done = min_index == 0 || index > min_index || Instant::now() >= deadline;
        if done {
            let mut answer = json_answer_raw(
                &Value::Array(entries),
                index,
                shared.zero_index.load(Ordering::Acquire),
            );
            if access == Access::Anonymous {
                answer.headers_mut().insert(
                    "X-Consul-Results-Filtered-By-ACLs",
                    http::HeaderValue::from_static("true"),
                );
            }
            return answer;
        }
        held.get_or_insert_with(|| HeldQuery::new(&shared.blocked));
        tokio::select! {
            changed = index_rx.changed() => if changed.is_err() { return text_answer(StatusCode::INTERNAL_SERVER_ERROR, "agent shutting down") },
            _ = abandon_rx.changed() => {
                // A snapshot restore abandons the state store: answer now, with the new index.
                let state = shared.state.lock().await;
                let entries = if access == Access::Full {
                    health_entries(&state, &shared.config, service, passing, &required_tags)
                } else {
                    Vec::new()
                };
                let index = shared.result_index(&state, service);
                return json_answer_raw(&Value::Array(entries), index, shared.zero_index.load(Ordering::Acquire));
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Counts a blocking query as held until it answers or its connection is cut.
struct HeldQuery<'a>(&'a watch::Sender<u64>);

impl<'a> HeldQuery<'a> {
    fn new(blocked: &'a watch::Sender<u64>) -> Self {
        blocked.send_modify(|held| *held += 1);
        Self(blocked)
    }
}

impl Drop for HeldQuery<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|held| *held = held.saturating_sub(1));
    }
}

fn health_entries(
    state: &State,
    config: &ConsulDoubleConfig,
    service: &str,
    passing: bool,
    required_tags: &[String],
) -> Vec<Value> {
    let mut entries = Vec::new();
    for record in state.services.values().filter(|s| s.name == service) {
        if !required_tags.iter().all(|tag| record.tags.contains(tag)) {
            continue;
        }
        let Some(node) = state.nodes.get(&record.node) else {
            continue;
        };
        let mut checks = vec![serf_check(node)];
        checks.extend(
            state
                .checks
                .values()
                .filter(|c| c.node == record.node && c.service_id == record.id)
                .map(|c| check_json(c, record)),
        );
        // agent/health_endpoint.go filterNonPassing: any non-passing check drops the entry.
        if passing && checks.iter().any(|c| c["Status"] != "passing") {
            continue;
        }
        entries.push(json!({
            "Node": node_json(node, config),
            "Service": service_json(record),
            "Checks": checks,
        }));
    }
    entries
}

fn node_json(node: &NodeRecord, config: &ConsulDoubleConfig) -> Value {
    let address = node.address.to_string();
    json!({
        "ID": format!("00000000-0000-0000-0000-{:012x}", node.create_index),
        "Node": node.name,
        "Address": address,
        "Datacenter": config.datacenter,
        "TaggedAddresses": {"lan": address, "lan_ipv4": address, "wan": address, "wan_ipv4": address},
        "Meta": {"consul-network-segment": ""},
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    })
}

fn service_json(service: &ServiceRecord) -> Value {
    let tagged = if service.address.is_empty() {
        json!({})
    } else {
        json!({
            "lan_ipv4": {"Address": service.address, "Port": service.port},
            "wan_ipv4": {"Address": service.address, "Port": service.port},
        })
    };
    json!({
        "ID": service.id,
        "Service": service.name,
        "Tags": service.tags,
        "Address": service.address,
        "TaggedAddresses": tagged,
        "Meta": if service.meta.is_empty() { Value::Null } else { json!(service.meta) },
        "Port": service.port,
        "Weights": {"Passing": service.weights.0, "Warning": service.weights.1},
        "EnableTagOverride": false,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "CreateIndex": service.create_index,
        "ModifyIndex": service.modify_index,
    })
}

fn check_json(check: &CheckRecord, service: &ServiceRecord) -> Value {
    json!({
        "Node": check.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": service.name,
        "ServiceTags": service.tags,
        "Type": if check.ttl.is_some() { "ttl" } else { "" },
        "Definition": {},
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    })
}

fn serf_check(node: &NodeRecord) -> Value {
    json!({
        "Node": node.name,
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": node.serf_status,
        "Notes": "",
        "Output": if node.serf_status == "passing" { "Agent alive and reachable" } else { "Agent not live or unreachable" },
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "Definition": {},
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    })
}

/// `PUT /v1/agent/service/register` (§2).
async fn register(
    shared: &Shared,
    body: &[u8],
    query: &[(String, String)],
    access: Access,
) -> Answer {
    let definition: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            return text_answer(
                StatusCode::BAD_REQUEST,
                "Request decode failed: not an object",
            );
        }
        Err(err) => {
            return text_answer(
                StatusCode::BAD_REQUEST,
                &format!("Request decode failed: {err}"),
            );
        }
    };
    let text = |name: &str| {
        field(&definition, name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let name = text("Name");
    if name.is_empty() {
        return text_answer(StatusCode::BAD_REQUEST, "Missing service name");
    }
    if access == Access::Anonymous {
        return permission_denied(&name);
    }
    let id = Some(text("ID"))
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| name.clone());
    let address = text("Address");
    if address.parse::<IpAddr>().is_ok_and(|a| a.is_unspecified()) {
        return text_answer(StatusCode::BAD_REQUEST, "Invalid service address");
    }
    let tags = field(&definition, "Tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let meta = field(&definition, "Meta")
        .and_then(Value::as_object)
        .map(|meta| {
            meta.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let weights = field(&definition, "Weights").map_or((1, 1), |w| {
        (
            field(w, "Passing").and_then(Value::as_i64).unwrap_or(1),
            field(w, "Warning").and_then(Value::as_i64).unwrap_or(1),
        )
    });
    let port = field(&definition, "Port")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    // `Check` and `Checks` are concatenated (structs.ServiceDefinition.CheckTypes).
    let mut check_defs: Vec<Value> = Vec::new();
    if let Some(check) = field(&definition, "Check").filter(|c| c.is_object()) {
        check_defs.push(check.clone());
    }
    if let Some(checks) = field(&definition, "Checks").and_then(Value::as_array) {
        check_defs.extend(checks.iter().filter(|c| c.is_object()).cloned());
    }
    let count = check_defs.len();
    let mut new_checks = Vec::new();
    for (i, def) in check_defs.iter().enumerate() {
        let ttl = match field(def, "TTL")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(text) => match parse_go_duration(text) {
                Some(ttl) => Some(ttl),
                None => {
                    return text_answer(
                        StatusCode::BAD_REQUEST,
                        &format!("Request decode failed: time: invalid duration \"{text}\""),
                    );
                }
            },
        };
        let deregister_after = match field(def, "DeregisterCriticalServiceAfter")
            .and_then(Value::as_str)
        {
            None | Some("") => None,
            Some(text) => match parse_go_duration(text) {
                // agent.go: below CheckDeregisterIntervalMin it is raised to the minimum.
                Some(after) if !after.is_zero() => Some(after.max(shared.config.deregister_min)),
                Some(_) => None,
                None => {
                    return text_answer(
                        StatusCode::BAD_REQUEST,
                        &format!("Request decode failed: time: invalid duration \"{text}\""),
                    );
                }
            },
        };
        let given_id = field(def, "CheckID").and_then(Value::as_str).unwrap_or("");
        let check_id = match (given_id.is_empty(), count > 1) {
            (false, _) => given_id.to_owned(),
            (true, false) => format!("service:{id}"),
            (true, true) => format!("service:{id}:{}", i + 1),
        };
        let check_name = field(def, "Name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("Service '{name}' check"), str::to_owned);
        let status = field(def, "Status")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("critical")
            .to_owned();
        let notes = field(def, "Notes")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        new_checks.push((check_id, check_name, status, notes, ttl, deregister_after));
    }

    let node = shared.config.node_name.clone();
    let mut state = shared.state.lock().await;
    let key = (node.clone(), id.clone());
    let existing = state.services.get(&key).cloned();
    let mut service = ServiceRecord {
        node: node.clone(),
        id: id.clone(),
        name: name.clone(),
        tags,
        address,
        meta,
        port,
        weights,
        create_index: 0,
        modify_index: 0,
    };
    let same_service = existing.as_ref().is_some_and(|old| {
        let mut old = old.clone();
        old.create_index = 0;
        old.modify_index = 0;
        old == service
    });
    let replace_checks = query.iter().any(|(k, _)| k == "replace-existing-checks");
    let mut changed = !same_service;
    let now = Instant::now();
    let mut kept: BTreeMap<(String, String), CheckRecord> = BTreeMap::new();
    for (check_id, check_name, status, notes, ttl, deregister_after) in new_checks {
        let check_key = (node.clone(), check_id.clone());
        // Re-registering keeps the existing check's state (agent.go: snapshot restore).
        let previous = state.checks.get(&check_key).cloned();
        let (status, output) = previous.as_ref().map_or((status, String::new()), |p| {
            (p.status.clone(), p.output.clone())
        });
        changed |= previous.is_none();
        kept.insert(
            check_key,
            CheckRecord {
                node: node.clone(),
                check_id,
                name: check_name,
                status,
                notes,
                output,
                service_id: id.clone(),
                ttl,
                ttl_deadline: ttl.map(|ttl| now + ttl),
                last_output: previous
                    .as_ref()
                    .map(|p| p.last_output.clone())
                    .unwrap_or_default(),
                deregister_after,
                critical_since: None,
                create_index: previous.as_ref().map_or(0, |p| p.create_index),
                modify_index: previous.as_ref().map_or(0, |p| p.modify_index),
            },
        );
    }
    if replace_checks {
        let before = state.checks.len();
        state.checks.retain(|(n, cid), c| {
            !(n == &node && c.service_id == id && !kept.contains_key(&(n.clone(), cid.clone())))
        });
        changed |= before != state.checks.len();
    }
    let index = if changed { state.bump() } else { state.index };
    service.create_index = existing.as_ref().map_or(index, |old| old.create_index);
    service.modify_index = if changed {
        index
    } else {
        existing.as_ref().map_or(index, |old| old.modify_index)
    };
    for (check_key, mut check) in kept {
        if check.create_index == 0 {
            check.create_index = index;
            check.modify_index = index;
        }
        state.checks.insert(check_key, check);
    }
    state.services.insert(key, service);
    if changed {
        state.service_index.insert(name, index);
    }
    shared.publish(state.index);
    empty_ok()
}

/// `PUT /v1/agent/service/deregister/:id` (§2): unknown IDs get the agent's 404.
async fn deregister(shared: &Shared, id: &str, access: Access) -> Answer {
    let mut state = shared.state.lock().await;
    let key = (shared.config.node_name.clone(), id.to_owned());
    let Some(service) = state.services.get(&key) else {
        return text_answer(
            StatusCode::NOT_FOUND,
            &format!(
                "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
            ),
        );
    };
    if access == Access::Anonymous {
        return permission_denied(&service.name);
    }
    let index = state.remove_service(&key);
    shared.publish(index);
    empty_ok()
}

/// `PUT /v1/agent/check/pass|warn|fail|update/:check_id` (§3).
async fn update_ttl(
    shared: &Shared,
    check_id: &str,
    status: &str,
    output: &str,
    access: Access,
) -> Answer {
    let mut state = shared.state.lock().await;
    let key = (shared.config.node_name.clone(), check_id.to_owned());
    let Some(check) = state.checks.get(&key) else {
        return text_answer(
            StatusCode::NOT_FOUND,
            &format!(
                "Unknown check ID \"{check_id}\". Ensure that the check ID is passed, not the check name."
            ),
        );
    };
    if access == Access::Anonymous {
        let service = state
            .services
            .get(&(check.node.clone(), check.service_id.clone()))
            .map_or_else(String::new, |s| s.name.clone());
        return permission_denied(&service);
    }
    let Some(ttl) = check.ttl else {
        return text_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("CheckID \"{check_id}\" does not have associated TTL"),
        );
    };
    let output = cap_output(output, shared.config.output_max_size);
    if let Some(check) = state.checks.get_mut(&key) {
        check.ttl_deadline = Some(Instant::now() + ttl);
        check.last_output = output.clone();
    }
    let index = state.update_check(&key, status, &output);
    shared.publish(index);
    empty_ok()
}

/// `CheckTTL.SetStatus`: output over `OutputMaxSize` is cut and annotated.
fn cap_output(output: &str, max: usize) -> String {
    if output.len() <= max {
        return output.to_owned();
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{} ... (captured {max} of {} bytes)",
        &output[..cut],
        output.len()
    )
}

/// A JSON answer with the blocking headers; `raw_index` skips the 0 → 1 rewrite.
fn json_answer_raw(body: &Value, index: u64, raw_index: bool) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())));
    let headers = answer.headers_mut();
    headers.insert(
        "Content-Type",
        http::HeaderValue::from_static("application/json"),
    );
    // agent/http.go setIndex: 0 is rewritten to 1 against busy loops.
    let index = if raw_index { index } else { index.max(1) };
    headers.insert("X-Consul-Index", http::HeaderValue::from(index));
    headers.insert(
        "X-Consul-KnownLeader",
        http::HeaderValue::from_static("true"),
    );
    headers.insert("X-Consul-LastContact", http::HeaderValue::from_static("0"));
    answer
}

fn text_answer(status: StatusCode, text: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(text.to_owned())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        "Content-Type",
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

fn empty_ok() -> Answer {
    Response::new(Full::new(Bytes::new()))
}

fn method_not_allowed(method: &Method) -> Answer {
    text_answer(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {method} not allowed"),
    )
}

/// A JSON field, matched as Go's decoder does: case-insensitively, snake_case accepted.
fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(name).or_else(|| {
        let wanted = name.to_ascii_lowercase();
        object
            .iter()
            .find(|(key, _)| key.replace('_', "").to_ascii_lowercase() == wanted)
            .map(|(_, v)| v)
    })
}

/// `"a" in Service.Tags and "b" in Service.Tags` → `[a, b]`; anything else is unsupported.
fn parse_tag_filter(filter: &str) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    for clause in filter.split(" and ") {
        let clause = clause.trim();
        let quoted = clause.strip_suffix("in Service.Tags")?.trim_end();
        let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
        let mut tag = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => tag.push(chars.next()?),
                '"' => return None,
                c => tag.push(c),
            }
        }
        tags.push(tag);
    }
    Some(tags)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration` for non-negative values: `300ms`, `1.5h`, `2h45m`; a bare number
/// other than `0` is invalid.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    Some(Duration::from_nanos(total as u64))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            ),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
