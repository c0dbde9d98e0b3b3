//! The compiled `mesh:` section: this node's SPIFFE id and the authorization decision over
//! callers' SPIFFE ids.

use crate::model::mesh::{AuthorizationAction, MeshConfig};

/// The mesh settings the control plane and the inbound data plane need.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshSpec {
    pub config: MeshConfig,
    /// `spiffe://<trust_domain>/ns/<namespace>/svc/<service>`.
    pub spiffe_id: String,
    pub authorization: MeshAuthorization,
}

impl MeshSpec {
    pub fn new(config: &MeshConfig) -> Self {
        Self {
            spiffe_id: service_id(&config.trust_domain, &config.namespace, &config.service),
            authorization: MeshAuthorization::new(config),
            config: config.clone(),
        }
    }
}

/// The SPIFFE id of a service.
pub fn service_id(trust_domain: &str, namespace: &str, service: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/svc/{service}")
}

/// Consul-intentions style rules: the most specific matching rule decides; at equal
/// specificity deny wins; no match → the default.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshAuthorization {
    default: AuthorizationAction,
    /// (specificity, pattern, action): 3 = exact id, 2 = `…/svc/*`, 1 = `*`.
    rules: Vec<(u8, String, AuthorizationAction)>,
}

impl MeshAuthorization {
    fn new(config: &MeshConfig) -> Self {
        let mut rules: Vec<(u8, String, AuthorizationAction)> = config
            .authorization
            .rules
            .iter()
            .map(|r| {
                let specificity = if r.source == "*" {
                    1
                } else if r.source.ends_with("/svc/*") {
                    2
                } else {
                    3
                };
                (specificity, r.source.clone(), r.action)
            })
            .collect();
        // Most specific first; deny before allow at the same level.
        rules.sort_by_key(|(s, _, a)| (std::cmp::Reverse(*s), *a != AuthorizationAction::Deny));
        Self {
            default: config.authorization.default,
            rules,
        }
    }

    /// Whether a caller with this SPIFFE id may pass (`None`: no identity at all).
    pub fn decide(&self, caller: Option<&str>) -> AuthorizationAction {
        let Some(caller) = caller else {
            return AuthorizationAction::Deny;
        };
        for (specificity, pattern, action) in &self.rules {
            let matches = match specificity {
                1 => true,
                2 => pattern.strip_suffix('*').is_some_and(|prefix| {
                    caller.starts_with(prefix) && !caller[prefix.len()..].contains('/')
                }),
                _ => pattern == caller,
            };
            if matches {
                return *action;
            }
        }
        self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mesh::{AuthorizationConfig, AuthorizationRule, IdentitySourceConfig};

    fn mesh(default: AuthorizationAction, rules: &[(&str, AuthorizationAction)]) -> MeshSpec {
        MeshSpec::new(&MeshConfig {
            trust_domain: "td".into(),
            service: "orders".into(),
            namespace: "shop".into(),
            identity: IdentitySourceConfig::LocalCa { dir: "ca".into() },
            lifetime: crate::model::mesh::DEFAULT_LEAF_LIFETIME,
            renew_fraction: 0.7,
            dns_names: vec![],
            authorization: AuthorizationConfig {
                default,
                rules: rules
                    .iter()
                    .map(|(s, a)| AuthorizationRule {
                        source: s.to_string(),
                        action: *a,
                    })
                    .collect(),
            },
            ca_server: None,
        })
    }

    use AuthorizationAction::{Allow, Deny};

    #[test]
    fn most_specific_rule_wins_and_deny_breaks_ties() {
        let m = mesh(
            Deny,
            &[
                ("*", Allow),
                ("spiffe://td/ns/shop/svc/*", Deny),
                ("spiffe://td/ns/shop/svc/frontend", Allow),
                ("spiffe://td/ns/other/svc/x", Allow),
                ("spiffe://td/ns/other/svc/x", Deny),
            ],
        );
        let a = &m.authorization;
        assert_eq!(m.spiffe_id, "spiffe://td/ns/shop/svc/orders");
        assert_eq!(a.decide(Some("spiffe://td/ns/shop/svc/frontend")), Allow);
        assert_eq!(a.decide(Some("spiffe://td/ns/shop/svc/billing")), Deny);
        assert_eq!(a.decide(Some("spiffe://td/ns/other/svc/x")), Deny);
        assert_eq!(a.decide(Some("spiffe://td/ns/other/svc/y")), Allow);
        assert_eq!(a.decide(None), Deny);
    }

    #[test]
    fn the_default_applies_when_nothing_matches() {
        let allow = mesh(Allow, &[("spiffe://td/ns/shop/svc/evil", Deny)]);
        assert_eq!(
            allow
                .authorization
                .decide(Some("spiffe://td/ns/shop/svc/ok")),
            Allow
        );
        assert_eq!(
            allow
                .authorization
                .decide(Some("spiffe://td/ns/shop/svc/evil")),
            Deny
        );
        let deny = mesh(Deny, &[]);
        assert_eq!(
            deny.authorization
                .decide(Some("spiffe://td/ns/shop/svc/ok")),
            Deny
        );
    }
}
