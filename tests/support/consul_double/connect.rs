//! The double's Connect CA (docs/consul.md §6): `GET /v1/agent/connect/ca/roots` and
//! `GET /v1/agent/connect/ca/leaf/:service`, with certificates made by rcgen the way Consul's
//! built-in CA makes them (EC P-256, SPIFFE URI SANs, Go's SEC1 `EC PRIVATE KEY`), the agent's
//! leaf cache (the same leaf until its renewal point or a root change), and root rotation with
//! a cross-signed intermediate. Test hooks are `ConsulDouble` methods, never HTTP endpoints.
//! Validity is wall-clock time (certificates carry it), unlike the rest of the double.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use http::StatusCode;
use rand::Rng;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{
    Access, Answer, ConsulDouble, Shared, json_answer_raw, parse_go_duration, text_answer,
};

/// Consul's `LeafCertTTL` default.
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(72 * 3600);
/// Consul's `RootCertTTL` default (10 years).
const ROOT_TTL: Duration = Duration::from_secs(87_600 * 3600);

/// One CA root, newest last.
struct RootRecord {
    id: String,
    serial: u64,
    signing_key_id: String,
    cert_pem: String,
    /// The root cross-signed by its predecessor (Consul's rotation), if any.
    intermediates: Vec<String>,
    issuer: Issuer<'static, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    create_index: u64,
    modify_index: u64,
}

/// A leaf as the agent's cache holds it.
#[derive(Clone)]
struct LeafRecord {
    serial: String,
    cert_pem: String,
    key_pem: String,
    service: String,
    uri: String,
    valid_after: OffsetDateTime,
    valid_before: OffsetDateTime,
    /// The agent renews between 60% and 90% of the lifetime (agent/leafcert).
    renew_at: OffsetDateTime,
    root_id: String,
    index: u64,
    /// A test said the renewal point has passed.
    stale: bool,
}

/// The cluster's CA and this agent's leaf cache.
pub(super) struct ConnectCa {
    cluster_id: String,
    datacenter: String,
    leaf_ttl: Duration,
    roots: Vec<RootRecord>,
    leaves: BTreeMap<String, LeafRecord>,
    /// The agent-local index of issued leaves (their `ModifyIndex`).
    leaf_index: u64,
    pub(super) leaf_fault: Option<(StatusCode, String)>,
}

impl ConnectCa {
    pub(super) fn new(cluster_id: &str, datacenter: &str, leaf_ttl: Duration, index: u64) -> Self {
        let mut ca = Self {
            cluster_id: cluster_id.to_owned(),
            datacenter: datacenter.to_owned(),
            leaf_ttl,
            roots: Vec::new(),
            leaves: BTreeMap::new(),
            leaf_index: 0,
            leaf_fault: None,
        };
        ca.add_root(index);
        ca
    }

    /// `<cluster-id>.consul`.
    pub(super) fn trust_domain(&self) -> String {
        format!("{}.consul", self.cluster_id)
    }

    pub(super) fn spiffe_id(&self, service: &str) -> String {
        format!(
            "spiffe://{}/ns/default/dc/{}/svc/{service}",
            self.trust_domain(),
            self.datacenter
        )
    }

    fn active(&self) -> &RootRecord {
        self.roots.last().expect("the Connect CA always has a root")
    }

    /// A new active root; the previous one stays listed and cross-signs the new one.
    pub(super) fn add_root(&mut self, index: u64) {
        let serial = self.roots.last().map_or(1, |r| r.serial + 1);
        let key = KeyPair::generate().expect("root key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("root params");
        // connect/ca/provider_consul.go: `pri-<n>.consul.ca.<first 8 of the cluster id>.consul`
        params.distinguished_name.push(
            DnType::CommonName,
            format!("pri-{serial}.consul.ca.{}.consul", &self.cluster_id[..8]),
        );
        params.subject_alt_names = vec![uri_san(&format!("spiffe://{}", self.trust_domain()))];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + ROOT_TTL;
        let cert = params.self_signed(&key).expect("self-signed root");
        let intermediates = match self.roots.last() {
            Some(previous) => vec![
                params
                    .signed_by(&key, &previous.issuer)
                    .expect("cross-signed root")
                    .pem(),
            ],
            None => Vec::new(),
        };
        let (not_before, not_after) = (params.not_before, params.not_after);
        self.roots.push(RootRecord {
            id: colon_hex(&rand::rng().random::<[u8; 20]>()),
            serial,
            signing_key_id: colon_hex(&rand::rng().random::<[u8; 20]>()),
            cert_pem: cert.pem(),
            intermediates,
            issuer: Issuer::new(params, key),
            not_before,
            not_after,
            create_index: index,
            modify_index: index,
        });
    }

    pub(super) fn roots_json(&self) -> Value {
        let active = self.active().id.clone();
        let roots: Vec<Value> = self
            .roots
            .iter()
            .map(|root| {
                json!({
                    "ID": root.id,
                    "Name": "Consul CA Primary Cert",
                    "SerialNumber": root.serial,
                    "SigningKeyID": root.signing_key_id,
                    "ExternalTrustDomain": self.cluster_id,
                    "NotBefore": rfc3339(root.not_before),
                    "NotAfter": rfc3339(root.not_after),
                    "RootCert": root.cert_pem,
                    // Go's nil slice.
                    "IntermediateCerts": if root.intermediates.is_empty() { Value::Null } else { json!(root.intermediates) },
                    "Active": root.id == active,
                    "PrivateKeyType": "ec",
                    "PrivateKeyBits": 256,
                    "CreateIndex": root.create_index,
                    "ModifyIndex": root.modify_index,
                })
            })
            .collect();
        json!({"ActiveRootID": active, "Roots": roots})
    }

    pub(super) fn roots_index(&self) -> u64 {
        self.active().modify_index
    }

    pub(super) fn roots_pem(&self) -> String {
        self.roots.iter().map(|r| r.cert_pem.clone()).collect()
    }

    /// The cached leaf, renewed first when its renewal point passed or the root changed.
    fn cached_leaf(&mut self, service: &str) -> LeafRecord {
        let now = OffsetDateTime::now_utc();
        let active = self.active().id.clone();
        let fresh = self
            .leaves
            .get(service)
            .is_some_and(|leaf| !leaf.stale && leaf.root_id == active && now < leaf.renew_at);
        if !fresh {
            let leaf = self.issue(service);
            self.leaves.insert(service.to_owned(), leaf);
        }
        self.leaves[service].clone()
    }

    /// A new leaf for `service` from the active root (not cached).
    fn issue(&mut self, service: &str) -> LeafRecord {
        self.leaf_index += 1;
        let key = KeyPair::generate().expect("leaf key");
        let uri = self.spiffe_id(service);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{service}.svc.default.{}.consul", &self.cluster_id[..8]),
        );
        params.subject_alt_names = vec![uri_san(&uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let serial = rand::rng().random::<u64>() >> 1;
        params.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + self.leaf_ttl;
        let active = self.active();
        let cert = params.signed_by(&key, &active.issuer).expect("leaf");
        // agent/consul/leader_connect_ca.go SignCertificate: the leaf, then the intermediates.
        let mut cert_pem = cert.pem();
        for intermediate in &active.intermediates {
            cert_pem.push_str(intermediate);
        }
        let lifetime = params.not_after - params.not_before;
        let share = rand::rng().random_range(0.6..0.9);
        LeafRecord {
            serial: colon_hex(&serial.to_be_bytes()),
            cert_pem,
            key_pem: go_ec_key_pem(&key.serialize_der()),
            service: service.to_owned(),
            uri,
            valid_after: params.not_before,
            valid_before: params.not_after,
            renew_at: params.not_before + lifetime * share,
            root_id: active.id.clone(),
            index: self.leaf_index,
            stale: false,
        }
    }
}

fn leaf_json(leaf: &LeafRecord) -> Value {
    json!({
        "SerialNumber": leaf.serial,
        "CertPEM": leaf.cert_pem,
        "PrivateKeyPEM": leaf.key_pem,
        "Service": leaf.service,
        "ServiceURI": leaf.uri,
        "ValidAfter": rfc3339(leaf.valid_after),
        "ValidBefore": rfc3339(leaf.valid_before),
        "Namespace": "default",
        "CreateIndex": leaf.index,
        "ModifyIndex": leaf.index,
    })
}

/// `GET /v1/agent/connect/ca/roots`: no ACL; blocks on `index` like every blocking endpoint.
pub(super) async fn roots(shared: &Shared, query: &[(String, String)]) -> Answer {
    let blocking = match Blocking::parse(shared, query) {
        Ok(blocking) => blocking,
        Err(reason) => return text_answer(StatusCode::BAD_REQUEST, reason),
    };
    let mut changes = shared.connect_tx.subscribe();
    loop {
        changes.borrow_and_update();
        let (body, index) = {
            let ca = shared.connect.lock().await;
            (ca.roots_json(), ca.roots_index())
        };
        if blocking.done(index) {
            return json_answer_raw(&body, index, false);
        }
        blocking.wait(&mut changes).await;
    }
}

/// `GET /v1/agent/connect/ca/leaf/:service`: `service:write` needed; answers the cached leaf,
/// blocking on `index` until the agent renews it.
pub(super) async fn leaf(
    shared: &Shared,
    service: &str,
    query: &[(String, String)],
    access: Access,
) -> Answer {
    if service.is_empty() {
        return text_answer(StatusCode::BAD_REQUEST, "Missing service name");
    }
    if access == Access::Anonymous {
        return super::permission_denied(service);
    }
    if let Some((status, body)) = shared.connect.lock().await.leaf_fault.clone() {
        return text_answer(status, &body);
    }
    let blocking = match Blocking::parse(shared, query) {
        Ok(blocking) => blocking,
        Err(reason) => return text_answer(StatusCode::BAD_REQUEST, reason),
    };
    let mut changes = shared.connect_tx.subscribe();
    loop {
        changes.borrow_and_update();
        let leaf = shared.connect.lock().await.cached_leaf(service);
        if blocking.done(leaf.index) {
            return json_answer_raw(&leaf_json(&leaf), leaf.index, false);
        }
        blocking.wait(&mut changes).await;
    }
}

/// `index`/`wait` as agent/blockingquery reads them (§4), for the Connect endpoints.
struct Blocking {
    min_index: u64,
    deadline: Instant,
}

impl Blocking {
    /// `Err`: the plain-text 400 to answer.
    fn parse(shared: &Shared, query: &[(String, String)]) -> Result<Self, &'static str> {
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let wait = match param("wait") {
            None => shared.config.default_wait,
            Some(text) => match parse_go_duration(text) {
                Some(wait) if !wait.is_zero() => wait,
                Some(_) => shared.config.default_wait,
                None => return Err("Invalid wait time"),
            },
        };
        let min_index = match param("index").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(index)) => index,
            Some(Err(_)) => return Err("Invalid index"),
        };
        if min_index > 0 {
            shared.counts.blocking.fetch_add(1, Ordering::AcqRel);
        }
        let wait = wait.min(shared.config.max_wait);
        let stagger = u64::try_from((wait / 16).as_millis()).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(rand::rng().random_range(0..=stagger));
        Ok(Self {
            min_index,
            deadline: Instant::now() + wait + jitter,
        })
    }

    fn done(&self, index: u64) -> bool {
        self.min_index == 0 || index > self.min_index || Instant::now() >= self.deadline
    }

    async fn wait(&self, changes: &mut tokio::sync::watch::Receiver<u64>) {
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(self.deadline) => {}
        }
    }
}

/// Test hooks of the Connect CA.
impl ConsulDouble {
    /// The SPIFFE trust domain of the cluster: `<cluster-id>.consul`.
    pub async fn connect_trust_domain(&self) -> String {
        self.shared.connect.lock().await.trust_domain()
    }

    /// `spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>`.
    pub async fn connect_spiffe_id(&self, service: &str) -> String {
        self.shared.connect.lock().await.spiffe_id(service)
    }

    /// Every root certificate, PEM (what a caller's trust bundle holds).
    pub async fn connect_roots_pem(&self) -> String {
        self.shared.connect.lock().await.roots_pem()
    }

    /// A fresh leaf for `service` from the active root, as another agent of the cluster would
    /// get it: `(CertPEM, PrivateKeyPEM)`.
    pub async fn connect_issue_leaf(&self, service: &str) -> (String, String) {
        let leaf = self.shared.connect.lock().await.issue(service);
        (leaf.cert_pem, leaf.key_pem)
    }

    /// The `CertPEM` this agent currently caches for `service`.
    pub async fn connect_cached_leaf(&self, service: &str) -> Option<String> {
        let ca = self.shared.connect.lock().await;
        ca.leaves.get(service).map(|leaf| leaf.cert_pem.clone())
    }

    /// The cached leaf of `service` has reached its renewal point: the next request (and any
    /// blocked one) gets a new certificate.
    pub async fn connect_renew_leaf(&self, service: &str) {
        if let Some(leaf) = self.shared.connect.lock().await.leaves.get_mut(service) {
            leaf.stale = true;
        }
        self.shared
            .connect_tx
            .send_modify(|generation| *generation += 1);
    }

    /// A CA root rotation: a new active root, cross-signed by the old one, which stays listed.
    /// Cached leaves are re-issued on their next request.
    pub async fn connect_rotate_root(&self) {
        let index = {
            let mut state = self.shared.state.lock().await;
            let index = state.bump();
            self.shared.publish(index);
            index
        };
        self.shared.connect.lock().await.add_root(index);
        self.shared
            .connect_tx
            .send_modify(|generation| *generation += 1);
    }

    /// Answer leaf requests with `status` and `body` (e.g. 500 "No cluster leader"), or stop.
    pub async fn connect_set_leaf_fault(&self, fault: Option<(StatusCode, &str)>) {
        self.shared.connect.lock().await.leaf_fault =
            fault.map(|(status, body)| (status, body.to_owned()));
    }
}

fn uri_san(uri: &str) -> SanType {
    SanType::URI(Ia5String::try_from(uri).expect("an ASCII URI"))
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Go's `time.Time` JSON for UTC instants.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The PKCS#8 EC key rcgen made, as Go's `x509.MarshalECPrivateKey` writes it: SEC1 with the
/// curve parameters, PEM type `EC PRIVATE KEY` (what Consul's `PrivateKeyPEM` holds).
fn go_ec_key_pem(pkcs8: &[u8]) -> String {
    let (body, _) = der_element(pkcs8, 0x30);
    let (_, body) = der_element(body, 0x02);
    let (algorithm, body) = der_element(body, 0x30);
    let (_, curve_and_rest) = der_element(algorithm, 0x06); // id-ecPublicKey
    let (sec1, _) = der_element(body, 0x04);
    let (inner, _) = der_element(sec1, 0x30);
    let (_, after_version) = der_element(inner, 0x02);
    let (private_key, public_key) = der_element(after_version, 0x04);
    let contents = [
        &[0x02, 0x01, 0x01][..],
        &der(0x04, private_key),
        &der(0xa0, curve_and_rest),
        public_key,
    ]
    .concat();
    let encoded = base64::engine::general_purpose::STANDARD.encode(der(0x30, &contents));
    let mut pem = String::from("-----BEGIN EC PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END EC PRIVATE KEY-----\n");
    pem
}

/// `(contents, rest)` of the DER element with `tag` at the start of `input`.
fn der_element(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag, "unexpected DER tag");
    let (length, header) = match input[1] {
        short if short < 0x80 => (usize::from(short), 2),
        long => {
            let count = usize::from(long & 0x7f);
            let length = input[2..2 + count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (length, 2 + count)
        }
    };
    input[header..].split_at(length)
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if contents.len() < 0x80 {
        out.push(contents.len() as u8);
    } else {
        let bytes = contents.len().to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}
