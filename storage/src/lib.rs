//! Object storage for lucid-sweep: where rendered PNGs, their JSON sidecars and run manifests go.
//!
//! [`Store`] is one API over two backends: [`S3Store`] (any S3-compatible service through aws-sdk-s3;
//! SeaweedFS in tests) and [`LocalStore`] (a folder, for single-box runs and tests). Build one from a
//! sweep spec's `[storage]` section with [`Store::from_section`].
//!
//! # Keys
//!
//! Keys are relative names with `/` separators, as laid out by [`lucid_proto::keys`]. Every operation
//! validates them ([`validate_key`]): no leading `/`, no empty, `.` or `..` segments, no control
//! characters. That keeps a key from escaping a local store's folder and keeps both backends holding
//! the same set of names.
//!
//! # Failures and retries
//!
//! S3 operations retry transient failures (connection refused or reset, timeouts, HTTP 5xx, 408, 429,
//! `SlowDown`) with exponential backoff and jitter, until `storage.retry_for_secs` (default 120 s) has
//! passed since the first attempt; a store restart shorter than that is invisible to callers apart from
//! a warning per retry. Other failures (403, a missing bucket) return at once.
//! [`StorageError::is_transient`] tells the two apart after the budget is spent, so a worker can
//! requeue a task instead of failing it.
//!
//! # Credentials
//!
//! [`Credentials::resolve`] reads them from the environment or a file, never from the spec or the
//! command line. The secret never appears in `Debug` output or error messages.

#![warn(missing_docs)]

use std::path::PathBuf;

use lucid_proto::spec::{StorageKind, StorageSection};

mod credentials;
mod error;
pub mod files;
mod key;
mod local;
pub mod models;
mod retry;
mod s3;

pub use credentials::{
    ACCESS_KEY_ENV, AWS_ACCESS_KEY_ENV, AWS_SECRET_KEY_ENV, Credentials, SECRET_KEY_ENV,
};
pub use error::StorageError;
pub use files::FileSet;
pub use key::{content_type_for, validate_key};
pub use local::LocalStore;
pub use s3::{CA_FILE_ENV, S3Store};

/// What a HEAD request tells about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// The content type stored with the object (S3), or the one its extension implies (local).
    pub content_type: Option<String>,
}

/// An object store: an S3 bucket or a local folder. Cheap to clone (the backends share their state
/// behind an `Arc`), so each task can hold its own.
#[derive(Debug, Clone)]
pub enum Store {
    /// An S3-compatible bucket.
    S3(S3Store),
    /// A local folder.
    Local(LocalStore),
}

impl Store {
    /// Builds the store a spec's storage section describes. For S3 this resolves credentials
    /// ([`Credentials::resolve`] with `storage.credentials_file`) and builds the client: endpoint,
    /// bucket, region, path-style addressing, checksum mode, retry budget and, for HTTPS endpoints, a
    /// CA bundle from `storage.ca_file` or env `LUCID_CA_FILE`. No request is sent; call
    /// [`Store::ensure_bucket`] to check the store answers. For local, it needs `storage.local_dir`.
    pub async fn from_section(section: &StorageSection) -> Result<Self, StorageError> {
        match section.kind {
            StorageKind::S3 => {
                let credentials = Credentials::resolve(section.credentials_file.as_deref())?;
                Ok(Store::S3(S3Store::new(section, credentials)?))
            }
            StorageKind::Local => {
                let dir = section.local_dir.clone().ok_or_else(|| {
                    StorageError::config("storage.local_dir", "required for local storage")
                })?;
                Ok(Store::local(dir))
            }
        }
    }

    /// A store in the folder `dir` (created by [`Store::ensure_bucket`] or the first put).
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        Store::Local(LocalStore::new(dir))
    }

    /// Makes sure the bucket (S3) or folder (local) exists, creating it if missing; idempotent.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        match self {
            Store::S3(s) => s.ensure_bucket().await,
            Store::Local(l) => l.ensure_bucket().await,
        }
    }

    /// Stores `bytes` under `key`, replacing any previous object.
    ///
    /// Local: writes a temporary file in the target folder and renames it into place (no partial
    /// files), creating parent folders. S3: PutObject with `content_type`, retrying transient failures
    /// for up to the section's `retry_for_secs`; non-transient errors (403, missing bucket) fail at once.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        match self {
            Store::S3(s) => s.put(key, bytes, content_type).await,
            Store::Local(l) => l.put(key, bytes).await,
        }
    }

    /// The object's bytes, or `None` when there is no such key. S3 retries like [`Store::put`].
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Store::S3(s) => s.get(key).await,
            Store::Local(l) => l.get(key).await,
        }
    }

    /// Whether an object exists under `key` (HEAD). S3 retries like [`Store::put`].
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.head(key).await?.is_some())
    }

    /// Size and content type of the object under `key`, or `None` when there is none (HEAD).
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self {
            Store::S3(s) => s.head(key).await,
            Store::Local(l) => l.head(key).await,
        }
    }

    /// Every key starting with `prefix` (a plain string prefix; `""` lists everything), sorted.
    ///
    /// One pass: S3 pages through ListObjectsV2 1000 keys per request; local walks the folder tree
    /// below the prefix. Either way the cost does not grow with a request per key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        match self {
            Store::S3(s) => s.list(prefix).await,
            Store::Local(l) => l.list(prefix).await,
        }
    }

    /// Deletes the object under `key`; succeeds if there is none.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Store::S3(s) => s.delete(key).await,
            Store::Local(l) => l.delete(key).await,
        }
    }

    /// A human-readable location for messages: `s3://bucket/` or the folder path.
    pub fn describe(&self) -> String {
        match self {
            Store::S3(s) => format!("s3://{}/", s.bucket()),
            Store::Local(l) => l.root().display().to_string(),
        }
    }
}
