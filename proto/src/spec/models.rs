//! Where a seed's checkpoint lives ([`ModelLocation`]) and the S3 bucket-name rule.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::text_forms::serde_as_text;

/// Where a seed's checkpoint lives: a local directory or an S3 prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelLocation {
    /// A local path (file or directory).
    Local(PathBuf),
    /// `s3://bucket/prefix`; `prefix` has no leading or trailing `/` and may be empty.
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix inside the bucket.
        prefix: String,
    },
}

impl ModelLocation {
    /// Parses `s3://bucket/prefix` or a non-empty local path.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let location = ModelLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            };
            location.validate()?;
            Ok(location)
        } else if s.trim().is_empty() {
            Err("model location must not be empty".into())
        } else if s.contains("://") {
            Err(format!(
                "model location {s:?} must be a local path or s3://bucket/prefix"
            ))
        } else {
            Ok(ModelLocation::Local(PathBuf::from(s)))
        }
    }

    /// The rules [`ModelLocation::parse`] enforces, checked again on a location built in code.
    pub(super) fn validate(&self) -> Result<(), String> {
        match self {
            ModelLocation::Local(path) if path.as_os_str().is_empty() => {
                Err("model location must not be empty".into())
            }
            ModelLocation::Local(_) => Ok(()),
            ModelLocation::S3 { bucket, prefix } => {
                validate_bucket(bucket)?;
                if prefix.split('/').any(str::is_empty) && !prefix.is_empty() {
                    return Err(format!("s3 prefix {prefix:?} has an empty segment"));
                }
                if prefix.chars().any(char::is_control) {
                    return Err(format!("s3 prefix {prefix:?} contains a control character"));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for ModelLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelLocation::Local(path) => write!(f, "{}", path.display()),
            ModelLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            ModelLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl FromStr for ModelLocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

serde_as_text!(ModelLocation);

/// Checks an S3 bucket name: 3 to 63 characters of `[a-z0-9.-]`, starting and ending alphanumeric.
pub fn validate_bucket(bucket: &str) -> Result<(), String> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "bucket {bucket:?} must be 3 to 63 characters of [a-z0-9.-], starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_locations() {
        assert_eq!(
            ModelLocation::parse("s3://bucket-1/a/b/")
                .unwrap()
                .to_string(),
            "s3://bucket-1/a/b"
        );
        assert_eq!(
            ModelLocation::parse("s3://bucket-1").unwrap().to_string(),
            "s3://bucket-1"
        );
        assert!(ModelLocation::parse("s3://B/x").is_err());
        assert!(ModelLocation::parse("s3://bucket/a//b").is_err());
        assert!(ModelLocation::parse("").is_err());
        assert!(ModelLocation::parse("http://x/y").is_err());
        assert_eq!(
            ModelLocation::parse("fixtures/alexnet_small/training_seed_01").unwrap(),
            ModelLocation::Local("fixtures/alexnet_small/training_seed_01".into())
        );
    }
}
