//! Opening each seed's checkpoint once it is on local disk; downloading S3-hosted ones is
//! [`lucid_storage::models::ModelCache`]'s job, shared with the worker.

use std::path::Path;

use lucid_checkpoint::{ModelFile, SeedModel};
use lucid_proto::{ModelId, ModelLocation};

pub use lucid_storage::models::ModelCache;

use crate::error::{Error, Result};

/// A seed's model file, opened.
#[derive(Debug)]
pub struct OpenedModel {
    /// The seed.
    pub seed: ModelId,
    /// The location from the spec.
    pub location: ModelLocation,
    /// The opened file.
    pub file: ModelFile,
}

/// Finds and opens the single checkpoint at `path` for `seed` (blocking file I/O).
pub fn open_local(seed: &ModelId, location: &ModelLocation, path: &Path) -> Result<OpenedModel> {
    let checkpoint_error = |source| Error::Checkpoint {
        seed: seed.to_string(),
        location: location.to_string(),
        source: Box::new(source),
    };
    let found: Vec<SeedModel> = lucid_checkpoint::discover(path).map_err(checkpoint_error)?;
    let model = match found.as_slice() {
        [one] => one,
        [] => {
            return Err(Error::Model {
                location: location.to_string(),
                reason: "no checkpoint found".into(),
            });
        }
        many => {
            return Err(Error::Model {
                location: location.to_string(),
                reason: format!(
                    "holds {} seeds ({}); point models.{seed} at one seed's folder",
                    many.len(),
                    many.iter()
                        .map(|m| m.seed.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    let file = ModelFile::open(&model.path).map_err(checkpoint_error)?;
    Ok(OpenedModel {
        seed: seed.clone(),
        location: location.clone(),
        file,
    })
}
