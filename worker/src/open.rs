//! How a one-off command (`bench`, `probe`) opens the model its `--checkpoint` and `--network` name:
//! the native `alexnet_v2`, a described network, or a `lucid-export` folder, behind one
//! [`RenderNet`]. (The render thread keeps its own cache of models per task, `pipeline::gpu`.)

use std::path::Path;

use anyhow::{Context, Result};
use lucid_checkpoint::{ModelFile, discover};
use lucid_network::Network;
use tch::Device;

use crate::described::DescribedNet;
use crate::model::AlexNet;
use crate::render::net::RenderNet;
use crate::scripted::ScriptedNet;

/// The model at `checkpoint` as `network` (a built-in name, a description file, or
/// [`lucid_proto::spec::TORCHSCRIPT`]) on `device`, and the label it goes by: the first model found
/// there (`training_seed_NN`, a file's stem) or the export folder's name.
pub fn open_model(
    checkpoint: &Path,
    network: &str,
    device: Device,
) -> Result<(Box<dyn RenderNet>, String)> {
    if network == lucid_proto::spec::TORCHSCRIPT {
        let net = ScriptedNet::load(checkpoint, device)?;
        let id = checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "export".into());
        return Ok((Box::new(net), id));
    }
    let found = discover(checkpoint)
        .with_context(|| format!("no model found at {}", checkpoint.display()))?;
    let first = found.first().context("no model found")?;
    let file = ModelFile::open(&first.path)?;
    let model: Box<dyn RenderNet> = if network == lucid_proto::spec::DEFAULT_NETWORK {
        Box::new(AlexNet::load(&file, device)?)
    } else {
        let description = crate::inspect::load_description(network)?;
        let resolved = Network::resolve(description, &file)?;
        Box::new(DescribedNet::load(resolved, &file, device, true)?)
    };
    Ok((model, first.id.to_string()))
}
