//! Opening each model's checkpoint once it is on local disk; downloading S3-hosted ones is
//! [`lucid_storage::models::ModelCache`]'s job, shared with the worker.

use std::path::Path;

use lucid_checkpoint::{DiscoveredModel, ModelFile};
use lucid_network::{Description, NetworkError, builtin};
use lucid_proto::spec::StorageSection;
use lucid_proto::{ModelId, ModelLocation, NetworkRef};

pub use lucid_storage::models::ModelCache;

use crate::error::{Error, Result};

/// A model's file, opened.
#[derive(Debug)]
pub struct OpenedModel {
    /// The model.
    pub model_id: ModelId,
    /// The location from the spec.
    pub location: ModelLocation,
    /// The opened file.
    pub file: ModelFile,
}

/// Finds and opens the single checkpoint at `path` for `model` (blocking file I/O).
pub fn open_local(
    model_id: &ModelId,
    location: &ModelLocation,
    path: &Path,
) -> Result<OpenedModel> {
    let checkpoint_error = |source| Error::Checkpoint {
        model: model_id.to_string(),
        location: location.to_string(),
        source: Box::new(source),
    };
    let found: Vec<DiscoveredModel> = lucid_checkpoint::discover(path).map_err(checkpoint_error)?;
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
                    "holds {} models ({}); point models.{model_id} at one model's folder",
                    many.len(),
                    many.iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    let file = ModelFile::open(&model.path).map_err(checkpoint_error)?;
    Ok(OpenedModel {
        model_id: model_id.clone(),
        location: location.clone(),
        file,
    })
}

/// A model's network description and the digest of the text it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedNetwork {
    /// The description.
    pub description: Description,
    /// [`Description::digest`] of its text.
    pub digest: String,
}

/// Why a model's network could not be read, kept apart so that each caller settles it its own
/// way: `plan` refuses the spec, a worker blames the store or the task.
#[derive(Debug, thiserror::Error)]
pub enum NetworkReadError {
    /// The description file could not be fetched from S3.
    #[error("fetch network description {location}: {source}")]
    Fetch {
        /// The description's location.
        location: String,
        /// The store's error.
        source: lucid_storage::StorageError,
    },
    /// The fetched or local file could not be read.
    #[error("cannot read network description {path}: {source}")]
    Read {
        /// The file on local disk.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An unknown built-in name, or a description that does not parse or check.
    #[error(transparent)]
    Invalid(Box<NetworkError>),
}

/// Reads `network`: a built-in description, or a description file (local, or downloaded from S3
/// into `cache`); `None` for a TorchScript export, which the export's own descriptor describes.
/// Coordinator and worker both read networks here.
pub async fn read_network(
    network: &NetworkRef,
    storage: &StorageSection,
    cache: &ModelCache,
) -> std::result::Result<Option<LoadedNetwork>, NetworkReadError> {
    let invalid = |e| NetworkReadError::Invalid(Box::new(e));
    let text = match network {
        NetworkRef::TorchScript => return Ok(None),
        NetworkRef::Builtin(name) => builtin::text(name)
            .ok_or_else(|| invalid(builtin::unknown(name)))?
            .to_owned(),
        NetworkRef::Description(location) => {
            let path = cache
                .materialize_file(location, storage)
                .await
                .map_err(|source| NetworkReadError::Fetch {
                    location: location.to_string(),
                    source,
                })?;
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|source| NetworkReadError::Read {
                    path: path.display().to_string(),
                    source,
                })?
        }
    };
    let description = Description::parse_toml(&text, &network.to_string()).map_err(invalid)?;
    Ok(Some(LoadedNetwork {
        digest: Description::digest(&text),
        description,
    }))
}

/// [`read_network`] for `model` of a spec; the error names the model and the description.
pub async fn load_network(
    model: &ModelId,
    network: &NetworkRef,
    storage: &StorageSection,
    cache: &ModelCache,
) -> Result<Option<LoadedNetwork>> {
    read_network(network, storage, cache)
        .await
        .map_err(|e| match e {
            NetworkReadError::Fetch { location, source } => {
                Error::storage(format!("fetch network description {location}"), source)
            }
            NetworkReadError::Read { .. } => Error::Model {
                location: network.to_string(),
                reason: e.to_string(),
            },
            NetworkReadError::Invalid(source) => Error::Network {
                model: model.to_string(),
                location: network.to_string(),
                source,
            },
        })
}
