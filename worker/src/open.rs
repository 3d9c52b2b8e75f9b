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

/// A model opened for a one-off command.
pub struct Opened {
    /// The network, on its device.
    pub net: Box<dyn RenderNet>,
    /// The label it goes by: the first model found (`training_seed_NN`, a file's stem) or the export
    /// folder's name.
    pub label: String,
    /// The description its weights were resolved as, for its geometry (receptive fields): `None` for
    /// a TorchScript export, which carries none.
    pub geometry: Option<Network>,
}

/// The model at `checkpoint` as `network` (a built-in name, a description file, or
/// [`lucid_proto::spec::TORCHSCRIPT`]) on `device`.
pub fn open_model(checkpoint: &Path, network: &str, device: Device) -> Result<Opened> {
    if network == lucid_proto::spec::TORCHSCRIPT {
        let net = ScriptedNet::load(checkpoint, device)?;
        let label = checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "export".into());
        return Ok(Opened {
            net: Box::new(net),
            label,
            geometry: None,
        });
    }
    let found = discover(checkpoint)
        .with_context(|| format!("no model found at {}", checkpoint.display()))?;
    let first = found.first().context("no model found")?;
    let file = ModelFile::open(&first.path)?;
    let description = crate::inspect::load_description(network)?;
    let (net, resolved): (Box<dyn RenderNet>, Network) =
        if network == lucid_proto::spec::DEFAULT_NETWORK {
            // loaded first, so a file that is no alexnet_v2 gets the native loader's message; the
            // built-in description of the same network then gives its geometry
            let net = AlexNet::load(&file, device)?;
            (Box::new(net), Network::resolve(description, &file)?)
        } else {
            let resolved = Network::resolve(description, &file)?;
            let net = DescribedNet::load(resolved.clone(), &file, device, true)?;
            (Box::new(net), resolved)
        };
    Ok(Opened {
        net,
        label: first.id.to_string(),
        geometry: Some(resolved),
    })
}
