//! Finding each seed's checkpoint on local disk, downloading S3-hosted ones into a cache first.
//!
//! The coordinator (for layer widths) and the worker (for weights) both need the files, so this module
//! is the one place that maps a [`ModelLocation`] to a local path:
//!
//! - `ModelLocation::Local(path)`: the path itself (a seed folder, a checkpoint prefix or a
//!   `.safetensors` file), resolved by [`lucid_checkpoint::discover`].
//! - `ModelLocation::S3 { bucket, prefix }`: every object under `prefix/` is downloaded to
//!   `{cache}/models/s3/{bucket}/{prefix}/…` and the folder is then resolved like a local one.
//!
//! # Cache
//!
//! The cache root is `$LUCID_CACHE_DIR`, else `$XDG_CACHE_HOME/lucid-sweep`, else
//! `$HOME/.cache/lucid-sweep` (the same rule as `scripts/services.sh`). Files are keyed by bucket and
//! object key and written to a temporary name then renamed, so a file that exists is complete; objects
//! are assumed immutable (a run manifest records each checkpoint's digest, so a replaced checkpoint is
//! caught as a manifest conflict rather than silently mixed in). Delete the folder to force a download.

use std::path::{Component, Path, PathBuf};

use lucid_proto::ModelLocation;
use lucid_proto::spec::{StorageKind, StorageSection};

use crate::{StorageError, Store};

type Result<T> = std::result::Result<T, StorageError>;

/// Where downloaded models are kept; see the module docs for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCache {
    /// `{cache root}/models`.
    root: PathBuf,
}

impl ModelCache {
    /// A cache under `root` (the `models` folder itself).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache named by the environment: `$LUCID_CACHE_DIR/models`, else
    /// `$XDG_CACHE_HOME/lucid-sweep/models`, else `$HOME/.cache/lucid-sweep/models`.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let base = if let Some(dir) = var("LUCID_CACHE_DIR") {
            PathBuf::from(dir)
        } else if let Some(xdg) = var("XDG_CACHE_HOME") {
            PathBuf::from(xdg).join("lucid-sweep")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".cache").join("lucid-sweep")
        } else {
            return Err(StorageError::Model {
                location: "cache".into(),
                reason: "none of LUCID_CACHE_DIR, XDG_CACHE_HOME or HOME is set".into(),
            });
        };
        Ok(Self::new(base.join("models")))
    }

    /// The `models` folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local folder an S3 model prefix is downloaded to.
    pub fn s3_dir(&self, bucket: &str, prefix: &str) -> PathBuf {
        let mut dir = self.root.join("s3").join(bucket);
        dir.extend(prefix.split('/').filter(|s| !s.is_empty()));
        dir
    }

    /// A local path for `location` that [`lucid_checkpoint::discover`] accepts, downloading an S3
    /// model first. `storage` supplies the S3 endpoint, region and credentials; its bucket and prefix
    /// are replaced by the location's.
    pub async fn materialize(
        &self,
        location: &ModelLocation,
        storage: &StorageSection,
    ) -> Result<PathBuf> {
        match location {
            ModelLocation::Local(path) => Ok(path.clone()),
            ModelLocation::S3 { bucket, prefix } => {
                self.download(location, bucket, prefix, storage).await
            }
        }
    }

    /// The local path of the single file at `location` (a network description): a local path as it
    /// is, an S3 object downloaded into the cache (again on every call: descriptions are small and a
    /// changed one must be seen).
    pub async fn materialize_file(
        &self,
        location: &ModelLocation,
        storage: &StorageSection,
    ) -> Result<PathBuf> {
        let ModelLocation::S3 {
            bucket,
            prefix: key,
        } = location
        else {
            return self.materialize(location, storage).await;
        };
        let mut section = storage.clone();
        section.kind = StorageKind::S3;
        section.bucket = Some(bucket.to_owned());
        section.prefix = String::new();
        let store = Store::from_section(&section).await?;
        let bytes = store.get(key).await?.ok_or_else(|| StorageError::Model {
            location: location.to_string(),
            reason: "no such object".into(),
        })?;
        let target = self.s3_dir(bucket, key);
        crate::local::write_atomically(&target, &bytes)?;
        Ok(target)
    }

    async fn download(
        &self,
        location: &ModelLocation,
        bucket: &str,
        prefix: &str,
        storage: &StorageSection,
    ) -> Result<PathBuf> {
        let mut section = storage.clone();
        section.kind = StorageKind::S3;
        section.bucket = Some(bucket.to_owned());
        section.prefix = String::new();
        let store = Store::from_section(&section).await?;
        let list_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let keys = store.list(&list_prefix).await?;
        if keys.is_empty() {
            return Err(StorageError::Model {
                location: location.to_string(),
                reason: "no objects under this prefix".into(),
            });
        }
        let dir = self.s3_dir(bucket, prefix);
        for key in &keys {
            let relative = key.strip_prefix(&list_prefix).unwrap_or(key);
            let target = safe_join(&dir, relative).ok_or_else(|| StorageError::Model {
                location: location.to_string(),
                reason: format!("object key {key:?} is not a safe relative path"),
            })?;
            if target.is_file() {
                tracing::debug!(key = %key, path = %target.display(), "model file cached");
                continue;
            }
            let bytes = store.get(key).await?.ok_or_else(|| StorageError::Model {
                location: location.to_string(),
                reason: format!("object {key} was listed but is gone"),
            })?;
            crate::local::write_atomically(&target, &bytes)?;
            tracing::info!(key = %key, path = %target.display(), bytes = bytes.len(), "downloaded model file");
        }
        Ok(dir)
    }
}

/// `dir/relative` when every component of `relative` is a normal name (no `..`, `.`, root or empty).
fn safe_join(dir: &Path, relative: &str) -> Option<PathBuf> {
    if relative.is_empty() || relative.split('/').any(|s| s.is_empty()) {
        return None;
    }
    let rel = Path::new(relative);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_rejects_escapes() {
        let dir = Path::new("/cache");
        assert_eq!(
            safe_join(dir, "a/model.index"),
            Some(PathBuf::from("/cache/a/model.index"))
        );
        for bad in ["", "../x", "a/../../x", "/etc/passwd", "a//b", "./x"] {
            assert_eq!(safe_join(dir, bad), None, "{bad}");
        }
    }

    #[test]
    fn s3_dir_layout() {
        let cache = ModelCache::new("/c/models");
        assert_eq!(
            cache.s3_dir("bucket", "ecoset/training_seed_01"),
            PathBuf::from("/c/models/s3/bucket/ecoset/training_seed_01")
        );
        assert_eq!(
            cache.s3_dir("bucket", ""),
            PathBuf::from("/c/models/s3/bucket")
        );
    }
}
