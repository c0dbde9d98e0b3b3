//! `SpiffeServerVerifier`: webpki chain validation against the trust bundle, then the server's
//! SPIFFE ID (URI SAN) instead of its DNS name.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::ExpectedServer;
use crate::{PkiError, peer_spiffe_id};

#[derive(Debug)]
pub(super) struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: ExpectedServer,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        expected: ExpectedServer,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        SpiffeServerVerifier {
            roots,
            expected,
            algorithms,
        }
    }
}

fn rejected(error: PkiError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Chain, validity period and the serverAuth EKU: webpki, exactly as WebPkiServerVerifier.
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        // Name: the SPIFFE ID replaces the DNS name check (X509-SVID §5).
        let presented = peer_spiffe_id(std::slice::from_ref(end_entity)).map_err(rejected)?;
        self.expected.check(&presented).map_err(rejected)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
