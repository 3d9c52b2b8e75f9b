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

use anyhow::{Context, Result, bail};
use lucid_checkpoint::{ModelFile, discover};
use lucid_network::{Network, ReceptiveField};
use lucid_probe::{ChannelExamples, DecodeLimits, Example, Preprocessing};
use serde::Serialize;

use super::files::{ProbeSet, Skipped, read_probe_set};
use super::{LayerExamples, batch_tensor, probe_batch};
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

/// `probe.json`: what was probed, and how.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    /// Always 1.
    pub schema_version: u32,
    /// The model.
    pub model: ModelReport,
    /// Per layer probed.
    pub layers: Vec<LayerReport>,
    /// The probe images.
    pub probe_set: ProbeSetReport,
}

/// The model of a [`ProbeReport`].
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// Its label (`training_seed_NN`, a file's stem, an export's folder).
    pub label: String,
    /// The network it was run as.
    pub network: String,
}

/// The probe images of a [`ProbeReport`].
#[derive(Debug, Serialize)]
pub struct ProbeSetReport {
    /// The usable images, relative to the probe folder; example `image` indices point here.
    pub images: Vec<String>,
    /// How each was prepared.
    pub preprocessing: Preprocessing,
    /// The files set aside.
    pub skipped: Vec<Skipped>,
}

/// One layer of [`ProbeReport`].
#[derive(Debug, Serialize)]
pub struct LayerReport {
    /// The layer.
    pub layer: String,
    /// Its channels.
    pub channels: usize,
    /// Its receptive field at the prepared side: `{size, jump, offset}` per axis, `"whole"`, or
    /// `null` where the network's geometry is not known (a TorchScript export).
    pub receptive_field: Option<FieldReport>,
}

/// A receptive field as recorded.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldReport {
    /// Each output reads a window.
    Local {
        /// Rows: size, jump, offset.
        rows: [usize; 3],
        /// Columns: size, jump, offset.
        cols: [usize; 3],
    },
    /// Each output reads the whole image.
    Whole,
}

/// One channel of `{layer}.examples.json`.
#[derive(Debug, Serialize)]
struct ChannelReport<'a> {
    channel: usize,
    top_mean: &'a [Example],
    bottom_mean: &'a [Example],
    top_max: Vec<Peak>,
}

/// A top maximum with its crop.
#[derive(Debug, Serialize)]
struct Peak {
    #[serde(flatten)]
    example: Example,
    /// `[top, left, bottom, right)` of the prepared image, or `null` without a known geometry.
    crop: Option<[usize; 4]>,
}

/// Runs the probe pass, writes the output folder and returns its report.
pub fn probe(args: &ProbeArgs) -> Result<ProbeReport> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let device = args.device.resolve()?;
    let how = Preprocessing::for_side(args.side);
    let set = read_probe_set(&args.images, how, DecodeLimits::default())?;
    let (net, model) = crate::open::open_model(&args.checkpoint, &args.network, device)?;
    let net = net.as_ref();
    let indices = layer_indices(net, &args.layers)?;
    let mut layers: Vec<LayerExamples> = indices
        .iter()
        .map(|&i| LayerExamples::new(net, i, args.k))
        .collect();
    for (b, chunk) in set.images.chunks(args.batch).enumerate() {
        let batch = batch_tensor(chunk, device);
        probe_batch(net, &batch, (b * args.batch) as u32, &mut layers)?;
    }
    let geometry = geometry(&args.checkpoint, &args.network)?;
    let report = write_outputs(args, &set, net, &layers, geometry.as_ref(), model)?;
    Ok(report)
}

/// The layers `spec` names (`all` or a comma list), as indices of `net`.
fn layer_indices(net: &dyn RenderNet, spec: &str) -> Result<Vec<usize>> {
    if spec.trim() == "all" {
        return Ok((0..net.layer_count()).collect());
    }
    spec.split(',')
        .map(|name| Ok(net.layer_index(name.trim())?))
        .collect()
}

/// The network's geometry, for receptive fields: `None` for a TorchScript export, which has none.
fn geometry(checkpoint: &Path, network: &str) -> Result<Option<Network>> {
    if network == lucid_proto::spec::TORCHSCRIPT {
        return Ok(None);
    }
    let found = discover(checkpoint)?;
    let first = found.first().context("no model found")?;
    let file = ModelFile::open(&first.path)?;
    let description = crate::inspect::load_description(network)?;
    Ok(Some(Network::resolve(description, &file)?))
}

fn write_outputs(
    args: &ProbeArgs,
    set: &ProbeSet,
    net: &dyn RenderNet,
    layers: &[LayerExamples],
    geometry: Option<&Network>,
    model: String,
) -> Result<ProbeReport> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut reports = Vec::new();
    for layer in layers {
        let name = net.layer_name(layer.index).to_owned();
        let field = match geometry {
            Some(network) => {
                Some(network.receptive_field(network.tap(&name)?, args.side as usize)?)
            }
            None => None,
        };
        write_layer(
            &args.out,
            &name,
            layer,
            field,
            set.images.len(),
            args.side as usize,
        )?;
        reports.push(LayerReport {
            layer: name,
            channels: layer.channels.len(),
            receptive_field: field.map(field_report),
        });
    }
    let report = ProbeReport {
        schema_version: 1,
        model: ModelReport {
            label: model,
            network: args.network.clone(),
        },
        layers: reports,
        probe_set: ProbeSetReport {
            images: set.names.clone(),
            preprocessing: Preprocessing::for_side(args.side),
            skipped: set.skipped.clone(),
        },
    };
    write_file(
        &args.out.join("probe.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(report)
}

fn write_layer(
    out: &Path,
    name: &str,
    layer: &LayerExamples,
    field: Option<ReceptiveField>,
    images: usize,
    side: usize,
) -> Result<()> {
    let channels: Vec<ChannelReport<'_>> = layer
        .channels
        .iter()
        .enumerate()
        .map(|(channel, examples)| channel_report(channel, examples, field, side))
        .collect();
    write_file(
        &out.join(format!("{name}.examples.json")),
        &serde_json::to_vec(&channels)?,
    )?;
    let shape = vec![images, layer.channels.len()];
    let tensors = [(
        "means".to_owned(),
        shape,
        crate::synthetic::f32_bytes(&layer.means),
    )];
    let path = out.join(format!("{name}.means.safetensors"));
    crate::synthetic::write_safetensors(&path, &tensors)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn channel_report(
    channel: usize,
    examples: &ChannelExamples,
    field: Option<ReceptiveField>,
    side: usize,
) -> ChannelReport<'_> {
    let top_max = examples
        .top_max
        .examples()
        .iter()
        .map(|&example| Peak {
            example,
            crop: field.map(|f| {
                let (top, left, bottom, right) =
                    f.crop(example.y as usize, example.x as usize, side);
                [top, left, bottom, right]
            }),
        })
        .collect();
    ChannelReport {
        channel,
        top_mean: examples.top_mean.examples(),
        bottom_mean: examples.bottom_mean.examples(),
        top_max,
    }
}

fn field_report(field: ReceptiveField) -> FieldReport {
    match field {
        ReceptiveField::Local { rows, cols } => FieldReport::Local {
            rows: [rows.size, rows.jump, rows.offset],
            cols: [cols.size, cols.jump, cols.offset],
        },
        ReceptiveField::Whole => FieldReport::Whole,
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
