//! The descriptor `lucid-export` writes beside its TorchScript modules (`exporter/`), read without
//! libtorch so that the coordinator plans an exported PyTorch model like a described one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::description::{Description, InputSpec};
use crate::error::NetworkError;

/// The descriptor's file name in an export folder.
pub const DESCRIPTOR: &str = "descriptor.json";

/// The descriptor schema this build reads.
pub const DESCRIPTOR_SCHEMA_VERSION: u32 = 1;

/// An export: one TorchScript module per layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// Always [`DESCRIPTOR_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `torchscript`.
    pub kind: String,
    /// The network's name.
    pub name: String,
    /// What was exported (`torchvision:resnet18`, `package.module:function`).
    pub source: String,
    /// What the modules expect to see.
    pub input: InputSpec,
    /// The exported layers, input to output.
    pub layers: Vec<ScriptedLayer>,
}

/// One exported layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedLayer {
    /// Its FX node name (`layer3.1.conv2`), as a spec's `layers` lists it.
    pub name: String,
    /// The module's file in the export folder; it maps `[B, C, H, W]` to `{name: value}`.
    pub module: String,
    /// The layer's channels (or features).
    pub channels: usize,
    /// The smallest square input the layer has an output for.
    pub min_input_side: usize,
    /// SHA-256 of the module file, hex.
    pub sha256: String,
}

impl Descriptor {
    /// Reads `folder/descriptor.json`; also returns its text's digest, the export's identity.
    pub fn read(folder: &Path) -> Result<(Self, String), NetworkError> {
        let path = folder.join(DESCRIPTOR);
        let origin = path.display().to_string();
        let parse = |reason: String| NetworkError::Parse {
            origin: origin.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| parse(format!("cannot read the export's descriptor: {e}")))?;
        let descriptor: Descriptor =
            serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        if descriptor.schema_version != DESCRIPTOR_SCHEMA_VERSION
            || descriptor.kind != "torchscript"
        {
            return Err(parse(format!(
                "schema {} of kind {:?}; this build reads schema {DESCRIPTOR_SCHEMA_VERSION} of kind \"torchscript\"",
                descriptor.schema_version, descriptor.kind
            )));
        }
        let unsafe_name = descriptor.layers.iter().find(|l| {
            l.module.is_empty()
                || l.module.contains('/')
                || l.module.contains('\\')
                || l.module.starts_with('.')
        });
        if let Some(layer) = unsafe_name {
            return Err(parse(format!(
                "layer {}: module {:?} must be a file name in the export folder",
                layer.name, layer.module
            )));
        }
        Ok((descriptor, Description::digest(&text)))
    }

    /// `(layer, channels, smallest input side)` per layer: what planning needs.
    pub fn layer_table(&self) -> Vec<(String, usize, usize)> {
        self.layers
            .iter()
            .map(|l| (l.name.clone(), l.channels, l.min_input_side))
            .collect()
    }

    /// The module file of `layer` in `folder`.
    pub fn module_path(&self, folder: &Path, layer: &ScriptedLayer) -> PathBuf {
        folder.join(&layer.module)
    }
}
