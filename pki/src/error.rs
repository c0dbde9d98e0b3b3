//! `PkiError`: the one error type of this crate; every message names what was wrong and where.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the mesh PKI.
///
/// Messages carry their cause inline (no `source()` chain) so that printing the error once
/// tells the whole story: `ca/ca.pem: no CERTIFICATE block in PEM`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A SPIFFE ID (or trust domain) breaks the SPIFFE ID spec.
    #[error("invalid SPIFFE ID {id:?}: {reason}")]
    InvalidSpiffeId {
        /// The rejected input.
        id: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A requested DNS SAN is not a valid DNS name.
    #[error("invalid DNS SAN {name:?}: not a valid DNS name")]
    InvalidDnsName {
        /// The rejected name.
        name: String,
    },

    /// A validity period or lifetime cannot be encoded.
    #[error("invalid validity: {reason}")]
    InvalidValidity {
        /// What is wrong with it.
        reason: String,
    },

    /// PEM text could not be decoded, or holds the wrong kind of block.
    #[error("{what}: {reason}")]
    Pem {
        /// What was being read (`certificate chain`, `private key`, ...).
        what: &'static str,
        /// What was wrong.
        reason: String,
    },

    /// A DER certificate could not be parsed or lacks what meshgate needs.
    #[error("{what}: {reason}")]
    Certificate {
        /// Which certificate (`leaf certificate`, `root CA certificate`, ...).
        what: &'static str,
        /// What was wrong.
        reason: String,
    },

    /// A private key is unusable or does not belong to its certificate.
    #[error("{what}: {reason}")]
    Key {
        /// Which key (`leaf private key`, `intermediate CA key`, ...).
        what: &'static str,
        /// What was wrong.
        reason: String,
    },

    /// The CA material does not form a usable CA.
    #[error("invalid CA: {reason}")]
    InvalidCa {
        /// What was wrong.
        reason: String,
    },

    /// rcgen refused to build a certificate, key or CSR.
    #[error("cannot generate {what}: {error}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's reason.
        error: rcgen::Error,
    },

    /// A CA was asked to issue an identity of another trust domain.
    #[error("the CA for trust domain {trust_domain} cannot issue {id}")]
    ForeignTrustDomain {
        /// The CA's trust domain.
        trust_domain: String,
        /// The requested identity.
        id: String,
    },

    /// The CA refused to sign a CSR.
    #[error("CSR rejected: {reason}")]
    CsrRejected {
        /// Why.
        reason: String,
    },

    /// The peer certificate chain was empty.
    #[error("peer presented no certificate")]
    NoPeerCertificate,

    /// The certificate carries no `spiffe://` URI SAN.
    #[error("certificate has no SPIFFE ID (no spiffe:// URI SAN)")]
    NoSpiffeId,

    /// The certificate carries more than one URI SAN (X509-SVID §2: exactly one).
    #[error("certificate has {count} URI SANs; an X509-SVID has exactly one")]
    AmbiguousSpiffeId {
        /// How many URI SANs were found.
        count: usize,
    },

    /// The peer is authenticated but is not who we expected.
    #[error("peer SPIFFE ID {actual} does not match the expected {expected}")]
    UnexpectedPeer {
        /// What the caller expected.
        expected: String,
        /// What the peer presented.
        actual: String,
    },

    /// rustls rejected a configuration or key.
    #[error("TLS: {0}")]
    Tls(rustls::Error),

    /// The client certificate verifier could not be built (e.g. an empty trust bundle).
    #[error("TLS client certificate verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),

    /// A filesystem operation failed.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        /// What we tried (`read`, `write`, `rename`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },

    /// A file was read but its contents were wrong; wraps the content error with the path.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with its contents.
        error: Box<PkiError>,
    },

    /// Refused to overwrite existing CA material.
    #[error("{} already exists; refusing to overwrite an existing CA", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
}

impl From<rustls::Error> for PkiError {
    fn from(error: rustls::Error) -> Self {
        PkiError::Tls(error)
    }
}

impl From<rustls::server::VerifierBuilderError> for PkiError {
    fn from(error: rustls::server::VerifierBuilderError) -> Self {
        PkiError::Verifier(error)
    }
}

impl PkiError {
    /// Attach the file a content error came from.
    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> PkiError {
        PkiError::InFile {
            path: path.into(),
            error: Box::new(self),
        }
    }

    pub(crate) fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
        move |error| PkiError::Generate { what, error }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> PkiError {
        let path = path.into();
        move |error| PkiError::Io { op, path, error }
    }
}
