//! A probe folder read as the probe pass needs it: every file below it, in one stable order (by
//! path), each decoded and prepared once; a file that is not a usable image is set aside with its
//! reason, never silently dropped, and never stops the pass.

use std::path::{Path, PathBuf};

use lucid_probe::{
    DecodeLimits, Prepared, Preprocessing, ProbeImageError, Skipped, decode, prepare,
};

/// Why a probe folder gave nothing to probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeSetError {
    /// The folder could not be listed.
    #[error("cannot list probe images in {}: {source}", path.display())]
    Unlistable {
        /// The folder or sub-folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The folder holds no files.
    #[error("no probe images in {}: the folder is empty", path.display())]
    Empty {
        /// The folder.
        path: PathBuf,
    },
    /// Every file was set aside.
    #[error("none of the {count} files in {} is a usable image (first: {first})", path.display())]
    NoneUsable {
        /// The folder.
        path: PathBuf,
        /// How many files there were.
        count: usize,
        /// The first file's reason.
        first: String,
    },
}

/// The usable images of a probe folder, prepared, and the files set aside.
#[derive(Debug)]
pub struct ProbeSet {
    /// The usable images' paths relative to the folder; image `i` of the results is `names[i]`.
    pub names: Vec<String>,
    /// Each usable image prepared, in the same order.
    pub images: Vec<Prepared>,
    /// Files that are not usable images.
    pub skipped: Vec<Skipped>,
}

/// Every file below `root` (hidden files and folders left out), sorted by path.
pub fn list_files(root: &Path) -> Result<Vec<PathBuf>, ProbeSetError> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let unlistable = |source| ProbeSetError::Unlistable {
            path: folder.clone(),
            source,
        };
        for entry in std::fs::read_dir(&folder).map_err(unlistable)? {
            let path = entry.map_err(unlistable)?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        return Err(ProbeSetError::Empty {
            path: root.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

/// The probe folder `root` read, decoded and prepared as `how` says.
pub fn read_probe_set(
    root: &Path,
    how: Preprocessing,
    limits: DecodeLimits,
) -> Result<ProbeSet, ProbeSetError> {
    let files = list_files(root)?;
    let mut set = ProbeSet {
        names: Vec::new(),
        images: Vec::new(),
        skipped: Vec::new(),
    };
    for path in &files {
        let name = path
            .strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        match read_one(path, &name, how, limits) {
            Ok(prepared) => {
                set.names.push(name);
                set.images.push(prepared);
            }
            Err(reason) => {
                tracing::warn!(file = %name, %reason, "probe file set aside");
                set.skipped.push(Skipped { file: name, reason });
            }
        }
    }
    if set.images.is_empty() {
        return Err(ProbeSetError::NoneUsable {
            path: root.to_path_buf(),
            count: files.len(),
            first: set
                .skipped
                .first()
                .map(|s| s.reason.clone())
                .unwrap_or_default(),
        });
    }
    Ok(set)
}

fn read_one(
    path: &Path,
    name: &str,
    how: Preprocessing,
    limits: DecodeLimits,
) -> Result<Prepared, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("probe image {name}: cannot read: {e}"))?;
    prepare_file(name, &bytes, how, limits)
}

/// A probe file's bytes decoded and prepared, or why it is set aside (naming it): the one way both
/// `lucid-worker probe` and a distributed pass's shard turn a file into a network's input.
pub fn prepare_file(
    name: &str,
    bytes: &[u8],
    how: Preprocessing,
    limits: DecodeLimits,
) -> Result<Prepared, String> {
    let image = decode(name, bytes, limits).map_err(|e: ProbeImageError| e.to_string())?;
    Ok(prepare(&image, how))
}
