//! TLS for tests: a throwaway CA that issues server and client certificates into a temp
//! directory, and an HTTPS client that reports what the handshake negotiated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A CA whose certificates carry the extensions real validators (and sslyze) insist on.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
    count: std::sync::atomic::AtomicUsize,
}

/// Paths of an issued certificate and key.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = cert.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca_pem,
            count: Default::default(),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from_pem_slice_owned(self.ca_pem.as_bytes())]
    }

    /// A server certificate for these DNS names.
    pub fn server(&self, names: &[&str]) -> IssuedFiles {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with this common name.
    pub fn client(&self, name: &str) -> IssuedFiles {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> IssuedFiles {
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("x"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        // Mozilla's modern profile allows at most 90 days.
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = IssuedFiles {
            cert: self.dir.path().join(format!("cert-{n}.pem")),
            key: self.dir.path().join(format!("key-{n}.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

trait FromPemOwned {
    fn from_pem_slice_owned(pem: &[u8]) -> Self;
}

impl FromPemOwned for CertificateDer<'static> {
    fn from_pem_slice_owned(pem: &[u8]) -> Self {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem).unwrap()
    }
}

/// How a test client connects.
#[derive(Clone)]
pub struct TlsClientOptions {
    pub roots: Vec<CertificateDer<'static>>,
    pub alpn: Vec<Vec<u8>>,
    pub tls12_only: bool,
    pub client_cert: Option<IssuedFiles>,
}

impl TlsClientOptions {
    pub fn trusting(ca: &TestCa) -> Self {
        Self {
            roots: ca.roots(),
            alpn: vec![b"http/1.1".to_vec()],
            tls12_only: false,
            client_cert: None,
        }
    }

    fn config(&self) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for r in &self.roots {
            roots.add(r.clone()).unwrap();
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.client_cert {
            Some(files) => {
                use rustls::pki_types::pem::PemObject;
                let chain = CertificateDer::pem_file_iter(&files.cert)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        config
    }
}

/// What one HTTPS exchange saw.
#[derive(Debug)]
pub struct HttpsResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: rustls::ProtocolVersion,
    pub alpn: Option<Vec<u8>>,
    /// The server's leaf certificate.
    pub server_cert: CertificateDer<'static>,
}

/// Connect with TLS (SNI = `server_name`) and send `GET path`; `Err` if the handshake or the
/// exchange fails.
pub async fn https_get(
    addr: SocketAddr,
    server_name: &str,
    path: &str,
    options: &TlsClientOptions,
) -> Result<HttpsResponse, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(options.config()));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let version = session.protocol_version().unwrap();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let server_cert = session.peer_certificates().unwrap()[0].clone().into_owned();
    let req = Request::get(format!("https://{server_name}{path}"))
        .header("host", server_name)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = if alpn.as_deref() == Some(b"h2") {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(HttpsResponse {
        status: parts.status,
        headers: parts.headers,
        body,
        version,
        alpn,
        server_cert,
    })
}

/// The DNS SANs of a DER certificate (to tell which certificate a server presented).
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    meshgate_pki::CertInfo::from_der(cert).unwrap().dns_sans
}

/// Write `text` to `path` atomically (rename), as deploy tools do.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A mesh CA directory (`meshgate pki init`) and leaves issued from it, for sidecar tests.
pub struct MeshCa {
    pub dir: tempfile::TempDir,
    pub trust_domain: String,
    ca: meshgate_pki::CertificateAuthority,
}

impl MeshCa {
    pub fn new(trust_domain: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = meshgate_pki::init_ca_dir(dir.path(), trust_domain, false).unwrap();
        Self {
            dir,
            trust_domain: trust_domain.to_string(),
            ca,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn bundle_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn id(&self, service: &str) -> meshgate_pki::SpiffeId {
        meshgate_pki::SpiffeId::service(&self.trust_domain, "default", service).unwrap()
    }

    /// A leaf for `service` in namespace `default`.
    pub fn leaf(&self, service: &str) -> meshgate_pki::CertifiedLeaf {
        self.ca
            .issue(&meshgate_pki::LeafRequest::new(self.id(service)))
            .unwrap()
    }

    /// A leaf that expired an hour ago.
    pub fn expired_leaf(&self, service: &str) -> meshgate_pki::CertifiedLeaf {
        let validity = meshgate_pki::Validity {
            lifetime: std::time::Duration::from_secs(600),
            backdate: std::time::Duration::from_secs(60),
            issued_at: Some(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)),
        };
        self.ca
            .issue(&meshgate_pki::LeafRequest {
                validity,
                ..meshgate_pki::LeafRequest::new(self.id(service))
            })
            .unwrap()
    }

    pub fn bundle(&self) -> meshgate_pki::TrustBundle {
        self.ca.trust_bundle()
    }
}

/// Call a mesh inbound listener as a sidecar would: present `leaf` (if any), require the
/// server to be `expected`. Returns the status and body, or the handshake/exchange error.
pub async fn mesh_get(
    addr: SocketAddr,
    leaf: Option<meshgate_pki::CertifiedLeaf>,
    bundle: &meshgate_pki::TrustBundle,
    expected: meshgate_pki::SpiffeId,
    path: &str,
) -> Result<(StatusCode, Bytes), String> {
    let options = meshgate_pki::TlsOptions {
        alpn: vec![b"http/1.1".to_vec()],
        allow_tls12: false,
    };
    let expected = meshgate_pki::ExpectedServer::Id(expected);
    let config = match leaf {
        Some(leaf) => meshgate_pki::client_config(
            Arc::new(meshgate_pki::SwappableCert::new(leaf)),
            bundle,
            expected,
            &options,
        ),
        None => meshgate_pki::anonymous_client_config(bundle, expected, &options),
    }
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("mesh.local").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "mesh.local")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

impl TestCa {
    /// A server certificate for these names (DNS names or IP addresses) that expired
    /// yesterday.
    pub fn expired_server(&self, names: &[&str]) -> IssuedFiles {
        let files = self.server(names);
        let key = KeyPair::from_pem(&std::fs::read_to_string(&files.key).unwrap()).unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("x"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        files
    }
}

/// A rustls server config presenting `files` (HTTP/1.1 and h2 by ALPN); when `client_ca` is
/// given, a client certificate from it is required.
pub fn server_config(files: &IssuedFiles, client_ca: Option<&TestCa>) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for r in ca.roots() {
                roots.add(r).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}
