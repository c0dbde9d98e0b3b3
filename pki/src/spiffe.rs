//! `SpiffeId`: parsing and validation of SPIFFE IDs (SPIFFE-ID spec §2); it never touches certificates.

use std::fmt;
use std::str::FromStr;

use crate::PkiError;

const SCHEME: &str = "spiffe://";
/// SPIFFE-ID §2.3: longer URIs SHOULD NOT be considered valid.
const MAX_ID_LEN: usize = 2048;
/// SPIFFE-ID §2.1: a trust domain is at most 255 bytes.
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A validated SPIFFE ID: `spiffe://<trust-domain>[/<path>]`.
///
/// meshgate names workloads `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`
/// (see [`SpiffeId::service`]) and understands Consul Connect's
/// `spiffe://<trust-domain>/ns/<namespace>/dc/<datacenter>/svc/<service>`, but any ID valid
/// under the SPIFFE spec parses.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Byte offset where the path starts (== `id.len()` for a trust domain ID).
    path_start: usize,
}

impl SpiffeId {
    /// Parse and validate a SPIFFE ID.
    pub fn parse(input: &str) -> Result<SpiffeId, PkiError> {
        let invalid = |reason| PkiError::InvalidSpiffeId {
            id: input.to_owned(),
            reason,
        };
        if input.len() > MAX_ID_LEN {
            return Err(invalid("longer than 2048 bytes"));
        }
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid("scheme must be \"spiffe://\""))?;
        if rest.contains('?') {
            return Err(invalid("query is not allowed"));
        }
        if rest.contains('#') {
            return Err(invalid("fragment is not allowed"));
        }
        let (trust_domain, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        check_trust_domain(trust_domain).map_err(invalid)?;
        check_path(path).map_err(invalid)?;
        Ok(SpiffeId {
            id: input.to_owned(),
            path_start: SCHEME.len() + trust_domain.len(),
        })
    }

    /// The meshgate workload ID `spiffe://<trust_domain>/ns/<namespace>/svc/<service>`.
    pub fn service(
        trust_domain: &str,
        namespace: &str,
        service: &str,
    ) -> Result<SpiffeId, PkiError> {
        let id = format!("{SCHEME}{trust_domain}/ns/{namespace}/svc/{service}");
        if namespace.contains('/') || service.contains('/') {
            return Err(PkiError::InvalidSpiffeId {
                id,
                reason: "namespace and service must each be a single path segment",
            });
        }
        SpiffeId::parse(&id)
    }

    /// The ID of a trust domain itself, `spiffe://<trust_domain>` (carried by meshgate CA certificates).
    pub fn trust_domain_id(trust_domain: &str) -> Result<SpiffeId, PkiError> {
        SpiffeId::parse(&format!("{SCHEME}{trust_domain}"))
    }

    /// The trust domain, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.path_start]
    }

    /// The path including its leading `/`, or `""` for a trust domain ID.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The namespace if the path names a service: meshgate's `/ns/<namespace>/svc/<service>`
    /// or Consul Connect's `/ns/<namespace>/dc/<datacenter>/svc/<service>`.
    pub fn namespace(&self) -> Option<&str> {
        self.service_path().map(|(ns, _, _)| ns)
    }

    /// The service name if the path names a service (either shape, see [`Self::namespace`]).
    pub fn service_name(&self) -> Option<&str> {
        self.service_path().map(|(_, _, svc)| svc)
    }

    /// The datacenter of a Consul Connect service id (`/ns/<ns>/dc/<dc>/svc/<service>`);
    /// `None` for meshgate's own shape, which has no datacenter.
    pub fn datacenter(&self) -> Option<&str> {
        self.service_path().and_then(|(_, dc, _)| dc)
    }

    /// `(namespace, datacenter, service)`. Consul's agent/connect/uri_service.go writes
    /// `/ns/<ns>/dc/<dc>/svc/<service>`; Consul Enterprise's partitioned form
    /// (`/ap/<partition>/ns/…`) is not a service path here.
    fn service_path(&self) -> Option<(&str, Option<&str>, &str)> {
        let mut segments = self.path().strip_prefix('/')?.split('/');
        let (Some("ns"), Some(ns)) = (segments.next(), segments.next()) else {
            return None;
        };
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("svc"), Some(svc), None, _, _) => Some((ns, None, svc)),
            (Some("dc"), Some(dc), Some("svc"), Some(svc), None) => Some((ns, Some(dc), svc)),
            _ => None,
        }
    }
}

/// SPIFFE-ID §2.1: lowercase letters, digits, dots, dashes, underscores; no port or userinfo.
fn check_trust_domain(trust_domain: &str) -> Result<(), &'static str> {
    if trust_domain.is_empty() {
        return Err("trust domain is missing");
    }
    if trust_domain.contains('@') {
        return Err("userinfo is not allowed");
    }
    if trust_domain.contains(':') {
        return Err("port is not allowed");
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err("trust domain is longer than 255 bytes");
    }
    let valid =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_');
    if !trust_domain.chars().all(valid) {
        return Err(
            "trust domain characters are limited to lowercase letters, digits, dots, dashes and underscores",
        );
    }
    Ok(())
}

/// SPIFFE-ID §2.2: `/`-separated non-empty segments of `[a-zA-Z0-9._-]`, no `.`/`..`, no trailing `/`.
fn check_path(path: &str) -> Result<(), &'static str> {
    let Some(segments) = path.strip_prefix('/') else {
        return Ok(()); // empty path: a trust domain ID
    };
    let last = segments.split('/').count() - 1;
    for (index, segment) in segments.split('/').enumerate() {
        match segment {
            "" if index == last => return Err("path cannot have a trailing slash"),
            "" => return Err("path cannot contain empty segments"),
            "." | ".." => return Err("path cannot contain dot segments"),
            _ if segment.contains('%') => {
                return Err("path cannot contain percent-encoded characters");
            }
            _ => {}
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if !segment.chars().all(valid) {
            return Err(
                "path segment characters are limited to letters, digits, dots, dashes and underscores",
            );
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = PkiError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        SpiffeId::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests;
