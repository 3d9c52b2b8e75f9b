//! Static S3 credentials, from the environment or a file; never from command-line arguments, where
//! they would show in `ps` and shell history.

use std::fmt;
use std::path::Path;

use crate::error::StorageError;

/// The project's own access-key variable; wins over the AWS one.
pub const ACCESS_KEY_ENV: &str = "LUCID_S3_ACCESS_KEY_ID";
/// The project's own secret-key variable; wins over the AWS one.
pub const SECRET_KEY_ENV: &str = "LUCID_S3_SECRET_ACCESS_KEY";
/// The standard AWS access-key variable.
pub const AWS_ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
/// The standard AWS secret-key variable.
pub const AWS_SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// An S3 access key and its secret. `Debug` prints the secret as `***`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (not secret; it shows in logs of the store).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

impl Credentials {
    /// Resolves credentials, first match wins: env `LUCID_S3_ACCESS_KEY_ID` / `LUCID_S3_SECRET_ACCESS_KEY`,
    /// then env `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, then `file`.
    ///
    /// The file holds `access_key_id=...` and `secret_access_key=...` lines, or is an AWS credentials
    /// file (`aws_access_key_id` / `aws_secret_access_key`, read from its `[default]` profile or from
    /// lines before any profile header). Blank lines and `#` / `;` comments are ignored.
    ///
    /// A pair of variables with only one of them set is an error rather than a fall-through, so a typo
    /// does not silently pick up other keys. With nothing found, the
    /// [`StorageError::Credentials`] message lists every place that was looked at.
    pub fn resolve(file: Option<&Path>) -> Result<Self, StorageError> {
        Self::resolve_with(|name| std::env::var(name).ok(), file)
    }

    /// [`Credentials::resolve`] with `env` standing in for the process environment.
    pub(crate) fn resolve_with(
        env: impl Fn(&str) -> Option<String>,
        file: Option<&Path>,
    ) -> Result<Self, StorageError> {
        for (id_var, secret_var) in [
            (ACCESS_KEY_ENV, SECRET_KEY_ENV),
            (AWS_ACCESS_KEY_ENV, AWS_SECRET_KEY_ENV),
        ] {
            let id = env(id_var).filter(|v| !v.trim().is_empty());
            let secret = env(secret_var).filter(|v| !v.trim().is_empty());
            match (id, secret) {
                (Some(id), Some(secret)) => return Ok(Self::new(id, secret)),
                (Some(_), None) => {
                    return Err(StorageError::Credentials(format!(
                        "{id_var} is set but {secret_var} is not"
                    )));
                }
                (None, Some(_)) => {
                    return Err(StorageError::Credentials(format!(
                        "{secret_var} is set but {id_var} is not"
                    )));
                }
                (None, None) => {}
            }
        }
        let looked = format!(
            "env {ACCESS_KEY_ENV}/{SECRET_KEY_ENV} and {AWS_ACCESS_KEY_ENV}/{AWS_SECRET_KEY_ENV}"
        );
        let Some(path) = file else {
            return Err(StorageError::Credentials(format!(
                "none found: looked in {looked}, and no storage.credentials_file is set"
            )));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| StorageError::io("read credentials file", path, e))?;
        let (id, secret) = parse_credentials_file(&text);
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(Self::new(id, secret)),
            (id, _) => {
                let missing = if id.is_none() {
                    "access_key_id (or aws_access_key_id)"
                } else {
                    "secret_access_key (or aws_secret_access_key)"
                };
                Err(StorageError::Credentials(format!(
                    "none found: looked in {looked}, and credentials file {} has no {missing}",
                    path.display()
                )))
            }
        }
    }

    fn new(id: String, secret: String) -> Self {
        Self {
            access_key_id: id.trim().to_owned(),
            secret_access_key: secret.trim().to_owned(),
        }
    }
}

/// The access key id and secret of a credentials file, each `None` when absent or empty.
fn parse_credentials_file(text: &str) -> (Option<String>, Option<String>) {
    let mut id = None;
    let mut secret = None;
    // lines before any `[profile]` header count as the default profile
    let mut in_default = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = header.trim() == "default";
            continue;
        }
        if !in_default {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "access_key_id" | "aws_access_key_id" => id = Some(value.to_owned()),
            "secret_access_key" | "aws_secret_access_key" => secret = Some(value.to_owned()),
            _ => {}
        }
    }
    (id, secret)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials::new("AKID".into(), "s3cr3t-value".into());
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }

    #[test]
    fn lucid_env_wins_over_aws_env() {
        let c = Credentials::resolve_with(
            env(&[
                (ACCESS_KEY_ENV, "lucid"),
                (SECRET_KEY_ENV, "lucid-secret"),
                (AWS_ACCESS_KEY_ENV, "aws"),
                (AWS_SECRET_KEY_ENV, "aws-secret"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "lucid");
        let c = Credentials::resolve_with(
            env(&[
                (AWS_ACCESS_KEY_ENV, "aws"),
                (AWS_SECRET_KEY_ENV, "aws-secret"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.secret_access_key, "aws-secret");
    }

    #[test]
    fn half_a_pair_is_an_error() {
        let err = Credentials::resolve_with(env(&[(ACCESS_KEY_ENV, "lucid")]), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s3 credentials: LUCID_S3_ACCESS_KEY_ID is set but LUCID_S3_SECRET_ACCESS_KEY is not"
        );
    }

    #[test]
    fn nothing_found_says_where_it_looked() {
        let msg = Credentials::resolve_with(env(&[]), None)
            .unwrap_err()
            .to_string();
        for place in [
            ACCESS_KEY_ENV,
            AWS_SECRET_KEY_ENV,
            "storage.credentials_file",
        ] {
            assert!(msg.contains(place), "{msg}");
        }
    }

    #[test]
    fn file_formats() {
        let plain = "# lucid\naccess_key_id = ak1\nsecret_access_key=\"sk1\"\n";
        assert_eq!(
            parse_credentials_file(plain),
            (Some("ak1".into()), Some("sk1".into()))
        );
        let aws = "[other]\naws_access_key_id=no\naws_secret_access_key=no\n\n[default]\naws_access_key_id = ak2\naws_secret_access_key = sk2\nregion = x\n";
        assert_eq!(
            parse_credentials_file(aws),
            (Some("ak2".into()), Some("sk2".into()))
        );
        assert_eq!(
            parse_credentials_file("[prod]\naws_access_key_id=x\n"),
            (None, None)
        );
    }
}
