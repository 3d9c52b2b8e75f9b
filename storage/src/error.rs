//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why a storage operation failed. Messages name the operation and the bucket, key or path; none ever
/// contains a secret key.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No usable S3 credentials were found; the message says where they were looked for.
    #[error("s3 credentials: {0}")]
    Credentials(String),
    /// The storage section (or an environment variable standing in for one of its fields) is unusable.
    #[error("invalid storage config {field}: {reason}")]
    Config {
        /// The spec field, e.g. `storage.bucket`, or the environment variable.
        field: String,
        /// What is wrong with it, including the value found.
        reason: String,
    },
    /// A key or listing prefix that is not a safe relative object name.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A local file-system operation failed.
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `write` or `create folder`.
        op: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A model location that holds no usable checkpoint files.
    #[error("model {location}: {reason}")]
    Model {
        /// The location, as written in the spec.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// An S3 request failed, after retrying if the failure was transient.
    #[error(
        "s3 {op} s3://{bucket}/{key} failed after {attempts} attempt{}: {message}",
        if *attempts == 1 { "" } else { "s" }
    )]
    S3 {
        /// The operation, e.g. `put` or `list`.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The object key, or the listing prefix (empty for bucket operations).
        key: String,
        /// The store's error code and message, or the transport error.
        message: String,
        /// Whether the last failure was of a kind that may go away (connection refused, timeout, 5xx,
        /// throttling); such an error means the retry budget ran out.
        transient: bool,
        /// How many requests were made.
        attempts: u32,
    },
}

impl StorageError {
    /// Whether retrying later may succeed: true for S3 failures of a transient kind (connection
    /// refused, timeouts, 5xx, throttling), false for everything else (403, missing bucket, bad key,
    /// local I/O errors, configuration).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::S3 {
                transient: true,
                ..
            }
        )
    }

    /// Whether the failure is this machine's own (a local file-system operation: full disk, an
    /// unwritable folder) rather than the task's or the remote store's: another worker may well
    /// succeed, so the task must go back to the queue and this worker should stop taking work.
    pub fn is_local_fault(&self) -> bool {
        matches!(self, StorageError::Io { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StorageError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
