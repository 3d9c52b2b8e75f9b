//! A probe folder read as the probe pass needs it: every file below it, listed as the distributed
//! pass lists a probe set (`lucid_storage::FileSet`: names relative to the folder, hidden files and
//! folders left out, in byte order, so one pass and a sharded one index the files alike), each
//! decoded and prepared once; a file that is not a usable image is set aside with its reason, never
//! silently dropped, and never stops the pass.

use std::path::{Path, PathBuf};

use lucid_probe::{
    DecodeLimits, Prepared, Preprocessing, ProbeImageError, Skipped, decode, prepare,
};
use lucid_proto::ModelLocation;
use lucid_proto::spec::StorageSection;
use lucid_storage::FileSet;

/// Why a probe folder gave nothing to probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeSetError {
    /// The folder could not be listed.
    #[error("cannot list probe images in {}: {reason}", path.display())]
    Unlistable {
        /// The folder.
        path: PathBuf,
        /// The cause.
        reason: String,
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

/// Every file below `root` as the distributed pass lists a probe set: names relative to `root`,
/// hidden files and folders left out, in byte order (`FileSet::list` over the folder).
pub fn list_files(root: &Path) -> Result<Vec<String>, ProbeSetError> {
    let unlistable = |reason: String| ProbeSetError::Unlistable {
        path: root.to_path_buf(),
        reason,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unlistable(format!("cannot start the listing runtime: {e}")))?;
    let location = ModelLocation::Local(root.to_path_buf());
    let names = runtime
        .block_on(async {
            let set = FileSet::open(&location, &StorageSection::default()).await?;
            set.list().await
        })
        .map_err(|e| unlistable(e.to_string()))?;
    if names.is_empty() {
        return Err(ProbeSetError::Empty {
            path: root.to_path_buf(),
        });
    }
    Ok(names)
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
    for name in files.iter().cloned() {
        match read_one(&root.join(&name), &name, how, limits) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_listed_in_the_byte_order_the_distributed_pass_lists_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a/c.png", "a-b.png", ".hidden/x.png", "a/.y.png", "b.png"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
            std::fs::write(&path, b"x").expect("write");
        }
        // by path component "a/c.png" would come before "a-b.png"; by bytes '-' < '/'
        assert_eq!(
            list_files(dir.path()).expect("listed"),
            ["a-b.png", "a/c.png", "b.png"]
        );
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            list_files(empty.path()),
            Err(ProbeSetError::Empty { .. })
        ));
    }
}
