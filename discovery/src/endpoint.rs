//! The endpoint model every source produces: an address to send traffic to and what discovery
//! knows about it. Plain data: no I/O, no health state (that belongs to the upstream pool).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

#[cfg(test)]
mod tests;

/// One backend instance as discovery sees it.
///
/// `weight` is a relative share of traffic among the endpoints of one set (Consul `Weights`,
/// SRV weight, etcd metadata `weight`); `0` keeps RFC 2782's meaning "only a very small chance
/// when others have weight", and the balancer decides how to honour it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub tags: Vec<String>,
    /// Free-form labels such as `version` or `zone`.
    pub metadata: BTreeMap<String, String>,
    /// The registry's name for the instance (Consul service ID, etcd key, SRV target), if any.
    pub id: Option<String>,
}

impl Endpoint {
    /// The weight of an endpoint whose source says nothing about weights.
    pub const DEFAULT_WEIGHT: u32 = 1;

    pub fn new(address: IpAddr, port: u16) -> Self {
        Self {
            address,
            port,
            weight: Self::DEFAULT_WEIGHT,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            id: None,
        }
    }

    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        Self::new(addr.ip(), addr.port())
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// A set of endpoints, sorted, with at most one endpoint per `address:port`.
///
/// When a source reports the same `address:port` twice, the entry that sorts first is kept, so
/// the result does not depend on the order the registry answered in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EndpointSet {
    endpoints: Vec<Endpoint>,
}

impl EndpointSet {
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        let mut endpoints: Vec<Endpoint> = endpoints.into_iter().collect();
        endpoints.sort();
        // Sorting orders by address then port first, so duplicates are adjacent.
        endpoints.dedup_by(|later, kept| later.address == kept.address && later.port == kept.port);
        Self { endpoints }
    }

    pub fn empty() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Endpoint> {
        self.endpoints.iter()
    }

    pub fn as_slice(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn into_vec(self) -> Vec<Endpoint> {
        self.endpoints
    }

    /// The endpoint at `addr`, if the set has one.
    pub fn get(&self, addr: SocketAddr) -> Option<&Endpoint> {
        self.endpoints
            .binary_search_by(|e| (e.address, e.port).cmp(&(addr.ip(), addr.port())))
            .ok()
            .and_then(|i| self.endpoints.get(i))
    }

    /// The socket addresses in set order (handy for logs and tests).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.endpoints.iter().map(Endpoint::socket_addr).collect()
    }
}

impl FromIterator<Endpoint> for EndpointSet {
    fn from_iter<I: IntoIterator<Item = Endpoint>>(iter: I) -> Self {
        Self::new(iter)
    }
}

impl IntoIterator for EndpointSet {
    type Item = Endpoint;
    type IntoIter = std::vec::IntoIter<Endpoint>;

    fn into_iter(self) -> Self::IntoIter {
        self.endpoints.into_iter()
    }
}

impl<'a> IntoIterator for &'a EndpointSet {
    type Item = &'a Endpoint;
    type IntoIter = std::slice::Iter<'a, Endpoint>;

    fn into_iter(self) -> Self::IntoIter {
        self.endpoints.iter()
    }
}
