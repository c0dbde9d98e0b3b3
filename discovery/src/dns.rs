//! DNS discovery with hickory-resolver: A/AAAA for a name and a configured port, or SRV records
//! with their targets' addresses, re-resolved when the answer's TTL runs out (bounded by a
//! minimum and a maximum refresh). Never uses the system resolver when a nameserver is given.

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use tokio::time::Instant;

use crate::endpoint::{Endpoint, EndpointSet};
use crate::error::{Backend, DiscoveryError};
use crate::source::EndpointSource;

/// Which records describe the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsQuery {
    /// A and AAAA records of the name; every address gets `port` and weight 1.
    Ip { port: u16 },
    /// SRV records of the name (e.g. `_http._tcp.web.example.`). Only the lowest-numbered
    /// priority that yields at least one address is used (RFC 2782: contact the lowest priority
    /// you can reach; the other groups are kept as fallbacks for when it has none). SRV weight
    /// becomes `Endpoint::weight`; a group whose weights are all 0 ("no selection to do",
    /// RFC 2782) gets weight 1 everywhere. Each target is resolved with A/AAAA.
    Srv,
}

/// What to resolve, where, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsWatchConfig {
    /// Best written fully qualified (trailing dot) so no search domain is tried.
    pub name: String,
    pub query: DnsQuery,
    /// `Some`: ask only this server (UDP, then TCP on truncation). `None`: the system
    /// configuration (`/etc/resolv.conf`).
    pub nameserver: Option<SocketAddr>,
    /// Never re-resolve sooner than this, whatever the TTL (protects the server from TTL 0).
    pub min_refresh: Duration,
    /// Never keep an answer longer than this, whatever the TTL.
    pub max_refresh: Duration,
    /// Deadline of one query.
    pub timeout: Duration,
}

impl DnsWatchConfig {
    pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(300);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

    pub fn new(name: impl Into<String>, query: DnsQuery) -> Self {
        Self {
            name: name.into(),
            query,
            nameserver: None,
            min_refresh: Self::DEFAULT_MIN_REFRESH,
            max_refresh: Self::DEFAULT_MAX_REFRESH,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Resolves one name periodically; see [`EndpointSource`]. A name that does not exist (or has
/// no records of the type) is an empty set, not an error: the zone says "no instances".
pub struct DnsWatch {
    resolver: TokioResolver,
    config: DnsWatchConfig,
    next_refresh: Option<Instant>,
    delivered: Option<EndpointSet>,
}

impl std::fmt::Debug for DnsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsWatch")
            .field("config", &self.config)
            .field("next_refresh", &self.next_refresh)
            .finish()
    }
}

impl DnsWatch {
    pub fn new(config: DnsWatchConfig) -> Result<Self, DiscoveryError> {
        if config.name.is_empty() {
            return Err(DiscoveryError::config(
                Backend::Dns,
                "the name to resolve is empty",
            ));
        }
        if config.min_refresh.is_zero() || config.max_refresh < config.min_refresh {
            return Err(DiscoveryError::config(
                Backend::Dns,
                "refresh bounds must satisfy 0 < min_refresh <= max_refresh",
            ));
        }
        let resolver = build_resolver(&config)?;
        Ok(Self {
            resolver,
            config,
            next_refresh: None,
            delivered: None,
        })
    }

    /// Resolves once: the endpoints and how long the answer stays valid.
    async fn resolve(&self) -> Result<(EndpointSet, Duration), DiscoveryError> {
        match self.config.query {
            DnsQuery::Ip { port } => {
                let (addresses, ttl) = self.addresses(&self.config.name).await?;
                let endpoints = addresses
                    .into_iter()
                    .map(|address| Endpoint::new(address, port));
                Ok((endpoints.collect(), ttl))
            }
            DnsQuery::Srv => self.resolve_srv().await,
        }
    }

    async fn resolve_srv(&self) -> Result<(EndpointSet, Duration), DiscoveryError> {
        let lookup = match self.resolver.srv_lookup(self.config.name.as_str()).await {
            Ok(lookup) => lookup,
            Err(error) => return self.empty_or_error(&self.config.name, error),
        };
        let mut ttl = remaining(lookup.valid_until());
        let mut records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                // RFC 2782: a target of "." means the service is decidedly not available.
                RData::SRV(srv) if !srv.target.is_root() => Some(srv.clone()),
                _ => None,
            })
            .collect();
        records.sort_by_key(|srv| srv.priority);
        for group in records.chunk_by(|a, b| a.priority == b.priority) {
            let all_zero = group.iter().all(|srv| srv.weight == 0);
            let mut endpoints = Vec::new();
            for srv in group {
                let target = srv.target.to_ascii();
                let (addresses, target_ttl) = self.addresses(&target).await?;
                ttl = ttl.min(target_ttl);
                let weight = if all_zero { 1 } else { u32::from(srv.weight) };
                endpoints.extend(addresses.into_iter().map(|address| {
                    Endpoint::new(address, srv.port)
                        .with_weight(weight)
                        .with_id(format!("{target}:{}", srv.port))
                        .with_metadata("srv.priority", srv.priority.to_string())
                }));
            }
            if !endpoints.is_empty() {
                return Ok((EndpointSet::new(endpoints), ttl));
            }
        }
        Ok((EndpointSet::empty(), ttl))
    }

    /// The A and AAAA addresses of `name` and their validity.
    async fn addresses(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), DiscoveryError> {
        match self.resolver.lookup_ip(name).await {
            Ok(lookup) => Ok((lookup.iter().collect(), remaining(lookup.valid_until()))),
            Err(error) => self
                .empty_or_error(name, error)
                .map(|(_, ttl)| (Vec::new(), ttl)),
        }
    }

    /// "No such name / no such records" is an answer (an empty set, valid for the negative
    /// TTL); anything else is a failure to resolve.
    fn empty_or_error(
        &self,
        name: &str,
        error: NetError,
    ) -> Result<(EndpointSet, Duration), DiscoveryError> {
        if let NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(no_records)) = &error {
            let ttl = no_records
                .negative_ttl
                .map_or(self.config.min_refresh, |secs| {
                    Duration::from_secs(u64::from(secs))
                });
            return Ok((EndpointSet::empty(), ttl));
        }
        let target = self
            .config
            .nameserver
            .map_or_else(|| "system resolver".to_owned(), |ns| ns.to_string());
        Err(match error {
            NetError::Timeout => DiscoveryError::Timeout {
                backend: Backend::Dns,
                target: format!("{target} ({name})"),
                after: self.config.timeout,
            },
            NetError::Dns(hickory_resolver::net::DnsError::ResponseCode(code)) => {
                DiscoveryError::Server {
                    backend: Backend::Dns,
                    target: format!("{target} ({name})"),
                    status: u16::from(code),
                    body: code.to_string(),
                }
            }
            other => DiscoveryError::Unreachable {
                backend: Backend::Dns,
                target: format!("{target} ({name})"),
                reason: crate::error::error_chain(&other),
            },
        })
    }

    fn refresh_after(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.config.min_refresh, self.config.max_refresh)
    }
}

impl EndpointSource for DnsWatch {
    async fn next_update(&mut self) -> Result<EndpointSet, DiscoveryError> {
        loop {
            if let Some(at) = self.next_refresh {
                tokio::time::sleep_until(at).await;
            }
            match self.resolve().await {
                Ok((set, ttl)) => {
                    self.next_refresh = Some(Instant::now() + self.refresh_after(ttl));
                    if self.delivered.as_ref() != Some(&set) {
                        self.delivered = Some(set.clone());
                        return Ok(set);
                    }
                }
                Err(error) => {
                    // The caller backs off; its next call resolves at once.
                    self.next_refresh = None;
                    self.delivered = None;
                    return Err(error);
                }
            }
        }
    }
}

fn remaining(valid_until: std::time::Instant) -> Duration {
    valid_until.saturating_duration_since(std::time::Instant::now())
}

fn build_resolver(config: &DnsWatchConfig) -> Result<TokioResolver, DiscoveryError> {
    let builder = match config.nameserver {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let nameserver = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![nameserver]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|err| {
            DiscoveryError::config(
                Backend::Dns,
                format!("system resolver configuration: {err}"),
            )
        })?,
    };
    let mut options = ResolverOpts::default();
    options.timeout = config.timeout;
    options.attempts = 1;
    // The resolver's cache must not outlive max_refresh, or a refresh would re-read it.
    options.positive_max_ttl = Some(config.max_refresh);
    options.negative_max_ttl = Some(config.max_refresh);
    if config.nameserver.is_some() {
        options.use_hosts_file = ResolveHosts::Never;
    }
    builder
        .with_options(options)
        .build()
        .map_err(|err| DiscoveryError::config(Backend::Dns, format!("resolver: {err}")))
}
