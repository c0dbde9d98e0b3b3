//! A real authoritative DNS server for tests (hickory-server, UDP and TCP on one loopback
//! port) serving one zone whose A, AAAA and SRV records the test changes at runtime.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// One SRV record as a test writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// A name in the zone (or anywhere), e.g. `web-1.test.`.
    pub target: String,
}

pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    ttl: AtomicU32,
    serial: AtomicU32,
    server: Server<Catalog>,
}

impl DnsServer {
    /// Serves `origin` (e.g. `test.`) with records of `ttl` seconds.
    pub async fn start(origin: &str, ttl: u32) -> Self {
        let origin = Name::from_str(origin).expect("zone origin");
        let zone = Arc::new(InMemoryZoneHandler::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        ));
        let soa = SOA::new(
            Name::from_str("ns")
                .expect("ns")
                .append_domain(&origin)
                .expect("ns name"),
            Name::from_str("hostmaster")
                .expect("hostmaster")
                .append_domain(&origin)
                .expect("rname"),
            1,
            3600,
            600,
            86400,
            // Negative answers live as long as positive ones.
            ttl,
        );
        zone.upsert(Record::from_rdata(origin.clone(), ttl, RData::SOA(soa)), 1)
            .await;
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = zone.clone();
        catalog.upsert(LowerName::new(&origin), vec![handler]);

        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("dns addr");
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Self {
            addr,
            zone,
            ttl: AtomicU32::new(ttl),
            serial: AtomicU32::new(1),
            server,
        }
    }

    /// UDP and TCP listen here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TTL of records written from now on.
    pub fn set_ttl(&self, ttl: u32) {
        self.ttl.store(ttl, Ordering::Release);
    }

    /// Replaces the A and AAAA records of `name` with `addresses` (empty: removes them).
    pub async fn set_addresses(&self, name: &str, addresses: &[IpAddr]) {
        let name = Name::from_str(name).expect("record name");
        let v4: Vec<RData> = addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(ip) => Some(RData::A(A(*ip))),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<RData> = addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(ip) => Some(RData::AAAA(AAAA(*ip))),
                IpAddr::V4(_) => None,
            })
            .collect();
        self.replace(&name, RecordType::A, v4).await;
        self.replace(&name, RecordType::AAAA, v6).await;
    }

    /// Replaces the SRV records of `name` (empty: removes them).
    pub async fn set_srv(&self, name: &str, records: &[Srv]) {
        let name = Name::from_str(name).expect("record name");
        let data = records
            .iter()
            .map(|srv| {
                let target = Name::from_str(&srv.target).expect("SRV target");
                RData::SRV(SRV::new(srv.priority, srv.weight, srv.port, target))
            })
            .collect();
        self.replace(&name, RecordType::SRV, data).await;
    }

    /// Stops serving and waits for the server tasks to end.
    pub async fn stop(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }

    async fn replace(&self, name: &Name, record_type: RecordType, data: Vec<RData>) {
        let serial = self.serial.fetch_add(1, Ordering::AcqRel) + 1;
        let ttl = self.ttl.load(Ordering::Acquire);
        let key = RrKey::new(LowerName::new(name), record_type);
        let mut records = self.zone.records_mut().await;
        if data.is_empty() {
            records.remove(&key);
            return;
        }
        let mut set = RecordSet::new(name.clone(), record_type, serial);
        for rdata in data {
            set.insert(Record::from_rdata(name.clone(), ttl, rdata), serial);
        }
        records.insert(key, Arc::new(set));
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind UDP");
        let port = udp.local_addr().expect("udp addr").port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP after 50 tries");
}
