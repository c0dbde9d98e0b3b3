//! `meshgate hash-key`: turn an API key (`<id>.<secret>`) or a Basic password into the Argon2id
//! PHC string the config stores, or generate a new random API key with its hash.

use std::io::BufRead;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use meshgate_config::auth::validate::api_key_id_ok;
use ring::rand::{SecureRandom, SystemRandom};

use crate::filters::auth::secrets::hash_secret;

/// API key secrets shorter than this are refused (a generated one has 43 characters).
pub const MIN_SECRET_LEN: usize = 16;
/// Random bytes in a generated key's secret (256 bits).
const GENERATED_SECRET_BYTES: usize = 32;

/// What to hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKeyInput {
    /// An API key given as an argument or on stdin (`None`: read stdin).
    ApiKey(Option<String>),
    /// A Basic password, argument or stdin.
    Password(Option<String>),
    /// A new key with this id.
    Generate(String),
}

/// Why nothing could be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read stdin: {0}")]
    Stdin(#[from] std::io::Error),
    #[error("{0}")]
    Hash(String),
}

/// The lines to print: the PHC string, or for `Generate` the key and then its PHC string.
pub fn run(input: HashKeyInput, stdin: &mut dyn BufRead) -> Result<Vec<String>, HashKeyError> {
    match input {
        HashKeyInput::ApiKey(given) => {
            let key = given.map_or_else(|| read_line(stdin), Ok)?;
            check_api_key(&key)?;
            Ok(vec![hash(&key)?])
        }
        HashKeyInput::Password(given) => {
            let password = given.map_or_else(|| read_line(stdin), Ok)?;
            if password.is_empty() {
                return Err(HashKeyError::Invalid("the password is empty".into()));
            }
            Ok(vec![hash(&password)?])
        }
        HashKeyInput::Generate(id) => {
            let mut secret = [0u8; GENERATED_SECRET_BYTES];
            SystemRandom::new().fill(&mut secret).map_err(|_| {
                HashKeyError::Hash("the system random number generator failed".into())
            })?;
            let key = format!("{id}.{}", URL_SAFE_NO_PAD.encode(secret));
            check_api_key(&key)?;
            let phc = hash(&key)?;
            Ok(vec![key, phc])
        }
    }
}

fn read_line(stdin: &mut dyn BufRead) -> Result<String, HashKeyError> {
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn hash(secret: &str) -> Result<String, HashKeyError> {
    hash_secret(secret.as_bytes()).map_err(|e| HashKeyError::Hash(e.to_string()))
}

/// `<id>.<secret>`: the id finds the stored hash without any Argon2 work.
fn check_api_key(key: &str) -> Result<(), HashKeyError> {
    let Some((id, secret)) = key.split_once('.') else {
        return Err(HashKeyError::Invalid(
            "an API key is <id>.<secret> (e.g. billing.Xk3…); try --generate ID".into(),
        ));
    };
    if !api_key_id_ok(id) {
        return Err(HashKeyError::Invalid(format!(
            "key id {id:?} must be 1-64 letters, digits, '-' or '_'"
        )));
    }
    if secret.chars().count() < MIN_SECRET_LEN {
        return Err(HashKeyError::Invalid(format!(
            "the secret after '{id}.' has fewer than {MIN_SECRET_LEN} characters; try --generate {id}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::auth::secrets::verify_phc;

    #[test]
    fn hashes_a_key_from_stdin_and_verifies() {
        let mut stdin = &b"billing.0123456789abcdefXYZ\n"[..];
        let lines = run(HashKeyInput::ApiKey(None), &mut stdin).unwrap();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            lines[0]
        );
        assert!(verify_phc(b"billing.0123456789abcdefXYZ", &lines[0]));
        assert!(!verify_phc(b"billing.0123456789abcdefXYz", &lines[0]));
    }

    #[test]
    fn refuses_keys_without_an_id_or_with_a_short_secret() {
        let mut none = &b""[..];
        for bad in [
            "nodot",
            ".secretsecretsecret",
            "bad id.0123456789abcdef",
            "ok.short",
        ] {
            assert!(
                run(HashKeyInput::ApiKey(Some(bad.into())), &mut none).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn generates_a_key_that_matches_its_hash() {
        let mut none = &b""[..];
        let lines = run(HashKeyInput::Generate("ci".into()), &mut none).unwrap();
        assert!(
            lines[0].starts_with("ci.") && lines[0].len() == 3 + 43,
            "{}",
            lines[0]
        );
        assert!(verify_phc(lines[0].as_bytes(), &lines[1]));
    }
}
