//! Loading the sweep spec for a command: the TOML file, `LUCID__…` environment variables and `--set`
//! overrides, in that order of strength (see [`lucid_proto::spec`]).
//!
//! Overrides come from the command line, where they end up in shell history and process listings, so
//! [`parse_overrides`] refuses anything that looks like a credential: keys naming a password, secret,
//! token or access key, and values holding a URI with a password. The error names the key, never the
//! value.

use std::path::Path;

use lucid_proto::SweepSpec;
use lucid_proto::spec::{DEFAULT_ENV_PREFIX, parse_override};

use crate::error::{Error, Result};

/// Words that mark an override key as a credential.
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "access_key", "session_key"];

/// Splits `key=value` overrides and refuses credentials; the error names the offending key only.
pub fn parse_overrides(sets: &[String]) -> Result<Vec<(String, String)>> {
    sets.iter()
        .enumerate()
        .map(|(i, arg)| {
            // the malformed argument is not echoed: it may be a pasted secret
            let (key, value) = parse_override(arg).map_err(|_| Error::Override {
                key: format!("(argument {})", i + 1),
                reason: "expected key=value".into(),
            })?;
            let lower = key.to_ascii_lowercase();
            if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                return Err(Error::Override {
                    key,
                    reason:
                        "credentials are not accepted on the command line; use env LUCID_AMQP_URI, \
                             queue.uri_file, storage.credentials_file or LUCID_S3_ACCESS_KEY_ID / \
                             LUCID_S3_SECRET_ACCESS_KEY"
                            .into(),
                });
            }
            if has_password(&value) {
                return Err(Error::Override {
                    key,
                    reason: "the value holds a URI with a password; put the full URI in env \
                             LUCID_AMQP_URI or in the file named by queue.uri_file"
                        .into(),
                });
            }
            Ok((key, value))
        })
        .collect()
}

/// Whether `value` looks like `scheme://user:password@host…`.
fn has_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
}

/// Loads and validates the spec in `file` with environment `LUCID__…` and `sets` (`key=value`) on top.
///
/// Errors name the file and the offending field (`render.steps: must be between 1 and 100000, got 0`).
pub fn load(file: &Path, sets: &[String]) -> Result<SweepSpec> {
    let overrides = parse_overrides(sets)?;
    SweepSpec::load(Some(file), DEFAULT_ENV_PREFIX, &overrides).map_err(|source| Error::Spec {
        path: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_overrides_pass() {
        let parsed = parse_overrides(&sets(&["render.steps=64", "queue.uri=amqp://lucid@h/%2f"]))
            .expect("plain overrides");
        assert_eq!(parsed[0], ("render.steps".into(), "64".into()));
        assert_eq!(parsed[1].1, "amqp://lucid@h/%2f");
    }

    #[test]
    fn credentials_are_refused_without_echoing_them() {
        for arg in [
            "queue.uri=amqp://guest:hunter2@h/%2f",
            "storage.secret_access_key=hunter2",
            "queue.password=hunter2",
            "storage.endpoint=http://ak:hunter2@h:8333",
        ] {
            let err = parse_overrides(&sets(&[arg])).expect_err(arg).to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.starts_with("--set "), "{err}");
        }
        assert!(parse_overrides(&sets(&["novalue"])).is_err());
    }
}
