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
use lucid_probe::{ChannelExamples, DecodeLimits, Example, Preprocessing};
use serde::Serialize;

use super::files::{Skipped, read_probe_set};
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
    /// Where the time went.
    pub timing: ProbeTiming,
}

/// How long the pass took: reading (listing, decoding, preparing) and the forward passes.
#[derive(Debug, Serialize)]
pub struct ProbeTiming {
    /// Reading the probe folder: every file read, decoded and prepared once.
    pub read_seconds: f64,
    /// The forward passes of every layer and the example lists.
    pub forward_seconds: f64,
    /// Usable images per second, both together.
    pub images_per_second: f64,
    /// The reading's share of the time.
    pub read_share: f64,
}

impl ProbeTiming {
    fn of(images: usize, read_seconds: f64, forward_seconds: f64) -> Self {
        let total = (read_seconds + forward_seconds).max(1e-9);
        ProbeTiming {
            read_seconds,
            forward_seconds,
            images_per_second: images as f64 / total,
            read_share: read_seconds / total,
        }
    }
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
    let started = Instant::now();
    let set = read_probe_set(&args.images, how, DecodeLimits::default())?;
    let read_seconds = started.elapsed().as_secs_f64();
    let opened = crate::open::open_model(&args.checkpoint, &args.network, device)?;
    let net = opened.net.as_ref();
    let indices = layer_indices(net, &args.layers, args.side)?;
    let mut layers: Vec<LayerExamples> = indices
        .iter()
        .map(|&i| LayerExamples::new(net, i, args.k))
        .collect();
    let started = Instant::now();
    for (b, chunk) in set.images.chunks(args.batch).enumerate() {
        let batch = batch_tensor(chunk, device);
        probe_batch(net, &batch, (b * args.batch) as u32, &mut layers)?;
    }
    let forward_seconds = started.elapsed().as_secs_f64();
    let layers = write_layers(
        args,
        set.images.len(),
        net,
        &layers,
        opened.geometry.as_ref(),
    )?;
    let report = ProbeReport {
        schema_version: 1,
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
            receptive_field: field.map(field_report),
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
    let bytes = crate::synthetic::safetensors_bytes(&tensors)?;
    write_file(&out.join(format!("{name}.means.safetensors")), &bytes)
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
