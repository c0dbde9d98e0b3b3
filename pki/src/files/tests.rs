//! Files on disk: modes, atomic rewrites, round trips, and errors that name the file.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::test_support::test_ca;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn init_ca_dir_writes_files_with_key_mode_0600_and_refuses_to_overwrite() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let ca = init_ca_dir(&dir, "files.test", true).unwrap();

    assert_eq!(
        entries(&dir),
        [
            "ca-key.pem",
            "ca.pem",
            "intermediate-key.pem",
            "intermediate.pem"
        ]
    );
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir.join("intermediate-key.pem")), 0o600);
    // Certificates and directories: at most 0644 / 0700 (the umask may only narrow them).
    assert_eq!(mode(&dir.join("ca.pem")) & !0o644, 0);
    assert_eq!(mode(&dir) & 0o077, 0);

    let loaded = CaFiles::new(&dir).load().unwrap();
    assert_eq!(loaded.to_pem(), ca.to_pem());

    let err = init_ca_dir(&dir, "files.test", false).unwrap_err();
    assert!(matches!(err, PkiError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        CaFiles::new(&dir).load().unwrap().root_cert(),
        ca.root_cert(),
        "untouched"
    );
}

#[test]
fn issue_leaf_to_dir_round_trips_and_rewrites_atomically() {
    let temp = tempfile::tempdir().unwrap();
    let ca_dir = temp.path().join("ca");
    let out = temp.path().join("orders");
    let ca = init_ca_dir(&ca_dir, "files.test", false).unwrap();
    let dns = vec!["orders.shop.svc".to_owned()];

    let first = issue_leaf_to_dir(
        &ca_dir,
        &out,
        "orders",
        "shop",
        &dns,
        Duration::from_secs(3600),
    )
    .unwrap();
    assert_eq!(
        first.spiffe_id().as_str(),
        "spiffe://files.test/ns/shop/svc/orders"
    );
    assert_eq!(first.info().dns_sans, dns);
    assert_eq!(entries(&out), ["ca.pem", "cert.pem", "key.pem"]);
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    assert_eq!(mode(&out.join("cert.pem")) & !0o644, 0);

    let (loaded, bundle) = LeafFiles::new(&out).load().unwrap();
    assert_eq!(loaded.chain(), first.chain());
    assert_eq!(loaded.key_pem(), first.key_pem());
    assert_eq!(bundle, ca.trust_bundle());

    // Renewal overwrites in place: no temp files left, the new leaf is what a reader gets.
    let second = issue_leaf_to_dir(
        &ca_dir,
        &out,
        "orders",
        "shop",
        &[],
        Duration::from_secs(3600),
    )
    .unwrap();
    assert_eq!(entries(&out), ["ca.pem", "cert.pem", "key.pem"]);
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    let (reloaded, _) = LeafFiles::new(&out).load().unwrap();
    assert_eq!(reloaded.info().serial, second.info().serial);
}

#[test]
fn errors_name_the_file() {
    let temp = tempfile::tempdir().unwrap();
    let ca_dir = temp.path().join("ca");
    let out = temp.path().join("leaf");
    init_ca_dir(&ca_dir, "files.test", false).unwrap();
    issue_leaf_to_dir(&ca_dir, &out, "a", "b", &[], Duration::from_secs(60)).unwrap();

    fs::write(out.join("key.pem"), "garbage").unwrap();
    let err = LeafFiles::new(&out).load().unwrap_err().to_string();
    assert!(
        err.contains("key.pem") && err.contains("PRIVATE KEY"),
        "{err}"
    );

    let other = test_ca("files.test", false);
    let stranger = other
        .issue(&crate::test_support::test_leaf_request(
            "files.test",
            "b",
            "a",
        ))
        .unwrap();
    fs::write(out.join("key.pem"), stranger.key_pem()).unwrap();
    let err = LeafFiles::new(&out).load().unwrap_err().to_string();
    assert!(
        err.contains("key.pem: leaf private key: does not match"),
        "{err}"
    );

    fs::write(
        ca_dir.join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = CaFiles::new(&ca_dir).load().unwrap_err().to_string();
    assert!(
        err.contains("ca.pem: root CA certificate: malformed PEM"),
        "{err}"
    );

    let err = CaFiles::new(temp.path().join("missing"))
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read") && err.contains("ca.pem"),
        "{err}"
    );
}

#[test]
fn writing_a_root_only_ca_removes_a_stale_intermediate() {
    let temp = tempfile::tempdir().unwrap();
    let files = CaFiles::new(temp.path());
    files.write(&test_ca("files.test", true).to_pem()).unwrap();
    let root_only = test_ca("files.test", false);
    files.write(&root_only.to_pem()).unwrap();
    assert_eq!(entries(temp.path()), ["ca-key.pem", "ca.pem"]);
    assert_eq!(files.load().unwrap().root_cert(), root_only.root_cert());
}
