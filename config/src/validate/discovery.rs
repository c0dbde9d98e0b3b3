//! Validation of discovery: node-level connections, per-upstream sources (each needs its
//! backend's connection), subsets, zones, and the local service's registration.

use std::net::{IpAddr, SocketAddr};

use super::Validator;
use crate::error::FieldPath;
use crate::model::Config;
use crate::model::discovery::{
    DnsRecordType, RegistrationBackend, RegistrationConfig, UpstreamDiscoveryConfig,
};

impl Validator {
    pub(super) fn discovery(&mut self, config: &Config, root: &FieldPath) {
        let d = &config.discovery;
        let path = root.field("discovery");
        if let Some(consul) = &d.consul {
            if consul.address.trim().is_empty() {
                self.push(
                    path.field("consul")
                        .field("address")
                        .error("must not be empty"),
                );
            }
            if consul.wait.get().is_zero() {
                self.push(
                    path.field("consul")
                        .field("wait")
                        .error("must be greater than zero"),
                );
            }
        }
        if let Some(etcd) = &d.etcd {
            if etcd.endpoints.is_empty() {
                self.push(
                    path.field("etcd")
                        .field("endpoints")
                        .error("list at least one endpoint"),
                );
            }
            if etcd.prefix.is_empty() || etcd.prefix.ends_with('/') {
                self.push(
                    path.field("etcd")
                        .field("prefix")
                        .error("a non-empty key prefix without a trailing '/'"),
                );
            }
        }
        if let Some(dns) = &d.dns {
            if let Some(ns) = &dns.nameserver
                && ns.parse::<SocketAddr>().is_err()
            {
                self.push(
                    path.field("dns")
                        .field("nameserver")
                        .error(format!("{ns:?} is not an IP:port address")),
                );
            }
            if dns.min_refresh > dns.max_refresh {
                self.push(
                    path.field("dns")
                        .field("min_refresh")
                        .error("must not exceed max_refresh"),
                );
            }
        }
        for (i, u) in config.upstreams.iter().enumerate() {
            let p = root.field("upstreams").index(i);
            if let Some(source) = &u.discovery {
                self.upstream_source(config, source, &p.field("discovery"));
            }
            if u.subset.is_some() && u.discovery.is_none() {
                self.push(
                    p.field("subset")
                        .error("a subset selects among discovered instances; add discovery"),
                );
            }
            if u.prefer_zone && d.zone.is_none() {
                self.push(
                    p.field("prefer_zone")
                        .error("set discovery.zone, this node's zone"),
                );
            }
        }
        if let Some(reg) = &config.registration {
            self.registration(config, reg, &root.field("registration"));
        }
    }

    fn upstream_source(
        &mut self,
        config: &Config,
        source: &UpstreamDiscoveryConfig,
        path: &FieldPath,
    ) {
        let d = &config.discovery;
        match source {
            UpstreamDiscoveryConfig::Consul(c) => {
                if d.consul.is_none() {
                    self.push(
                        path.field("consul")
                            .error("configure discovery.consul (the agent's address)"),
                    );
                }
                if c.service.is_empty() {
                    self.push(
                        path.field("consul")
                            .field("service")
                            .error("must not be empty"),
                    );
                }
            }
            UpstreamDiscoveryConfig::Etcd(e) => {
                if d.etcd.is_none() {
                    self.push(
                        path.field("etcd")
                            .error("configure discovery.etcd (the cluster's endpoints)"),
                    );
                }
                if e.service.is_empty() || e.service.contains('/') {
                    self.push(
                        path.field("etcd")
                            .field("service")
                            .error("a non-empty name without '/'"),
                    );
                }
            }
            UpstreamDiscoveryConfig::Dns(n) => {
                if n.name.is_empty() {
                    self.push(path.field("dns").field("name").error("must not be empty"));
                }
                match (n.record, n.port) {
                    (DnsRecordType::A, None | Some(0)) => self.push(
                        path.field("dns")
                            .field("port")
                            .error("A/AAAA records carry no port: set one"),
                    ),
                    (DnsRecordType::Srv, Some(_)) => self.push(
                        path.field("dns")
                            .field("port")
                            .error("SRV records carry their port: remove it"),
                    ),
                    _ => {}
                }
            }
        }
    }

    fn registration(&mut self, config: &Config, reg: &RegistrationConfig, path: &FieldPath) {
        match reg.backend {
            RegistrationBackend::Consul if config.discovery.consul.is_none() => {
                self.push(
                    path.field("backend")
                        .error("configure discovery.consul to register there"),
                );
            }
            RegistrationBackend::Etcd if config.discovery.etcd.is_none() => {
                self.push(
                    path.field("backend")
                        .error("configure discovery.etcd to register there"),
                );
            }
            _ => {}
        }
        if reg.service.is_empty() {
            self.push(path.field("service").error("must not be empty"));
        }
        match reg.address.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => self.push(
                path.field("address")
                    .error("register an address others can reach, not 0.0.0.0 or ::"),
            ),
            Ok(_) => {}
            Err(_) => self.push(
                path.field("address")
                    .error(format!("{:?} is not an IP address", reg.address)),
            ),
        }
        if reg.port == 0 {
            self.push(path.field("port").error("must not be 0"));
        }
        if reg.ttl.get() < std::time::Duration::from_secs(1) {
            self.push(path.field("ttl").error("must be at least 1s"));
        }
        if let Some(check) = &reg.health_check
            && !check.url.starts_with("http://")
        {
            self.push(
                path.field("health_check")
                    .field("url")
                    .error("an http:// URL of the local application"),
            );
        }
    }
}
