//! The `[storage]` section: which object store holds a run's images, and how to reach it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::InvalidField;
use super::models::validate_bucket;
use super::uri::userinfo;
use crate::keys::KeyPrefix;

/// Which object store backs a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// An S3-compatible store.
    S3,
    /// A local directory (tests, single-box runs).
    Local,
}

/// When the S3 client computes and validates request/response checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// Only where the operation requires one (safe with most S3-compatible stores).
    WhenRequired,
    /// Wherever the SDK supports one (AWS default since aws-sdk-s3 1.69).
    WhenSupported,
}

/// The `[storage]` section. Holds no credentials, only `credentials_file`, a path to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// S3 or local.
    pub kind: StorageKind,
    /// S3 endpoint URL (`http://127.0.0.1:8333`); unset means AWS.
    pub endpoint: Option<String>,
    /// S3 bucket; required when `kind` is s3.
    pub bucket: Option<String>,
    /// Key prefix before the run id; may be empty. Segments must be valid identifiers.
    pub prefix: String,
    /// S3 region.
    pub region: String,
    /// Whether to use path-style addressing (needed by most S3-compatible stores).
    pub path_style: bool,
    /// Checksum behaviour of the S3 client.
    pub checksum: ChecksumMode,
    /// Root directory when `kind` is local.
    pub local_dir: Option<PathBuf>,
    /// Path of a file with the S3 access key and secret; unset means the AWS default chain.
    pub credentials_file: Option<PathBuf>,
    /// PEM bundle of the CA certificates an `https://` endpoint is verified against, instead of the
    /// platform's roots (a private CA); unset means env `LUCID_CA_FILE`, else the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// How long one S3 operation keeps retrying transient failures (connection refused, timeouts, 5xx,
    /// throttling) before giving up, in seconds; sized to ride out a store restart.
    pub retry_for_secs: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            kind: StorageKind::S3,
            endpoint: None,
            bucket: None,
            prefix: String::new(),
            region: "us-east-1".into(),
            path_style: true,
            checksum: ChecksumMode::WhenRequired,
            local_dir: None,
            credentials_file: None,
            ca_file: None,
            retry_for_secs: 120,
        }
    }
}

impl StorageSection {
    /// The validated key prefix.
    pub fn key_prefix(&self) -> Result<KeyPrefix, InvalidField> {
        KeyPrefix::parse(&self.prefix)
            .map_err(|e| InvalidField::new("storage.prefix", e.to_string()))
    }

    /// Checks the prefix, the retry window and what the store kind requires; errors name the field.
    pub(super) fn validate(&self) -> Result<(), InvalidField> {
        self.key_prefix()?;
        if !(1..=86_400).contains(&self.retry_for_secs) {
            return Err(InvalidField::new(
                "storage.retry_for_secs",
                format!("must be 1 to 86400, got {}", self.retry_for_secs),
            ));
        }
        match self.kind {
            StorageKind::S3 => {
                let bucket = self.bucket.as_deref().ok_or_else(|| {
                    InvalidField::new("storage.bucket", "required when storage.kind is s3")
                })?;
                validate_bucket(bucket).map_err(|r| InvalidField::new("storage.bucket", r))?;
                if self.region.trim().is_empty() {
                    return Err(InvalidField::new("storage.region", "must not be empty"));
                }
                if let Some(endpoint) = &self.endpoint {
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        return Err(InvalidField::new(
                            "storage.endpoint",
                            format!("must start with http:// or https://, got {endpoint:?}"),
                        ));
                    }
                    if userinfo(endpoint).is_some() {
                        return Err(InvalidField::new(
                            "storage.endpoint",
                            "must not contain credentials; use storage.credentials_file or the AWS environment",
                        ));
                    }
                }
            }
            StorageKind::Local => {
                if self.local_dir.is_none() {
                    return Err(InvalidField::new(
                        "storage.local_dir",
                        "required when storage.kind is local",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_support::{invalid, minimal};

    #[test]
    fn storage_validation_messages_name_the_field() {
        let mut spec = minimal();
        spec.storage.bucket = None;
        assert_eq!(
            invalid(&spec),
            "storage.bucket: required when storage.kind is s3"
        );

        let mut spec = minimal();
        spec.storage.bucket = Some("Bad_Bucket".into());
        assert!(invalid(&spec).starts_with("storage.bucket: bucket \"Bad_Bucket\""));

        let mut spec = minimal();
        spec.storage.prefix = "renders/../x".into();
        assert!(
            invalid(&spec).starts_with("storage.prefix: "),
            "{}",
            invalid(&spec)
        );

        let mut spec = minimal();
        spec.storage.endpoint = Some("http://ak:sk@127.0.0.1:8333".into());
        assert!(invalid(&spec).starts_with("storage.endpoint: must not contain credentials"));

        let mut spec = minimal();
        spec.storage.kind = StorageKind::Local;
        assert_eq!(
            invalid(&spec),
            "storage.local_dir: required when storage.kind is local"
        );
    }
}
