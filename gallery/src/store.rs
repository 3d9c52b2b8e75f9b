//! [`FolderStore`]: a run laid out in a local folder, as local mode writes it and as tests build it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{GalleryError, GallerySink, GallerySource};

/// A folder-backed [`GallerySource`] and [`GallerySink`]: keys are `/`-separated paths under `root`.
///
/// Writes go to a hidden temporary file in the target folder, then a rename, so a reader never sees a
/// half-written page or sprite. Listing skips hidden entries (names starting with `.`), which includes
/// such temporary files.
#[derive(Debug, Clone)]
pub struct FolderStore {
    root: PathBuf,
}

/// Distinguishes temporary files of concurrent writes within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FolderStore {
    /// A store over the run folder `root` (the folder holding `{model}/{layer}/{channel:04}.png`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key`, after checking that it stays inside the root.
    fn path_of(&self, key: &str) -> Result<PathBuf, GalleryError> {
        check_key(key)?;
        Ok(key.split('/').fold(self.root.clone(), |p, s| p.join(s)))
    }
}

/// Rejects keys that could leave the root or that a listing would never return.
fn check_key(key: &str) -> Result<(), GalleryError> {
    let fail = |reason: &'static str| {
        Err(GalleryError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return fail("must not be empty");
    }
    if key.contains(['\\', '\0']) {
        return fail("must not contain `\\` or NUL");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return fail("must not have empty segments or a leading `/`");
        }
        if segment.starts_with('.') {
            return fail("segments must not start with `.`");
        }
    }
    Ok(())
}

impl GallerySource for FolderStore {
    fn list_keys(&self) -> Result<Vec<String>, GalleryError> {
        let mut keys = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let entries = fs::read_dir(&dir).map_err(|source| GalleryError::Io {
                op: "list",
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| GalleryError::Io {
                    op: "list",
                    path: dir.clone(),
                    source,
                })?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue; // not UTF-8: no key can name it
                };
                if name.starts_with('.') {
                    continue;
                }
                let file_type = entry.file_type().map_err(|source| GalleryError::Io {
                    op: "stat",
                    path: entry.path(),
                    source,
                })?;
                let key = format!("{prefix}{name}");
                if file_type.is_dir() {
                    stack.push((entry.path(), format!("{key}/")));
                } else if file_type.is_file() {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, GalleryError> {
        let path = self.path_of(key)?;
        fs::read(&path).map_err(|source| GalleryError::Io {
            op: "read",
            path,
            source,
        })
    }
}

impl GallerySink for FolderStore {
    fn write(
        &mut self,
        key: &str,
        bytes: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), GalleryError> {
        let path = self.path_of(key)?;
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| GalleryError::Io { op, path, source }
        };
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io("create folder", &dir))?;
        let name = key.rsplit('/').next().unwrap_or(key);
        let temp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::File::create(&temp)
            .and_then(|mut f| f.write_all(&bytes))
            .map_err(io("write", &temp))
            .and_then(|()| fs::rename(&temp, &path).map_err(io("rename into", &path)));
        if written.is_err() {
            // best effort: the error that matters is the one being returned
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_list_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FolderStore::new(dir.path());
        store
            .write("a/b/c.html", b"hi".to_vec(), "text/html")
            .unwrap();
        store
            .write("a/b/c.html", b"again".to_vec(), "text/html")
            .unwrap();
        store.write("top.png", vec![1], "image/png").unwrap();
        fs::write(dir.path().join("a/.hidden"), b"x").unwrap();
        assert_eq!(store.list_keys().unwrap(), vec!["a/b/c.html", "top.png"]);
        assert_eq!(store.read("a/b/c.html").unwrap(), b"again");
        let err = store.read("a/missing.png").unwrap_err();
        assert!(err.to_string().contains("missing.png"), "{err}");
    }

    #[test]
    fn keys_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FolderStore::new(dir.path().join("run"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a\\b",
            "a/./b",
        ] {
            let err = store.write(bad, vec![], "text/plain").unwrap_err();
            assert!(
                matches!(err, GalleryError::InvalidKey { .. }),
                "{bad}: {err}"
            );
            assert!(store.read(bad).is_err(), "{bad}");
        }
    }
}
