//! The JSON shapes of Consul's answers that discovery reads (docs/consul.md §4) and the
//! registration body it sends (§2). Only the fields meshgate uses are modelled; unknown fields
//! are ignored and every field tolerates `null` or absence, as Go's encoder may emit either.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// One entry of `GET /v1/health/service/:service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceEntry {
    pub node: Node,
    pub service: AgentService,
    #[serde(deserialize_with = "null_as_default")]
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(deserialize_with = "null_as_default")]
    pub node: String,
    #[serde(deserialize_with = "null_as_default")]
    pub address: String,
    #[serde(deserialize_with = "null_as_default")]
    pub datacenter: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentService {
    #[serde(rename = "ID", deserialize_with = "null_as_default")]
    pub id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub service: String,
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// Empty means "the node's address" (§4: fall back to `Node.Address`).
    #[serde(deserialize_with = "null_as_default")]
    pub address: String,
    #[serde(deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, String>,
    /// A Go `int`: kept wide so an out-of-range value is reported, not a decode failure.
    #[serde(deserialize_with = "null_as_default")]
    pub port: i64,
    /// Absent or `null` for services registered without weights: Consul's default is 1/1.
    pub weights: Option<Weights>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: i64,
    pub warning: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    #[serde(rename = "CheckID", deserialize_with = "null_as_default")]
    pub check_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(rename = "ServiceID", deserialize_with = "null_as_default")]
    pub service_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub output: String,
}

/// `PUT /v1/agent/service/register` body (`api/agent.go AgentServiceRegistration`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterBody {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    pub check: TtlCheckBody,
}

/// The service's TTL check (`AgentServiceCheck`). No `CheckID`: the agent names a lone
/// service check `service:<ID>` (§2), which is what heartbeats address.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlCheckBody {
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub deregister_critical_service_after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
