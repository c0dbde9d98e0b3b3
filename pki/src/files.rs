//! PEM files on disk: the CA directory and leaf directories, written atomically (temp file in
//! the same directory + rename) with private keys created 0600; plus the CLI's one-call helpers.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pem_text::{certs_from_pem, key_from_pem};
use crate::{
    CaOptions, CaPem, CertificateAuthority, CertifiedLeaf, LeafRequest, PkiError, SpiffeId,
    TrustBundle, Validity,
};

/// Mode of files holding private keys.
const KEY_MODE: u32 = 0o600;
/// Mode of files holding certificates.
const CERT_MODE: u32 = 0o644;
/// Mode of directories this crate creates (they hold keys).
const DIR_MODE: u32 = 0o700;

/// The files of a CA directory.
///
/// | file | holds |
/// | --- | --- |
/// | `ca.pem` | the root certificate: the trust bundle |
/// | `ca-key.pem` | the root key (may be removed when an intermediate issues: offline root) |
/// | `intermediate.pem` | the intermediate certificate, if any |
/// | `intermediate-key.pem` | the intermediate key, if any |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFiles {
    dir: PathBuf,
}

impl CaFiles {
    /// Root certificate file name.
    pub const ROOT_CERT: &'static str = "ca.pem";
    /// Root key file name.
    pub const ROOT_KEY: &'static str = "ca-key.pem";
    /// Intermediate certificate file name.
    pub const INTERMEDIATE_CERT: &'static str = "intermediate.pem";
    /// Intermediate key file name.
    pub const INTERMEDIATE_KEY: &'static str = "intermediate-key.pem";

    /// The CA files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> CaFiles {
        CaFiles { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write the CA (creating the directory 0700 if missing). Absent optional parts are removed
    /// so a stale key from an earlier CA never lingers.
    pub fn write(&self, pem: &CaPem) -> Result<(), PkiError> {
        create_dir(&self.dir)?;
        self.write_optional(Self::ROOT_KEY, pem.root_key.as_deref(), KEY_MODE)?;
        self.write_optional(
            Self::INTERMEDIATE_KEY,
            pem.intermediate_key.as_deref(),
            KEY_MODE,
        )?;
        self.write_optional(
            Self::INTERMEDIATE_CERT,
            pem.intermediate_cert.as_deref(),
            CERT_MODE,
        )?;
        write_atomic(&self.dir.join(Self::ROOT_CERT), &pem.root_cert, CERT_MODE)
    }

    fn write_optional(&self, name: &str, text: Option<&str>, mode: u32) -> Result<(), PkiError> {
        let path = self.dir.join(name);
        match text {
            Some(text) => write_atomic(&path, text, mode),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(PkiError::io("remove", path)(e))
                }
                _ => Ok(()),
            },
        }
    }

    /// Read the PEM texts, checking each file's PEM on the way so errors name the file.
    pub fn read(&self) -> Result<CaPem, PkiError> {
        let cert =
            |name: &str, what| self.read_checked(name, |text| certs_from_pem(text, what).map(drop));
        let key =
            |name: &str, what| self.read_checked(name, |text| key_from_pem(text, what).map(drop));
        let root_cert = cert(Self::ROOT_CERT, "root CA certificate")?.ok_or_else(|| {
            PkiError::io("read", self.dir.join(Self::ROOT_CERT))(io::ErrorKind::NotFound.into())
        })?;
        Ok(CaPem {
            root_cert,
            root_key: key(Self::ROOT_KEY, "root CA key")?,
            intermediate_cert: cert(Self::INTERMEDIATE_CERT, "intermediate CA certificate")?,
            intermediate_key: key(Self::INTERMEDIATE_KEY, "intermediate CA key")?,
        })
    }

    fn read_checked(
        &self,
        name: &str,
        check: impl FnOnce(&str) -> Result<(), PkiError>,
    ) -> Result<Option<String>, PkiError> {
        let path = self.dir.join(name);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        check(&text).map_err(|e| e.in_file(&path))?;
        Ok(Some(text))
    }

    /// Read and load the CA.
    pub fn load(&self) -> Result<CertificateAuthority, PkiError> {
        CertificateAuthority::from_pem(&self.read()?).map_err(|e| e.in_file(&self.dir))
    }
}

/// The files of a leaf directory: `cert.pem` (chain, leaf first), `key.pem` (0600) and
/// `ca.pem` (the trust bundle).
///
/// Each file is replaced atomically, but not the three together: a reader racing a writer can
/// see a new `cert.pem` with the old `key.pem`. [`LeafFiles::load`] then fails with a key
/// mismatch and should simply be retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafFiles {
    dir: PathBuf,
}

impl LeafFiles {
    /// Certificate chain file name.
    pub const CERT: &'static str = "cert.pem";
    /// Private key file name.
    pub const KEY: &'static str = "key.pem";
    /// Trust bundle file name.
    pub const BUNDLE: &'static str = "ca.pem";

    /// The leaf files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> LeafFiles {
        LeafFiles { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write bundle, key, then chain (creating the directory 0700 if missing).
    pub fn write(&self, leaf: &CertifiedLeaf, bundle: &TrustBundle) -> Result<(), PkiError> {
        create_dir(&self.dir)?;
        write_atomic(&self.dir.join(Self::BUNDLE), &bundle.to_pem(), CERT_MODE)?;
        write_atomic(&self.dir.join(Self::KEY), &leaf.key_pem(), KEY_MODE)?;
        write_atomic(&self.dir.join(Self::CERT), &leaf.chain_pem(), CERT_MODE)
    }

    /// Read the leaf and the trust bundle.
    pub fn load(&self) -> Result<(CertifiedLeaf, TrustBundle), PkiError> {
        let read = |name: &str| {
            let path = self.dir.join(name);
            read_optional(&path)?
                .ok_or_else(|| PkiError::io("read", &path)(io::ErrorKind::NotFound.into()))
                .map(|text| (text, path))
        };
        let (cert_text, cert_path) = read(Self::CERT)?;
        let (key_text, key_path) = read(Self::KEY)?;
        let (bundle_text, bundle_path) = read(Self::BUNDLE)?;
        let chain =
            certs_from_pem(&cert_text, "certificate chain").map_err(|e| e.in_file(&cert_path))?;
        let key = key_from_pem(&key_text, "leaf private key").map_err(|e| e.in_file(&key_path))?;
        let leaf = CertifiedLeaf::from_parts(chain, key).map_err(|e| match e {
            PkiError::Key { .. } => e.in_file(&key_path),
            other => other.in_file(&cert_path),
        })?;
        let bundle = TrustBundle::from_pem(&bundle_text).map_err(|e| e.in_file(&bundle_path))?;
        Ok((leaf, bundle))
    }
}

/// `meshgate pki init-ca`: create a CA for `trust_domain` in `dir`. Refuses to overwrite an
/// existing `ca.pem`.
pub fn init_ca_dir(
    dir: &Path,
    trust_domain: &str,
    with_intermediate: bool,
) -> Result<CertificateAuthority, PkiError> {
    let files = CaFiles::new(dir);
    let root_cert = dir.join(CaFiles::ROOT_CERT);
    if root_cert
        .try_exists()
        .map_err(PkiError::io("check", &root_cert))?
    {
        return Err(PkiError::AlreadyExists { path: root_cert });
    }
    let options = CaOptions {
        with_intermediate,
        ..CaOptions::default()
    };
    let ca = CertificateAuthority::new(trust_domain, &options)?;
    files.write(&ca.to_pem())?;
    Ok(ca)
}

/// `meshgate pki issue`: issue `spiffe://<ca trust domain>/ns/<namespace>/svc/<service>` with
/// the CA in `ca_dir` and write `cert.pem`, `key.pem`, `ca.pem` to `out_dir`.
pub fn issue_leaf_to_dir(
    ca_dir: &Path,
    out_dir: &Path,
    service: &str,
    namespace: &str,
    dns_sans: &[String],
    lifetime: Duration,
) -> Result<CertifiedLeaf, PkiError> {
    let ca = CaFiles::new(ca_dir).load()?;
    let request = LeafRequest {
        dns_sans: dns_sans.to_vec(),
        validity: Validity::with_lifetime(lifetime),
        ..LeafRequest::new(SpiffeId::service(ca.trust_domain(), namespace, service)?)
    };
    let leaf = ca.issue(&request)?;
    LeafFiles::new(out_dir).write(&leaf, &ca.trust_bundle())?;
    Ok(leaf)
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder
        .create(dir)
        .map_err(PkiError::io("create directory", dir))
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io("read", path)(e)),
    }
}

/// Write `contents` to a fresh temp file in the same directory (created with `mode`, so a key is
/// never readable by others, not even briefly), fsync it, rename it over `path`, fsync the
/// directory. Readers see the old file or the new one, never a part.
fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pem");
    let temp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = write_new_file(&temp, contents, mode)
        .and_then(|()| fs::rename(&temp, path).map_err(PkiError::io("rename into place", path)));
    if result.is_err() {
        let _ = fs::remove_file(&temp); // best effort: the error that matters is `result`'s
        return result;
    }
    sync_dir(dir)
}

fn write_new_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(PkiError::io("create", path))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(PkiError::io("write", path))
}

/// Make the rename durable (POSIX: the directory entry lives in the directory).
fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PkiError::io("sync directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
