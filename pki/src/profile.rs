//! Certificate profiles: what a meshgate root, intermediate and leaf contain (SPIFFE X509-SVID §4),
//! key algorithms and validity windows. Builds rcgen parameters; never signs anything itself.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::{PkiError, SpiffeId};

/// Default leaf lifetime: short-lived SVIDs, renewed by the `CertRotator`.
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Default backdating of `notBefore`, so peers with a slightly slow clock accept a fresh cert.
pub const DEFAULT_BACKDATE: Duration = Duration::from_secs(60);
/// Default root CA lifetime (10 years).
pub const DEFAULT_ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Default intermediate CA lifetime (5 years, capped by the root's).
pub const DEFAULT_INTERMEDIATE_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 60 * 60);

/// RFC 5280 upper bound for a CommonName.
const MAX_COMMON_NAME_LEN: usize = 64;

/// The algorithm of a newly generated key pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (the default).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    pub(crate) fn generate(self) -> Result<KeyPair, PkiError> {
        let algorithm = match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        };
        KeyPair::generate_for(algorithm).map_err(PkiError::generate("key pair"))
    }
}

/// When a certificate is valid: `[issued_at - backdate, issued_at + lifetime]`, never past the
/// issuing CA's own `notAfter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validity {
    /// How long after `issued_at` the certificate stays valid.
    pub lifetime: Duration,
    /// How far before `issued_at` `notBefore` is set (clock skew allowance).
    pub backdate: Duration,
    /// The issuing instant; `None` means now. Tests set it to issue already-expired certificates.
    pub issued_at: Option<SystemTime>,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            lifetime: DEFAULT_LEAF_LIFETIME,
            backdate: DEFAULT_BACKDATE,
            issued_at: None,
        }
    }
}

impl Validity {
    /// The default backdating with the given lifetime.
    pub fn with_lifetime(lifetime: Duration) -> Validity {
        Validity {
            lifetime,
            ..Validity::default()
        }
    }

    /// `(notBefore, notAfter)` in whole seconds, `notAfter` capped at `cap`.
    pub(crate) fn window(&self, cap: SystemTime) -> Result<(SystemTime, SystemTime), PkiError> {
        let invalid = |reason: &str| PkiError::InvalidValidity {
            reason: reason.to_owned(),
        };
        if self.lifetime.is_zero() {
            return Err(invalid("lifetime must be greater than zero"));
        }
        let issued_at = self.issued_at.unwrap_or_else(SystemTime::now);
        let not_before = issued_at
            .checked_sub(self.backdate)
            .ok_or_else(|| invalid("backdate reaches before the representable time range"))?;
        let not_after = issued_at
            .checked_add(self.lifetime)
            .ok_or_else(|| invalid("lifetime reaches past the representable time range"))?
            .min(cap);
        let (not_before, not_after) = (whole_seconds(not_before)?, whole_seconds(not_after)?);
        if not_after <= not_before {
            return Err(invalid(
                "the issuing CA certificate expires before this certificate would start",
            ));
        }
        Ok((not_before, not_after))
    }
}

/// X.509 times have one-second resolution; round down so what we report is what gets encoded.
fn whole_seconds(t: SystemTime) -> Result<SystemTime, PkiError> {
    Ok(from_unix_seconds(to_offset_date_time(t)?.unix_timestamp()))
}

pub(crate) fn to_offset_date_time(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let seconds = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok(),
        Err(before) => {
            // Round towards the past, like the non-negative branch does.
            let before = before.duration();
            let seconds = before
                .as_secs()
                .saturating_add(u64::from(before.subsec_nanos() > 0));
            i64::try_from(seconds).ok().map(|s| -s)
        }
    };
    seconds
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| PkiError::InvalidValidity {
            reason: format!("{t:?} cannot be encoded in a certificate"),
        })
}

pub(crate) fn from_unix_seconds(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// RFC 5280 §4.1.2.2: positive, at most 20 octets; 128 random bits make collisions moot.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[0] &= 0x7f; // positive as a DER INTEGER
    bytes[0] |= 0x01; // no leading zero octet to strip, so the length is stable
    SerialNumber::from(bytes.to_vec())
}

fn set_window(
    params: &mut CertificateParams,
    (not_before, not_after): (SystemTime, SystemTime),
) -> Result<(), PkiError> {
    params.not_before = to_offset_date_time(not_before)?;
    params.not_after = to_offset_date_time(not_after)?;
    Ok(())
}

fn uri_san(id: &SpiffeId) -> Result<SanType, PkiError> {
    Ia5String::try_from(id.as_str())
        .map(SanType::URI)
        .map_err(|e| PkiError::Generate {
            what: "URI SAN",
            error: e,
        })
}

/// A root (`path_len = 1`) or intermediate (`path_len = 0`) CA for `trust_domain`.
/// The CA names its trust domain with a `spiffe://<trust-domain>` URI SAN (X509-SVID §4.1).
pub(crate) fn ca_params(
    trust_domain_id: &SpiffeId,
    common_name: &str,
    path_len: u8,
    window: (SystemTime, SystemTime),
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, trust_domain_id.trust_domain());
    params.distinguished_name = name;
    params.subject_alt_names = vec![uri_san(trust_domain_id)?];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = path_len == 0;
    set_window(&mut params, window)?;
    Ok(params)
}

/// An X509-SVID leaf: exactly one URI SAN (the SPIFFE ID) first, then DNS and IP SANs;
/// `cA=false`; key usage digitalSignature only; EKU serverAuth + clientAuth (X509-SVID §4.3-4.4).
pub(crate) fn leaf_params(
    id: &SpiffeId,
    dns_sans: &[String],
    ip_sans: &[IpAddr],
    window: (SystemTime, SystemTime),
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    let common_name = id
        .service_name()
        .or_else(|| id.path().rsplit('/').next().filter(|s| !s.is_empty()))
        .unwrap_or(id.trust_domain());
    if common_name.len() <= MAX_COMMON_NAME_LEN {
        name.push(DnType::CommonName, common_name);
    }
    params.distinguished_name = name;
    params.subject_alt_names = vec![uri_san(id)?];
    for dns in dns_sans {
        params.subject_alt_names.push(dns_san(dns)?);
    }
    params
        .subject_alt_names
        .extend(ip_sans.iter().copied().map(SanType::IpAddress));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    set_window(&mut params, window)?;
    Ok(params)
}

/// The subject-only parameters of a CSR: the SPIFFE ID as the single URI SAN.
pub(crate) fn csr_params(id: &SpiffeId) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![uri_san(id)?];
    Ok(params)
}

fn dns_san(name: &str) -> Result<SanType, PkiError> {
    let invalid = || PkiError::InvalidDnsName {
        name: name.to_owned(),
    };
    rustls_pki_types::DnsName::try_from(name).map_err(|_| invalid())?;
    Ia5String::try_from(name)
        .map(SanType::DnsName)
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_backdates_caps_and_rounds_to_seconds() {
        let issued_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let validity = Validity {
            lifetime: Duration::from_secs(3600),
            backdate: Duration::from_secs(60),
            issued_at: Some(issued_at),
        };
        let far = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let (nb, na) = validity.window(far).unwrap();
        assert_eq!(nb, UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 60));
        assert_eq!(na, UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 3600));

        let cap = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        assert_eq!(validity.window(cap).unwrap().1, cap);

        let before_start = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        assert!(validity.window(before_start).is_err());
        assert!(Validity::with_lifetime(Duration::ZERO).window(far).is_err());
    }

    #[test]
    fn unix_seconds_round_trip_including_before_the_epoch() {
        for seconds in [-86_400_i64, -1, 0, 1, 1_700_000_000] {
            let t = from_unix_seconds(seconds);
            assert_eq!(to_offset_date_time(t).unwrap().unix_timestamp(), seconds);
        }
    }

    #[test]
    fn dns_sans_are_validated() {
        assert!(dns_san("orders.default.svc").is_ok());
        assert!(dns_san("not a name").is_err());
        assert!(dns_san("").is_err());
    }
}
