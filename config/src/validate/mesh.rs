//! Validation of the `mesh:` section and of `mesh: inbound` listeners.

use std::net::SocketAddr;

use super::Validator;
use crate::error::FieldPath;
use crate::model::mesh::{IdentitySourceConfig, MIN_RENEWAL_MARGIN, MeshConfig, RENEWAL_JITTER};
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
        if matches!(mesh.identity, IdentitySourceConfig::Consul(_)) && !mesh.dns_names.is_empty() {
            self.push(path.field("dns_names").error(
                "Consul's CA decides the certificate's names; remove dns_names with identity.consul",
            ));
        }
        if mesh.lifetime.get() < std::time::Duration::from_secs(60) {
            self.push(path.field("lifetime").error("must be at least 1m"));
        }
        if !(0.1..=0.95).contains(&mesh.renew_fraction) {
            self.push(path.field("renew_fraction").error(format!(
                "{} is out of range 0.1..=0.95",
                mesh.renew_fraction
            )));
        } else if !matches!(mesh.identity, IdentitySourceConfig::Consul(_)) {
            self.renewal_schedule(mesh, path);
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

    /// Renewal happens between `lifetime × (renew_fraction − jitter)` and
    /// `lifetime × renew_fraction` after issue: both ends need room (Consul's CA sets its own
    /// lifetime, so this only applies to the other sources).
    fn renewal_schedule(&mut self, mesh: &MeshConfig, path: &FieldPath) {
        let lifetime = mesh.lifetime.get();
        if lifetime < std::time::Duration::from_secs(60) {
            return;
        }
        let earliest = lifetime.mul_f64((mesh.renew_fraction - RENEWAL_JITTER).max(0.0));
        let left = lifetime.mul_f64(1.0 - mesh.renew_fraction);
        let problem = if earliest < MIN_RENEWAL_MARGIN {
            Some(format!(
                "with lifetime {} this renews as early as {:.1}s after issue (renew_fraction minus the {:.0}% jitter); renewals need at least {}s between them: raise renew_fraction or lifetime",
                humantime::format_duration(lifetime),
                earliest.as_secs_f64(),
                RENEWAL_JITTER * 100.0,
                MIN_RENEWAL_MARGIN.as_secs()
            ))
        } else if left < MIN_RENEWAL_MARGIN {
            Some(format!(
                "with lifetime {} this renews only {:.1}s before expiry; a failed renewal needs at least {}s to be retried: lower renew_fraction or raise lifetime",
                humantime::format_duration(lifetime),
                left.as_secs_f64(),
                MIN_RENEWAL_MARGIN.as_secs()
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            self.push(path.field("renew_fraction").error(message));
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
            IdentitySourceConfig::Consul(consul) => {
                let p = path.field("consul");
                if let Err(reason) = check_consul_address(&consul.address) {
                    self.push(p.field("address").error(reason));
                }
                if let Some(service) = &consul.service
                    && let Err(reason) = check_segment(service)
                {
                    self.push(p.field("service").error(reason));
                }
                if let Some(token) = &consul.token
                    && token.bytes().any(|b| b.is_ascii_control())
                {
                    self.push(
                        p.field("token")
                            .error("must not contain control characters"),
                    );
                }
            }
        }
    }
}

/// `http://host:port` or `host:port`: the Consul client speaks plain HTTP to its agent.
fn check_consul_address(address: &str) -> Result<(), String> {
    let rest = match address.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{address:?}: scheme {scheme:?} is not supported; use the agent's http:// address"
            ));
        }
        None => address,
    };
    let authority = rest.trim_end_matches('/');
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{address:?}: expected http://host:port")),
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

/// `*`, `spiffe://td/ns/<ns>/svc/*`, or a full service id; Consul Connect's ids carry a
/// datacenter: `spiffe://td/ns/<ns>/dc/<dc>/svc/<service>` (or `…/svc/*`).
fn check_source_pattern(source: &str) -> Result<(), String> {
    if source == "*" {
        return Ok(());
    }
    let bad = || {
        format!(
            "{source:?}: expected *, spiffe://<trust-domain>/ns/<namespace>[/dc/<datacenter>]/svc/<service> or …/svc/*"
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
        ["ns", ns, "dc", dc, "svc", svc]
            if check_segment(ns).is_ok()
                && check_segment(dc).is_ok()
                && (*svc == "*" || check_segment(svc).is_ok()) =>
        {
            Ok(())
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use crate::error::LoadError;
    use crate::load::{Format, parse_with_env};
    use crate::model::mesh::{ConsulConnectConfig, IdentitySourceConfig};

    fn consul_mesh(identity: &str, extra: &str) -> String {
        format!(
            "mode: sidecar\nmesh:\n  trust_domain: 11111111-2222-3333-4444-555555555555.consul\n  service: web\n  identity: {identity}\n{extra}"
        )
    }

    fn problems(text: &str) -> Vec<String> {
        match parse_with_env(text, Format::Yaml, "t", &|var| {
            (var == "CONSUL_TOKEN").then(|| "s3cr3t".to_string())
        }) {
            Err(LoadError::Invalid(errors)) => errors.iter().map(|e| e.to_string()).collect(),
            Err(other) => vec![format!("other: {other}")],
            Ok(_) => vec![],
        }
    }

    fn local_mesh(lifetime: &str, fraction: &str) -> String {
        format!(
            "mode: sidecar\nmesh:\n  trust_domain: mesh.test\n  service: web\n  identity: {{ local_ca: {{ dir: /ca }} }}\n  lifetime: {lifetime}\n  renew_fraction: {fraction}\n"
        )
    }

    #[test]
    fn renewal_schedules_that_cannot_work_are_refused() {
        // The storm: a one-minute certificate renewed after 6–12 s.
        let p = problems(&local_mesh("1m", "0.2"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "mesh.renew_fraction: with lifetime 1m this renews as early as 6.0s after issue"
            ),
            "{p:?}"
        );
        // Renewing 3 s before expiry leaves no time to retry.
        let p = problems(&local_mesh("1m", "0.95"));
        assert!(
            p.len() == 1 && p[0].contains("only 3.0s before expiry"),
            "{p:?}"
        );
        // A fraction at the jitter renews at the moment of issue, whatever the lifetime.
        assert_eq!(problems(&local_mesh("24h", "0.1")).len(), 1);
        for (lifetime, fraction) in [
            ("1m", "0.7"),
            ("1m", "0.3"),
            ("24h", "0.11"),
            ("24h", "0.95"),
        ] {
            assert_eq!(
                problems(&local_mesh(lifetime, fraction)),
                Vec::<String>::new(),
                "{lifetime} {fraction}"
            );
        }
    }

    #[test]
    fn consul_identity_defaults_and_env_token() {
        let text = consul_mesh("{ consul: { token: \"${CONSUL_TOKEN}\" } }", "");
        let config = parse_with_env(&text, Format::Yaml, "t", &|var| {
            (var == "CONSUL_TOKEN").then(|| "s3cr3t".to_string())
        })
        .unwrap();
        let mesh = config.mesh.unwrap();
        assert_eq!(
            mesh.identity,
            IdentitySourceConfig::Consul(ConsulConnectConfig {
                address: "http://127.0.0.1:8500".into(),
                token: Some("s3cr3t".into()),
                service: None,
            })
        );
        let text = consul_mesh(
            "{ consul: {} }",
            "  authorization:\n    rules:\n      - { source: \"spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/api\", action: allow }\n      - { source: \"spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/*\", action: deny }\n",
        );
        assert_eq!(problems(&text), Vec::<String>::new());
    }

    #[test]
    fn consul_identity_errors_name_their_field() {
        let text = consul_mesh(
            "{ consul: { address: \"https://127.0.0.1:8501\", service: \"a/b\" } }",
            "  dns_names: [web.local]\n",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p.iter()
                .any(|e| e.starts_with("mesh.identity.consul.address:") && e.contains("https")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|e| e.starts_with("mesh.identity.consul.service:")),
            "{p:?}"
        );
        assert!(p.iter().any(|e| e.starts_with("mesh.dns_names:")), "{p:?}");

        let p = problems(&consul_mesh("{ consul: { address: \"consul\" } }", ""));
        assert!(
            p.len() == 1 && p[0].contains("expected http://host:port"),
            "{p:?}"
        );
        let p = problems(&consul_mesh("{ consul: { datacenter: dc2 } }", ""));
        assert!(p.len() == 1 && p[0].contains("datacenter"), "{p:?}");
        let p = problems(&consul_mesh(
            "{ consul: {} }",
            "  authorization:\n    rules: [{ source: \"spiffe://td/ns/a/dc/svc/x\", action: allow }]\n",
        ));
        assert!(
            p.len() == 1 && p[0].starts_with("mesh.authorization.rules[0].source:"),
            "{p:?}"
        );
    }
}
