//! A model file of either kind behind one interface, and discovery of the model files of a folder.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::safetensors_file::SafetensorsFile;
use crate::tf::{self, Checkpoint};
use crate::{Error, Tensor, TensorInfo};

/// The checkpoint preferred when a seed folder holds several (the ecoset runs' last epoch).
pub const PREFERRED_PREFIX: &str = "model.ckpt_epoch89";

/// A model file: a TF Saver V2 checkpoint or a `.safetensors` export of the same variables.
#[derive(Debug)]
pub enum ModelFile {
    /// A TF checkpoint (`prefix.index` + `prefix.data-…`).
    Tf(Checkpoint),
    /// A `.safetensors` file.
    Safetensors(SafetensorsFile),
}

/// Whether `name` is a model variable rather than optimizer state or a step counter.
///
/// Excluded: `global_step`; any name with a `Momentum`, `Adam` or `Adam_1` path component
/// (the slots TF optimizers add, e.g. `alexnet_v2/conv1/weights/Momentum`); Adam's
/// `beta1_power` / `beta2_power`.
pub fn is_model_variable(name: &str) -> bool {
    if matches!(name, "global_step" | "beta1_power" | "beta2_power") {
        return false;
    }
    !name
        .split('/')
        .any(|part| matches!(part, "Momentum" | "Adam" | "Adam_1"))
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

impl ModelFile {
    /// Opens a model file.
    ///
    /// `path` is a TF checkpoint prefix (`.../model.ckpt_epoch89`, whose files are
    /// `prefix.index` and `prefix.data-00000-of-00001`…), a `.index` file (taken as its prefix)
    /// or a `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if has_extension(path, "safetensors") {
            return SafetensorsFile::open(path).map(ModelFile::Safetensors);
        }
        if path.is_dir() {
            return Err(Error::UnsupportedFile {
                path: path.to_path_buf(),
            });
        }
        if has_extension(path, "index") && path.is_file() {
            return Checkpoint::open(&path.with_extension("")).map(ModelFile::Tf);
        }
        Checkpoint::open(path).map(ModelFile::Tf)
    }

    /// The path it was opened with (the checkpoint prefix for TF).
    pub fn path(&self) -> &Path {
        match self {
            ModelFile::Tf(c) => c.prefix(),
            ModelFile::Safetensors(s) => s.path(),
        }
    }

    /// Every tensor in the file, optimizer slots and `global_step` included, sorted by name.
    pub fn all_tensors(&self) -> Vec<TensorInfo> {
        match self {
            ModelFile::Tf(c) => c.tensor_infos(),
            ModelFile::Safetensors(s) => s.tensor_infos(),
        }
    }

    /// Model variables only, sorted by name: optimizer slots and `global_step` are excluded
    /// (see [`is_model_variable`]).
    pub fn tensors(&self) -> Vec<TensorInfo> {
        let mut all = self.all_tensors();
        all.retain(|t| is_model_variable(&t.name));
        all
    }

    /// One tensor's name, dtype and shape ([`Error::MissingTensor`] if absent).
    pub fn info(&self, name: &str) -> Result<TensorInfo, Error> {
        match self {
            ModelFile::Tf(c) => c.info(name),
            ModelFile::Safetensors(s) => s.info(name),
        }
    }

    /// Reads a float32 tensor, verifying its CRC32C for TF checkpoints. Any other dtype is
    /// [`Error::UnsupportedDtype`].
    pub fn read_f32(&self, name: &str) -> Result<Tensor, Error> {
        match self {
            ModelFile::Tf(c) => c.read_f32(name),
            ModelFile::Safetensors(s) => s.read_f32(name),
        }
    }

    /// The files that make up this model, in a fixed order (TF: index, then shards in order).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            ModelFile::Tf(c) => {
                let mut files = vec![c.index_path().to_path_buf()];
                files.extend(c.shard_paths());
                files
            }
            ModelFile::Safetensors(s) => vec![s.path().to_path_buf()],
        }
    }

    /// A hex SHA-256 over the model's bytes, for run manifests.
    ///
    /// For a `.safetensors` file it is the file's plain SHA-256 (as `sha256sum` prints). For a
    /// TF checkpoint it hashes, for the index and then each data shard in order, the file's
    /// length (u64 little-endian) followed by its bytes; file names are not hashed, so a copy
    /// under another prefix has the same digest.
    pub fn digest(&self) -> Result<String, Error> {
        let mut hasher = Sha256::new();
        let tf = matches!(self, ModelFile::Tf(_));
        for (i, path) in self.files().iter().enumerate() {
            let mut file = File::open(path).map_err(|e| match (e.kind(), self) {
                (std::io::ErrorKind::NotFound, ModelFile::Tf(c)) if i > 0 => Error::MissingShard {
                    shard: path.clone(),
                    index: c.index_path().to_path_buf(),
                },
                _ => Error::io(path, e),
            })?;
            if tf {
                let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
                hasher
                    .write_all(&len.to_le_bytes())
                    .map_err(|e| Error::io(path, e))?;
            }
            std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

/// One discovered model file and the label it goes by: the `training_seed_NN` folder of one trained
/// network, or else the folder's or file's own name (see [`discover`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredModel {
    /// The model's label, e.g. `training_seed_01` (a sweep's model id).
    pub id: String,
    /// What [`ModelFile::open`] takes: a checkpoint prefix or a `.safetensors` file.
    pub path: PathBuf,
}

/// Whether `name` is a folder name of the ecoset runs, `training_seed_NN` (one or more digits): one
/// network per training seed.
pub fn is_training_seed_folder(name: &str) -> bool {
    name.strip_prefix("training_seed_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Discovers models under `path`.
///
/// - A folder holding `training_seed_NN/` sub-folders: one model per sub-folder, named after it
///   and sorted; each sub-folder must hold a checkpoint (see below).
/// - A folder holding a checkpoint directly: one model named after the folder.
/// - A checkpoint prefix (`prefix.index` exists), a `.index` file or a `.safetensors` file:
///   one model named after the parent folder if that looks like `training_seed_NN`, else after
///   the file (the prefix's file name, or the `.safetensors` file's stem).
///
/// In a folder, `model.ckpt_epoch89.index` is preferred; otherwise it must hold exactly one
/// `*.index` or `*.safetensors` file ([`Error::AmbiguousCheckpoint`] if several,
/// [`Error::NoCheckpoints`] if none).
pub fn discover(path: &Path) -> Result<Vec<DiscoveredModel>, Error> {
    if path.is_dir() {
        return discover_dir(path);
    }
    let (model, own_name) = if tf::index_path(path).is_file() {
        (path.to_path_buf(), file_name(path))
    } else if path.is_file() && has_extension(path, "index") {
        let prefix = path.with_extension("");
        let name = file_name(&prefix);
        (prefix, name)
    } else if path.is_file() && has_extension(path, "safetensors") {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (path.to_path_buf(), stem)
    } else if path.exists() {
        return Err(Error::UnsupportedFile {
            path: path.to_path_buf(),
        });
    } else {
        return Err(Error::NotFound {
            path: path.to_path_buf(),
        });
    };
    let parent = model.parent().map(file_name).unwrap_or_default();
    let id = if is_training_seed_folder(&parent) {
        parent
    } else {
        own_name
    };
    Ok(vec![DiscoveredModel { id, path: model }])
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn discover_dir(dir: &Path) -> Result<Vec<DiscoveredModel>, Error> {
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_training_seed_folder(&name) && entry.path().is_dir() {
            folders.push(name);
        }
    }
    if !folders.is_empty() {
        folders.sort();
        return folders
            .into_iter()
            .map(|id| {
                let sub = dir.join(&id);
                let path =
                    find_checkpoint(&sub)?.ok_or(Error::NoCheckpoints { path: sub.clone() })?;
                Ok(DiscoveredModel { id, path })
            })
            .collect();
    }
    match find_checkpoint(dir)? {
        Some(path) => {
            // `dir` may be "." or end in "..": name the model after the canonical folder.
            let canonical = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
            Ok(vec![DiscoveredModel {
                id: file_name(&canonical),
                path,
            }])
        }
        None => Err(Error::NoCheckpoints {
            path: dir.to_path_buf(),
        }),
    }
}

/// The one checkpoint in `dir` (a prefix or a `.safetensors` path), if any.
fn find_checkpoint(dir: &Path) -> Result<Option<PathBuf>, Error> {
    let preferred = dir.join(PREFERRED_PREFIX);
    if tf::index_path(&preferred).is_file() {
        return Ok(Some(preferred));
    }
    let mut candidates = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        if has_extension(&path, "index") {
            candidates.push(path.with_extension(""));
        } else if has_extension(&path, "safetensors") {
            candidates.push(path);
        }
    }
    candidates.sort();
    match candidates.len() {
        0 => Ok(None),
        1 => Ok(candidates.pop()),
        _ => Err(Error::AmbiguousCheckpoint {
            path: dir.to_path_buf(),
            candidates: candidates.iter().map(|p| file_name(p)).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_variables_exclude_optimizer_state() {
        assert!(is_model_variable("alexnet_v2/conv1/weights"));
        assert!(!is_model_variable("alexnet_v2/conv1/weights/Momentum"));
        assert!(!is_model_variable("alexnet_v2/fc8/biases/Adam_1"));
        assert!(!is_model_variable("global_step"));
        assert!(!is_model_variable("beta1_power"));
        assert!(is_model_variable("alexnet_v2/MomentumScale"));
    }

    #[test]
    fn training_seed_folder_names() {
        assert!(is_training_seed_folder("training_seed_01"));
        assert!(is_training_seed_folder("training_seed_10"));
        assert!(!is_training_seed_folder("training_seed_"));
        assert!(!is_training_seed_folder("training_seed_1a"));
        assert!(!is_training_seed_folder("safetensors"));
    }
}
