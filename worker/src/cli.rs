//! The worker's one-off commands: `render` (a few channels to a folder, the notebook use case) and
//! `demo-models` (`inspect` is [`crate::inspect`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lucid_checkpoint::{ModelFile, discover};
use lucid_proto::channels::ChannelSelection;
use lucid_proto::spec::Precision;

use crate::device::DeviceChoice;
use crate::encode::encode_png;
use crate::model::AlexNet;
use crate::render::{self, Diversity, Objective, ParamKind, Settings, TransformSet};

/// Arguments of `lucid-worker render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// A checkpoint prefix, a `.safetensors` file, or a folder of `training_seed_NN` sub-folders (every
    /// seed found is rendered).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Layer to visualize (conv1 … fc8).
    #[arg(long)]
    pub layer: String,
    /// Channels: a list of indices and ranges, e.g. `0-7,12`, or `all`.
    #[arg(long, default_value = "0-7")]
    pub channels: String,
    /// Lucid's threshold: the image after `steps + 1` Adam updates.
    #[arg(long, default_value_t = render::engine::DEFAULT_STEPS)]
    pub steps: u32,
    /// Image side in pixels.
    #[arg(long, default_value_t = render::engine::DEFAULT_SIZE)]
    pub size: usize,
    /// channel, neuron or negative_channel.
    #[arg(long, value_parser = parse_objective, default_value = "channel")]
    pub objective: Objective,
    /// Channels per optimisation (0: all requested channels in one batch).
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Image parameterisation: fft or pixel.
    #[arg(long, value_parser = parse_param, default_value = "fft")]
    pub param: ParamKind,
    /// Skip lucid's colour decorrelation.
    #[arg(long)]
    pub no_decorrelate: bool,
    /// Transforms: standard or none.
    #[arg(long, value_parser = parse_transforms, default_value = "standard")]
    pub transforms: TransformSet,
    /// Adam learning rate.
    #[arg(long, default_value_t = render::engine::DEFAULT_LR)]
    pub lr: f64,
    /// Run seed; with model seed, layer and channel it fixes each image.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Turn off lucid's ReLU gradient redirect of the first 17 updates.
    #[arg(long)]
    pub no_relu_redirect: bool,
    /// Apply the transforms step by step (pad, crop, resize, rotate, crop) instead of as one composed
    /// affine sample.
    #[arg(long)]
    pub unfused_transforms: bool,
    /// Arithmetic precision: fp32, tf32 (TF32 tensor cores on CUDA) or bf16 (the network in
    /// bfloat16); see the README's precision table.
    #[arg(long, value_parser = parse_precision, default_value = "tf32")]
    pub precision: Precision,
    /// Diversity weight (lucid uses 1e2); needs `--copies`.
    #[arg(long, requires = "copies")]
    pub diversity: Option<f64>,
    /// Images per channel with the diversity term.
    #[arg(long, requires = "diversity")]
    pub copies: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Output folder: `<out>/<seed>/<layer>/<channel:04>.png` plus a `.json` sidecar.
    #[arg(long)]
    pub out: PathBuf,
}

/// Parses a snake_case enum value the way the sweep spec spells it.
fn parse_snake<T: serde::de::DeserializeOwned>(
    s: &str,
    expected: &str,
) -> std::result::Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown value {s:?}: expected {expected}"))
}

fn parse_objective(s: &str) -> std::result::Result<Objective, String> {
    parse_snake(s, "channel, neuron or negative_channel")
}

fn parse_param(s: &str) -> std::result::Result<ParamKind, String> {
    parse_snake(s, "fft or pixel")
}

/// Parses `fp32`, `tf32` or `bf16`.
pub fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    parse_snake(s, "fp32, tf32 or bf16")
}

fn parse_transforms(s: &str) -> std::result::Result<TransformSet, String> {
    parse_snake(s, "standard or none")
}

impl RenderArgs {
    /// The engine settings these arguments describe.
    pub fn settings(&self) -> Settings {
        Settings {
            steps: self.steps,
            size: self.size,
            objective: self.objective,
            param: self.param,
            decorrelate: !self.no_decorrelate,
            transforms: self.transforms,
            lr: self.lr,
            run_seed: self.seed,
            relu_redirect: !self.no_relu_redirect,
            fused_transforms: !self.unfused_transforms,
            precision: self.precision,
            diversity: self
                .diversity
                .zip(self.copies)
                .map(|(weight, copies)| Diversity { weight, copies }),
        }
    }
}

/// Per-image metadata written beside each PNG by `render`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ImageMetadata {
    /// Model seed id.
    pub seed: String,
    /// Model file.
    pub model: String,
    /// Layer.
    pub layer: String,
    /// Channel.
    pub channel: usize,
    /// Copy index (diversity option).
    pub copy: usize,
    /// Objective of the initial image.
    pub objective_start: f64,
    /// Objective of the final image.
    pub objective_end: f64,
    /// Adam updates made.
    pub updates: u32,
    /// All settings.
    pub settings: Settings,
    /// Device used.
    pub device: String,
    /// Seconds per image (batch time / batch size).
    pub seconds_per_image: f64,
}

/// Renders the requested channels of every seed found at `--checkpoint` into `--out`.
pub fn render(args: &RenderArgs) -> Result<()> {
    let settings = args.settings();
    let device = args.device.resolve()?;
    let seeds = discover(&args.checkpoint)
        .with_context(|| format!("no model found at {}", args.checkpoint.display()))?;
    for seed in &seeds {
        let file = ModelFile::open(&seed.path)?;
        let model = AlexNet::load(&file, device)
            .with_context(|| format!("failed to load {}", seed.path.display()))?;
        let index = model.layer_index(&args.layer)?;
        let width = model.layer_spec(index).out_channels;
        let channels: Vec<usize> = ChannelSelection::parse(&args.channels)?
            .expand(&args.layer, width)?
            .into_iter()
            .map(|c| c as usize)
            .collect();
        let batch = if args.batch == 0 {
            channels.len()
        } else {
            args.batch
        };
        let dir = args.out.join(&seed.seed).join(&args.layer);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create output folder {}", dir.display()))?;
        for chunk in channels.chunks(batch) {
            let out = render::render_batch(&model, &seed.seed, &args.layer, chunk, &settings)?;
            let per_image = out.seconds / out.images.len() as f64;
            for image in &out.images {
                let stem = if image.copy == 0 {
                    format!("{:04}", image.channel)
                } else {
                    format!("{:04}_{}", image.channel, image.copy)
                };
                let png = encode_png(&image.rgb, image.size, image.size)?;
                let png_path = dir.join(format!("{stem}.png"));
                write_atomic(&png_path, &png)?;
                let meta = ImageMetadata {
                    seed: seed.seed.clone(),
                    model: seed.path.display().to_string(),
                    layer: args.layer.clone(),
                    channel: image.channel,
                    copy: image.copy,
                    objective_start: image.objective_start,
                    objective_end: image.objective_end,
                    updates: settings.updates(),
                    settings: settings.clone(),
                    device: crate::device::describe(device),
                    seconds_per_image: per_image,
                };
                write_atomic(
                    &dir.join(format!("{stem}.json")),
                    &serde_json::to_vec_pretty(&meta)?,
                )?;
                tracing::info!(
                    seed = %seed.seed,
                    layer = %args.layer,
                    channel = image.channel,
                    objective_start = image.objective_start,
                    objective_end = image.objective_end,
                    path = %png_path.display(),
                    "rendered"
                );
            }
            println!(
                "{} {} channels {:?}: {:.3} s/image on {}",
                seed.seed,
                args.layer,
                chunk,
                per_image,
                crate::device::describe(device)
            );
        }
    }
    Ok(())
}

/// Writes `bytes` to a temporary name beside `path`, then renames it: no partial files.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("part")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("failed to rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Writes `seeds` synthetic models as `<out>/training_seed_NN/model.safetensors`: the small demo
/// network, or random weights at the ecoset widths.
pub fn demo_models(out: &Path, seeds: u32, ecoset_widths: bool) -> Result<()> {
    use crate::synthetic::{ECOSET_WIDTHS, demo_filters, write_model, write_random_model};
    for seed in 1..=seeds {
        let path = out
            .join(format!("training_seed_{seed:02}"))
            .join("model.safetensors");
        if ecoset_widths {
            write_random_model(&path, ECOSET_WIDTHS, u64::from(seed))
        } else {
            write_model(&path, &demo_filters(), u64::from(seed))
        }
        .with_context(|| format!("failed to write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
