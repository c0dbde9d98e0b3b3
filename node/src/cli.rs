//! Subcommands of the `meshgate` binary that are more than a few lines (the PKI tools); the
//! argument parsing of the whole CLI lives in `main.rs`.

pub mod hash_key;
pub mod pki;
