//! `lucid-worker probe`: one model's probe pass on this machine — a folder of probe images through
//! every requested layer, each channel's dataset examples (with the receptive-field crop of each
//! maximum) and the images × channels matrix of spatial means written to a folder. The building block
//! of the distributed pass (docs/dataset-examples.md).
//!
//! Output, in `--out`:
//! - `probe.json`: the model, the preparation, the images in index order, the files set aside with
//!   their reasons, and per layer its channels and receptive field ([`ProbeReport`]);
//! - `{layer}.examples.json`: per channel its top-k and bottom-k by spatial mean and its top-k
//!   maxima, each maximum with its crop `[top, left, bottom, right)` of the prepared image;
//! - `{layer}.means.safetensors`: tensor `means`, `[images, channels]` float32.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use lucid_network::{Network, ReceptiveField};
use lucid_probe::output::{
    self, LayerReport, ModelReport, ProbeReport, ProbeSetReport, ProbeTiming,
};
use lucid_probe::{DecodeLimits, Preprocessing};

use super::files::read_probe_set;
use super::{LayerExamples, probe_images};
use crate::device::DeviceChoice;
use crate::render::net::RenderNet;

/// Arguments of `lucid-worker probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// A checkpoint prefix, `.safetensors` file or model folder (the first model found is used), or a
    /// `lucid-export` folder with `--network torchscript`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The network: a built-in name, a `.toml` description, or `torchscript`.
    #[arg(long, default_value = lucid_proto::spec::DEFAULT_NETWORK)]
    pub network: String,
    /// The folder of probe images (JPEG or PNG, any size; sub-folders included, hidden files not).
    #[arg(long)]
    pub images: PathBuf,
    /// Comma-separated layers, or `all`.
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// Examples kept per channel and list.
    #[arg(long, default_value_t = 9)]
    pub k: usize,
    /// The side the images are prepared at (the network's input side).
    #[arg(long, default_value_t = 224)]
    pub side: u32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the probe pass, writes the output folder and returns its report.
pub fn probe(args: &ProbeArgs) -> Result<ProbeReport> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let device = args.device.resolve()?;
    let how = Preprocessing::for_side(args.side);
    let started = Instant::now();
    let set = read_probe_set(&args.images, how, DecodeLimits::default())?;
    let read_seconds = started.elapsed().as_secs_f64();
    let opened = crate::open::open_model(&args.checkpoint, &args.network, device)?;
    let net = opened.net.as_ref();
    let indices = layer_indices(net, &args.layers, args.side)?;
    let started = Instant::now();
    let layers = probe_images(net, &indices, &set.images, args.k, args.batch, device)?;
    let forward_seconds = started.elapsed().as_secs_f64();
    let layers = write_layers(
        args,
        set.images.len(),
        net,
        &layers,
        opened.geometry.as_ref(),
    )?;
    let report = ProbeReport {
        schema_version: output::REPORT_SCHEMA_VERSION,
        model: ModelReport {
            label: opened.label.clone(),
            network: args.network.clone(),
        },
        layers,
        probe_set: ProbeSetReport {
            images: set.names,
            preprocessing: how,
            skipped: set.skipped,
        },
        timing: ProbeTiming::of(set.images.len(), read_seconds, forward_seconds),
    };
    write_file(
        &args.out.join("probe.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(report)
}

/// The layers `spec` names (`all` or a comma list), as indices of `net`, each checked to have an
/// output at `side` px.
fn layer_indices(net: &dyn RenderNet, spec: &str, side: u32) -> Result<Vec<usize>> {
    let indices: Vec<usize> = if spec.trim() == "all" {
        (0..net.layer_count()).collect()
    } else {
        spec.split(',')
            .map(|name| net.layer_index(name.trim()))
            .collect::<Result<_, _>>()?
    };
    for &index in &indices {
        let needs = net.min_input_side(index);
        if (side as usize) < needs {
            bail!(
                "--side {side} is too small for layer {}: it needs at least {needs} px",
                net.layer_name(index)
            );
        }
    }
    Ok(indices)
}

/// Writes each layer's examples and means into `--out`, and says what was written.
fn write_layers(
    args: &ProbeArgs,
    images: usize,
    net: &dyn RenderNet,
    layers: &[LayerExamples],
    geometry: Option<&Network>,
) -> Result<Vec<LayerReport>> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let side = args.side as usize;
    let mut reports = Vec::new();
    for layer in layers {
        let name = net.layer_name(layer.index).to_owned();
        let field = match geometry {
            Some(network) => Some(network.receptive_field(network.tap(&name)?, side)?),
            None => None,
        };
        write_layer(&args.out, &name, layer, field, images, side)?;
        reports.push(LayerReport {
            layer: name,
            channels: layer.channels.len(),
            receptive_field: field.map(Into::into),
        });
    }
    Ok(reports)
}

fn write_layer(
    out: &Path,
    name: &str,
    layer: &LayerExamples,
    field: Option<ReceptiveField>,
    images: usize,
    side: usize,
) -> Result<()> {
    let examples = output::examples_json(&layer.channels, field, side);
    write_file(&out.join(format!("{name}.examples.json")), &examples)?;
    let means = output::means_safetensors(images, layer.channels.len(), &layer.means)?;
    write_file(&out.join(format!("{name}.means.safetensors")), &means)
}

/// Writes `bytes` to `path` through a temporary file beside it, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
