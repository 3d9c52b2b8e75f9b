//! A local folder as an object store: key `a/b/c.png` is the file `{root}/a/b/c.png`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ObjectInfo;
use crate::error::StorageError;
use crate::key::{TMP_PREFIX, content_type_for, validate_key, validate_prefix};

/// A folder holding objects as files. Cheap to clone.
///
/// Keys are validated ([`validate_key`]) so they cannot leave the root lexically; symbolic links placed
/// inside the root by someone else are followed like any other path.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
}

impl LocalStore {
    /// A store rooted at `dir`; nothing is created until [`LocalStore::ensure_bucket`] or a put.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            root: Arc::new(dir.into()),
        }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates the root folder and its parents; succeeds if it exists.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        blocking(move || {
            fs::create_dir_all(&*root).map_err(|e| StorageError::io("create folder", &*root, e))
        })
        .await
    }

    /// Writes `bytes` to a temporary file next to the target, syncs it and renames it into place, so
    /// readers see the old object or the whole new one, never part of it. Creates parent folders.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        blocking(move || write_atomically(&path, &bytes)).await
    }

    /// The object's bytes, or `None` if there is no such file.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path_of(key)?;
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("read", &path, e)),
        })
        .await
    }

    /// Size and content type (from the extension) of the object, or `None` if there is no such file.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path_of(key)?;
        let content_type = content_type_for(key);
        blocking(move || match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectInfo {
                size: meta.len(),
                content_type: Some(content_type.to_owned()),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("stat", &path, e)),
        })
        .await
    }

    /// Every key under `prefix` (a plain string prefix, as in S3), sorted; skips temporary files and
    /// names that are not UTF-8.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        validate_prefix(prefix)?;
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || list_files(&root, &prefix)).await
    }

    /// Removes the object's file; succeeds if there is none (like S3).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("delete", &path, e)),
        })
        .await
    }
}

/// Runs file-system work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StorageError::io(
            "run file-system task for",
            PathBuf::new(),
            io::Error::other(e.to_string()),
        ))
    })
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it into place; a failed write
/// leaves no partial file behind. Shared with the model cache.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(StorageError::io(
            "write",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        ));
    };
    fs::create_dir_all(dir).map_err(|e| StorageError::io("create folder", dir, e))?;
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{:016x}-{}",
        rand::random::<u64>(),
        name.to_string_lossy()
    ));
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|e| StorageError::io("write", path, e))
        .and_then(|()| {
            fs::rename(&tmp, path).map_err(|e| StorageError::io("rename into place", path, e))
        });
    if result.is_err() {
        // best effort: the write already failed, and a leftover is skipped by listings
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn list_files(root: &Path, prefix: &str) -> Result<Vec<String>, StorageError> {
    // walk only the deepest folder the prefix names in full: "run1/seed_0" starts at {root}/run1
    let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let start = if dir_part.is_empty() {
        root.to_path_buf()
    } else {
        root.join(dir_part)
    };
    let mut keys = Vec::new();
    let mut stack = vec![(
        start,
        if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        },
    )];
    while let Some((dir, key_prefix)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(StorageError::io("list folder", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list folder", &dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(path = %entry.path().display(), "skipping a file name that is not UTF-8");
                continue;
            };
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let file_type = entry
                .file_type()
                .map_err(|e| StorageError::io("stat", entry.path(), e))?;
            let key = format!("{key_prefix}{name}");
            if file_type.is_dir() {
                // descend only where keys below can still match the prefix
                let dir_key = format!("{key}/");
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    stack.push((entry.path(), dir_key));
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                keys.push(key);
            }
        }
    }
    keys.sort_unstable();
    Ok(keys)
}
