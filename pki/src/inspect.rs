//! `CertInfo`: the fields meshgate reads out of a certificate (x509-parser), for
//! `meshgate pki inspect`, identity extraction and rotation. Reads only; never judges trust.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::identity::svid_id;
use crate::pem_text::certs_from_pem;
use crate::profile::from_unix_seconds;
use crate::{PkiError, SpiffeId};

/// What a certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject distinguished name, e.g. `CN=orders`.
    pub subject: String,
    /// The subject's CommonName, if any.
    pub common_name: Option<String>,
    /// The issuer distinguished name.
    pub issuer: String,
    /// The serial number as colon-separated hex, e.g. `4a:0f:…`.
    pub serial: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// URI SANs (SPIFFE IDs among them).
    pub uri_sans: Vec<String>,
    /// IP address SANs.
    pub ip_sans: Vec<IpAddr>,
    /// The SPIFFE ID, when the certificate has exactly one URI SAN and it is a valid SPIFFE ID.
    pub spiffe_id: Option<SpiffeId>,
    /// `basicConstraints cA=true`.
    pub is_ca: bool,
}

/// Inspect the first certificate of a PEM text.
pub fn inspect(pem: &str) -> Result<CertInfo, PkiError> {
    let certs = certs_from_pem(pem, "certificate PEM")?;
    match certs.first() {
        Some(first) => CertInfo::from_der(first),
        None => Err(PkiError::Pem {
            what: "certificate PEM",
            reason: "no certificate".into(),
        }),
    }
}

/// Inspect every certificate of a PEM text (e.g. a `cert.pem` chain), in order.
pub fn inspect_chain(pem: &str) -> Result<Vec<CertInfo>, PkiError> {
    certs_from_pem(pem, "certificate PEM")?
        .iter()
        .map(CertInfo::from_der)
        .collect()
}

impl CertInfo {
    /// Read one DER certificate.
    pub fn from_der(der: &CertificateDer<'_>) -> Result<CertInfo, PkiError> {
        let bad = |reason: String| PkiError::Certificate {
            what: "certificate",
            reason,
        };
        let (rest, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| bad(format!("cannot parse DER: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the certificate".into()));
        }
        let sans = subject_alt_names(&cert).map_err(bad)?;
        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before: from_unix_seconds(validity.not_before.timestamp()),
            not_after: from_unix_seconds(validity.not_after.timestamp()),
            spiffe_id: svid_id(&sans.uri).ok(),
            dns_sans: sans.dns,
            uri_sans: sans.uri,
            ip_sans: sans.ip,
            is_ca: cert.is_ca(),
        })
    }

    /// How long until `not_after`, or zero when already expired.
    pub fn time_to_expiry(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// Whether `now` is past `not_after`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now > self.not_after
    }

    /// The validity period length.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }
}

#[derive(Default)]
struct Sans {
    dns: Vec<String>,
    uri: Vec<String>,
    ip: Vec<IpAddr>,
}

fn subject_alt_names(cert: &X509Certificate<'_>) -> Result<Sans, String> {
    let mut sans = Sans::default();
    let Some(extension) = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName extension: {e}"))?
    else {
        return Ok(sans);
    };
    for name in &extension.value.general_names {
        match name {
            GeneralName::DNSName(dns) => sans.dns.push((*dns).to_owned()),
            GeneralName::URI(uri) => sans.uri.push((*uri).to_owned()),
            GeneralName::IPAddress(bytes) => sans.ip.extend(ip_from_bytes(bytes)),
            _ => {}
        }
    }
    Ok(sans)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[String]| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(", ")
            }
        };
        let ips: Vec<String> = self.ip_sans.iter().map(IpAddr::to_string).collect();
        writeln!(f, "subject:     {}", self.subject)?;
        writeln!(f, "issuer:      {}", self.issuer)?;
        writeln!(f, "serial:      {}", self.serial)?;
        writeln!(
            f,
            "not before:  {}",
            humantime::format_rfc3339_seconds(self.not_before)
        )?;
        writeln!(
            f,
            "not after:   {}",
            humantime::format_rfc3339_seconds(self.not_after)
        )?;
        match &self.spiffe_id {
            Some(id) => writeln!(f, "spiffe id:   {id}")?,
            None => writeln!(f, "spiffe id:   -")?,
        }
        writeln!(f, "dns sans:    {}", list(&self.dns_sans))?;
        writeln!(f, "uri sans:    {}", list(&self.uri_sans))?;
        writeln!(f, "ip sans:     {}", list(&ips))?;
        write!(f, "ca:          {}", if self.is_ca { "yes" } else { "no" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{test_ca, test_leaf_request};

    #[test]
    fn inspect_reads_what_was_issued() {
        let ca = test_ca("inspect.test", true);
        let mut request = test_leaf_request("inspect.test", "default", "orders");
        request.dns_sans = vec!["orders.default.svc".into()];
        request.ip_sans = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let leaf = ca.issue(&request).unwrap();

        let chain = inspect_chain(&leaf.chain_pem()).unwrap();
        assert_eq!(chain.len(), 2, "leaf + intermediate");
        let info = &chain[0];
        assert_eq!(info, &inspect(&leaf.chain_pem()).unwrap());
        assert_eq!(info.subject, "CN=orders");
        assert_eq!(info.common_name.as_deref(), Some("orders"));
        assert_eq!(info.spiffe_id.as_ref(), Some(&request.spiffe_id));
        assert_eq!(info.uri_sans, vec![request.spiffe_id.to_string()]);
        assert_eq!(info.dns_sans, vec!["orders.default.svc".to_owned()]);
        assert_eq!(info.ip_sans, request.ip_sans);
        assert!(!info.is_ca);
        assert_eq!(info.issuer, chain[1].subject);
        assert!(chain[1].is_ca);
        assert_eq!(info.lifetime(), Duration::from_secs(24 * 3600 + 60));

        let text = info.to_string();
        for needle in [
            "subject:     CN=orders",
            "spiffe id:   spiffe://inspect.test/ns/default/svc/orders",
            "ca:          no",
            "ip sans:     127.0.0.1, ::1",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn time_to_expiry_saturates_at_zero() {
        let ca = test_ca("inspect.test", false);
        let leaf = ca
            .issue(&test_leaf_request("inspect.test", "a", "b"))
            .unwrap();
        let info = leaf.info();
        let an_hour_before = info.not_after - Duration::from_secs(3600);
        assert_eq!(
            info.time_to_expiry(an_hour_before),
            Duration::from_secs(3600)
        );
        assert_eq!(
            info.time_to_expiry(info.not_after + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert!(info.is_expired(info.not_after + Duration::from_secs(1)));
        assert!(!info.is_expired(an_hour_before));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(inspect("").is_err());
        assert!(CertInfo::from_der(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }
}
