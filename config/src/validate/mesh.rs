//! Validation of the `mesh:` section and of `mesh: inbound` listeners.

use std::net::SocketAddr;

use super::Validator;
use crate::error::FieldPath;
use crate::model::mesh::{IdentitySourceConfig, MeshConfig};
use crate::model::{Config, MeshListenerRole};

impl Validator {
    pub(super) fn mesh(&mut self, config: &Config, root: &FieldPath) {
        for (i, listener) in config.listeners.iter().enumerate() {
            if listener.mesh != Some(MeshListenerRole::Inbound) {
                continue;
            }
            let path = root.field("listeners").index(i);
            if config.mesh.is_none() {
                self.push(path.field("mesh").error(
                    "an inbound mesh listener needs the top-level mesh section (this node's identity)",
                ));
            }
            if listener.tls.is_some() {
                self.push(
                    path.field("tls")
                        .error("a mesh inbound listener uses the mesh identity; remove tls"),
                );
            }
        }
        if let Some(mesh) = &config.mesh {
            self.mesh_section(mesh, &root.field("mesh"));
        }
        for (i, u) in config.upstreams.iter().enumerate() {
            let path = root.field("upstreams").index(i);
            if let Some(tls) = &u.tls {
                if tls.ca.trim().is_empty() {
                    self.push(
                        path.field("tls")
                            .field("ca")
                            .error("a file path is required"),
                    );
                }
                if let Some(c) = &tls.client_certificate {
                    for (field, value) in [("cert", &c.cert), ("key", &c.key)] {
                        if value.trim().is_empty() {
                            self.push(
                                path.field("tls")
                                    .field("client_certificate")
                                    .field(field)
                                    .error("a file path is required"),
                            );
                        }
                    }
                }
            }
            if let Some(m) = &u.mesh {
                if u.tls.is_some() {
                    self.push(path.field("mesh").error("use either tls or mesh, not both"));
                }
                if config.mesh.is_none() {
                    self.push(path.field("mesh").error(
                        "calling a mesh service needs the top-level mesh section (this node's identity)",
                    ));
                }
                for (field, value) in [("service", &m.service), ("namespace", &m.namespace)] {
                    if let Err(reason) = check_segment(value) {
                        self.push(path.field("mesh").field(field).error(reason));
                    }
                }
            }
        }
    }

    fn mesh_section(&mut self, mesh: &MeshConfig, path: &FieldPath) {
        if let Err(reason) = check_trust_domain(&mesh.trust_domain) {
            self.push(path.field("trust_domain").error(reason));
        }
        for (field, value) in [("service", &mesh.service), ("namespace", &mesh.namespace)] {
            if let Err(reason) = check_segment(value) {
                self.push(path.field(field).error(reason));
            }
        }
        self.identity_source(&mesh.identity, &path.field("identity"));
        if mesh.lifetime.get() < std::time::Duration::from_secs(60) {
            self.push(path.field("lifetime").error("must be at least 1m"));
        }
        if !(0.1..=0.95).contains(&mesh.renew_fraction) {
            self.push(path.field("renew_fraction").error(format!(
                "{} is out of range 0.1..=0.95",
                mesh.renew_fraction
            )));
        }
        for (i, rule) in mesh.authorization.rules.iter().enumerate() {
            if let Err(reason) = check_source_pattern(&rule.source) {
                self.push(
                    path.field("authorization")
                        .field("rules")
                        .index(i)
                        .field("source")
                        .error(reason),
                );
            }
        }
        if let Some(ca) = &mesh.ca_server {
            let p = path.field("ca_server");
            if ca.address.parse::<SocketAddr>().is_err() {
                self.push(
                    p.field("address")
                        .error(format!("{:?} is not an IP:port address", ca.address)),
                );
            }
            if ca.ca_dir.trim().is_empty() {
                self.push(p.field("ca_dir").error("a directory is required"));
            }
            for (i, t) in ca.bootstrap_tokens.iter().enumerate() {
                let tp = p.field("bootstrap_tokens").index(i);
                if t.token.len() < 16 {
                    self.push(tp.field("token").error("use at least 16 characters"));
                }
                for (field, value) in [("service", &t.service), ("namespace", &t.namespace)] {
                    if let Err(reason) = check_segment(value) {
                        self.push(tp.field(field).error(reason));
                    }
                }
            }
        }
    }

    fn identity_source(&mut self, source: &IdentitySourceConfig, path: &FieldPath) {
        match source {
            IdentitySourceConfig::LocalCa { dir } => {
                if dir.trim().is_empty() {
                    self.push(
                        path.field("local_ca")
                            .field("dir")
                            .error("a directory is required"),
                    );
                }
            }
            IdentitySourceConfig::CaService {
                url,
                trust_bundle,
                bootstrap_token,
            } => {
                let p = path.field("ca_service");
                if !url.starts_with("https://") {
                    self.push(
                        p.field("url")
                            .error(format!("{url:?} must be an https:// URL")),
                    );
                }
                if trust_bundle.trim().is_empty() {
                    self.push(p.field("trust_bundle").error("a file path is required"));
                }
                if bootstrap_token.trim().is_empty() {
                    self.push(p.field("bootstrap_token").error("must not be empty"));
                }
            }
        }
    }
}

/// SPIFFE trust domain: lowercase letters, digits, `.`, `-`, `_`.
fn check_trust_domain(td: &str) -> Result<(), String> {
    let ok = !td.is_empty()
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{td:?} is not a SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')"
        ))
    }
}

/// One SPIFFE path segment: letters, digits, `.`, `-`, `_`; not `.` or `..`.
fn check_segment(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} may only contain letters, digits, '.', '-' and '_'"
        ))
    }
}

/// `*`, `spiffe://td/ns/<ns>/svc/*`, or a full service id.
fn check_source_pattern(source: &str) -> Result<(), String> {
    if source == "*" {
        return Ok(());
    }
    let bad = || {
        format!(
            "{source:?}: expected *, spiffe://<trust-domain>/ns/<namespace>/svc/<service> or …/svc/*"
        )
    };
    let rest = source.strip_prefix("spiffe://").ok_or_else(bad)?;
    let (td, path) = rest.split_once('/').ok_or_else(bad)?;
    check_trust_domain(td).map_err(|_| bad())?;
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["ns", ns, "svc", svc]
            if check_segment(ns).is_ok() && (*svc == "*" || check_segment(svc).is_ok()) =>
        {
            Ok(())
        }
        _ => Err(bad()),
    }
}
