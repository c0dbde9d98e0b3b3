//! Consul Connect's CA through the local agent (docs/consul.md §6): the CA roots and a service's
//! leaf certificate, with their JSON shapes. Plain (non-blocking) reads for a renewal-driven
//! caller; parsing the PEM inside is the caller's business, not this module's.

use http::{Method, StatusCode};
use serde::Deserialize;

use super::client::{ConsulClient, segment};
use super::wire::null_as_default;
use crate::error::DiscoveryError;

/// `GET /v1/agent/connect/ca/roots`: every root the cluster trusts, the active one first in
/// importance (`ActiveRootID`). During a root rotation the old root stays listed (inactive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CaRoots {
    #[serde(rename = "ActiveRootID", deserialize_with = "null_as_default")]
    pub active_root_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub roots: Vec<CaRoot>,
}

/// One CA root (`structs.CARoot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CaRoot {
    #[serde(rename = "ID", deserialize_with = "null_as_default")]
    pub id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// A Go `uint64`.
    #[serde(deserialize_with = "null_as_default")]
    pub serial_number: u64,
    #[serde(rename = "SigningKeyID", deserialize_with = "null_as_default")]
    pub signing_key_id: String,
    /// The cluster id the root was made for (the SPIFFE trust domain is `<it>.consul`).
    #[serde(deserialize_with = "null_as_default")]
    pub external_trust_domain: String,
    /// RFC 3339, as Go writes `time.Time`.
    #[serde(deserialize_with = "null_as_default")]
    pub not_before: String,
    #[serde(deserialize_with = "null_as_default")]
    pub not_after: String,
    /// PEM.
    #[serde(deserialize_with = "null_as_default")]
    pub root_cert: String,
    /// PEM each; `null` when there are none (Go's nil slice). After a root rotation this holds
    /// the new root cross-signed by the old one.
    #[serde(deserialize_with = "null_as_default")]
    pub intermediate_certs: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub active: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub private_key_type: String,
    #[serde(deserialize_with = "null_as_default")]
    pub private_key_bits: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub create_index: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub modify_index: u64,
}

impl CaRoots {
    /// The root that signs new leaves.
    pub fn active(&self) -> Option<&CaRoot> {
        self.roots
            .iter()
            .find(|root| root.id == self.active_root_id)
            .or_else(|| self.roots.iter().find(|root| root.active))
    }
}

/// `GET /v1/agent/connect/ca/leaf/:service` (`structs.IssuedCert`): the certificate AND its
/// private key — Consul's agent generates the key — for the service's SPIFFE id.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LeafCert {
    /// Colon-separated hex.
    #[serde(deserialize_with = "null_as_default")]
    pub serial_number: String,
    /// The leaf, followed by the intermediates that chain it to a root.
    #[serde(rename = "CertPEM", deserialize_with = "null_as_default")]
    pub cert_pem: String,
    /// `EC PRIVATE KEY` (SEC1) or `RSA PRIVATE KEY` (PKCS#1), as Go writes them.
    #[serde(rename = "PrivateKeyPEM", deserialize_with = "null_as_default")]
    pub private_key_pem: String,
    #[serde(deserialize_with = "null_as_default")]
    pub service: String,
    /// `spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>`.
    #[serde(rename = "ServiceURI", deserialize_with = "null_as_default")]
    pub service_uri: String,
    /// RFC 3339; the certificate's notBefore.
    #[serde(deserialize_with = "null_as_default")]
    pub valid_after: String,
    /// RFC 3339; the certificate's notAfter.
    #[serde(deserialize_with = "null_as_default")]
    pub valid_before: String,
    /// Consul Enterprise; empty or `default` elsewhere.
    #[serde(deserialize_with = "null_as_default")]
    pub namespace: String,
    #[serde(deserialize_with = "null_as_default")]
    pub create_index: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub modify_index: u64,
}

impl std::fmt::Debug for LeafCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCert")
            .field("serial_number", &self.serial_number)
            .field("service_uri", &self.service_uri)
            .field("valid_after", &self.valid_after)
            .field("valid_before", &self.valid_before)
            .field("private_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ConsulClient {
    /// `GET /v1/agent/connect/ca/roots` (no ACL needed).
    pub async fn connect_ca_roots(&self) -> Result<CaRoots, DiscoveryError> {
        self.connect_get("/v1/agent/connect/ca/roots", "CA roots")
            .await
    }

    /// `GET /v1/agent/connect/ca/leaf/:service`; the token needs `service:write` on it.
    /// Between the agent's own renewals it answers the same (cached) certificate.
    pub async fn connect_ca_leaf(&self, service: &str) -> Result<LeafCert, DiscoveryError> {
        if service.is_empty() {
            return Err(DiscoveryError::config(
                crate::error::Backend::Consul,
                "an empty service name has no leaf certificate",
            ));
        }
        let path = format!("/v1/agent/connect/ca/leaf/{}", segment(service));
        self.connect_get(&path, "leaf certificate").await
    }

    async fn connect_get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, DiscoveryError> {
        let (status, _, body) = self
            .send(Method::GET, path, None, self.request_timeout)
            .await?;
        if status != StatusCode::OK {
            return Err(self.status_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|err| self.invalid(format!("{what}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_decode_with_null_intermediates_and_pick_the_active_root() {
        let body = r#"{"ActiveRootID":"b","Roots":[
            {"ID":"a","Name":"Consul CA Primary Cert","SerialNumber":7,"SigningKeyID":"aa:bb",
             "ExternalTrustDomain":"1111","NotBefore":"2026-01-01T00:00:00Z","NotAfter":"2036-01-01T00:00:00Z",
             "RootCert":"A","IntermediateCerts":null,"Active":false,"PrivateKeyType":"ec",
             "PrivateKeyBits":256,"CreateIndex":5,"ModifyIndex":9},
            {"ID":"b","Name":"Consul CA Primary Cert","SerialNumber":8,"SigningKeyID":"cc:dd",
             "ExternalTrustDomain":"1111","NotBefore":"2026-01-01T00:00:00Z","NotAfter":"2036-01-01T00:00:00Z",
             "RootCert":"B","IntermediateCerts":["X"],"Active":true,"PrivateKeyType":"ec",
             "PrivateKeyBits":256,"CreateIndex":9,"ModifyIndex":9,"TrustDomain":"ignored"}]}"#;
        let roots: CaRoots = serde_json::from_str(body).unwrap();
        assert_eq!(roots.roots.len(), 2);
        assert!(roots.roots[0].intermediate_certs.is_empty());
        let active = roots.active().unwrap();
        assert_eq!(active.root_cert, "B");
        assert_eq!(active.intermediate_certs, vec!["X".to_string()]);
        assert_eq!(active.signing_key_id, "cc:dd");
        assert_eq!(active.serial_number, 8);
    }

    #[test]
    fn leaf_decodes_pascal_case_and_hides_its_key() {
        let body = r#"{"SerialNumber":"01:02","CertPEM":"C","PrivateKeyPEM":"K","Service":"web",
            "ServiceURI":"spiffe://1111.consul/ns/default/dc/dc1/svc/web",
            "ValidAfter":"2026-01-01T00:00:00Z","ValidBefore":"2026-01-04T00:00:00Z",
            "Namespace":null,"CreateIndex":3,"ModifyIndex":3}"#;
        let leaf: LeafCert = serde_json::from_str(body).unwrap();
        assert_eq!(leaf.cert_pem, "C");
        assert_eq!(leaf.private_key_pem, "K");
        assert_eq!(leaf.namespace, "");
        assert_eq!(
            leaf.service_uri,
            "spiffe://1111.consul/ns/default/dc/dc1/svc/web"
        );
        assert!(!format!("{leaf:?}").contains("\"K\""));
    }
}
