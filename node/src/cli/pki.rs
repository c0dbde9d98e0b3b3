//! `meshgate pki init | issue | inspect`: create a mesh CA, issue a SPIFFE leaf from it, and
//! show what a certificate file says.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use meshgate_config::duration::HumanDuration;
use meshgate_pki::{CaFiles, LeafFiles, init_ca_dir, inspect_chain, issue_leaf_to_dir};

#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Create a new mesh CA (root, optionally an intermediate) in a directory.
    Init {
        /// Directory to write ca.pem and ca-key.pem (and intermediate*.pem) into.
        #[arg(long)]
        dir: PathBuf,
        /// The SPIFFE trust domain, e.g. mesh.example.com.
        #[arg(long, default_value = "meshgate.local")]
        trust_domain: String,
        /// Also create an intermediate CA and sign leaves with it (the root can go offline).
        #[arg(long)]
        intermediate: bool,
    },
    /// Issue a leaf certificate and key for a service, signed by a CA directory.
    Issue {
        /// The service name; the SPIFFE id is spiffe://<trust-domain>/ns/<namespace>/svc/<service>.
        #[arg(long)]
        service: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// The CA directory made by `meshgate pki init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Where to write cert.pem (chain), key.pem (0600) and ca.pem (trust bundle).
        #[arg(long)]
        out: PathBuf,
        /// DNS names to add as SANs (repeat the flag).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// Certificate lifetime.
        #[arg(long, default_value = "24h")]
        lifetime: HumanDuration,
    },
    /// Show subject, SANs, SPIFFE id and expiry of every certificate in a PEM file.
    Inspect {
        /// A PEM file (a certificate or a chain).
        file: PathBuf,
    },
}

/// Run one PKI command; `Ok` is what to print.
pub fn run(command: PkiCommand) -> Result<String, String> {
    match command {
        PkiCommand::Init {
            dir,
            trust_domain,
            intermediate,
        } => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let ca = init_ca_dir(&dir, &trust_domain, intermediate).map_err(|e| e.to_string())?;
            Ok(format!(
                "created CA for trust domain {} in {} ({}, {}{})",
                ca.trust_domain(),
                dir.display(),
                CaFiles::ROOT_CERT,
                CaFiles::ROOT_KEY,
                if intermediate {
                    ", intermediate.pem, intermediate-key.pem"
                } else {
                    ""
                }
            ))
        }
        PkiCommand::Issue {
            service,
            namespace,
            ca_dir,
            out,
            dns,
            lifetime,
        } => {
            std::fs::create_dir_all(&out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            let leaf = issue_leaf_to_dir(&ca_dir, &out, &service, &namespace, &dns, lifetime.get())
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "issued {} valid until {} into {} ({}, {}, {})",
                leaf.spiffe_id(),
                humantime::format_rfc3339_seconds(leaf.not_after()),
                out.display(),
                LeafFiles::CERT,
                LeafFiles::KEY,
                LeafFiles::BUNDLE
            ))
        }
        PkiCommand::Inspect { file } => {
            let pem = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let chain = inspect_chain(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
            let now = SystemTime::now();
            let shown: Vec<String> = chain
                .iter()
                .map(|info| {
                    let expiry = match info.not_after.duration_since(now) {
                        Ok(left) => format!(
                            "expires in:  {}",
                            humantime::format_duration(Duration::from_secs(left.as_secs()))
                        ),
                        Err(_) => "expires in:  EXPIRED".to_string(),
                    };
                    format!("{info}\n{expiry}")
                })
                .collect();
            Ok(shown.join("\n\n"))
        }
    }
}
