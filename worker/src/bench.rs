//! `lucid-worker bench`: images/s of the render engine and where the time goes.
//!
//! Throughput is measured on free-running updates (one device synchronisation at the end); the phase
//! breakdown comes from a separate run that synchronises after every phase, so its total is a little
//! higher. Rates are scaled to the full `steps + 1` updates of one image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use lucid_checkpoint::{ModelFile, discover};
use tch::Device;

use crate::device::DeviceChoice;
use crate::encode::encode_png;
use crate::model::AlexNet;
use crate::render::engine::{NoClock, Optimisation, Phase, PhaseClock};
use crate::render::{Settings, TransformSet};

/// Arguments of `lucid-worker bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A checkpoint prefix, `.safetensors` file or model folder (the first seed is used).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Layer to benchmark; ignored with `--all-layers`.
    #[arg(long, default_value = "conv5")]
    pub layer: String,
    /// Benchmark every layer and estimate a full sweep's wall time on this device.
    #[arg(long)]
    pub all_layers: bool,
    /// Channels per optimisation (0: chosen from free GPU memory, 16 on CPU).
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Lucid threshold the rates are scaled to (512 → 513 updates per image).
    #[arg(long, default_value_t = 512)]
    pub steps: u32,
    /// Updates timed per measurement.
    #[arg(long, default_value_t = 40)]
    pub updates: usize,
    /// Untimed warm-up updates (covers the 11 input shapes of the random scale).
    #[arg(long, default_value_t = 30)]
    pub warmup: usize,
    /// Number of seeds the sweep estimate assumes.
    #[arg(long, default_value_t = 10)]
    pub seeds: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Let cuDNN time its algorithms per input shape.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cudnn_benchmark: bool,
    /// Apply the transforms step by step instead of as one composed affine sample.
    #[arg(long)]
    pub unfused_transforms: bool,
    /// Keep activations NCHW on CUDA instead of channels-last.
    #[arg(long)]
    pub no_channels_last: bool,
    /// Run conv1 as its strided convolution on CUDA instead of space-to-depth; `--space-to-depth`
    /// turns space-to-depth on for the CPU.
    #[arg(long, conflicts_with = "space_to_depth")]
    pub no_space_to_depth: bool,
    /// Run conv1 space-to-depth on the CPU too (on by default on CUDA).
    #[arg(long)]
    pub space_to_depth: bool,
    /// Arithmetic precision: fp32, tf32 or bf16.
    #[arg(long, value_parser = crate::cli::parse_precision, default_value = "tf32")]
    pub precision: lucid_proto::spec::Precision,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One layer's measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerBench {
    /// Layer name.
    pub layer: String,
    /// Channels of the layer.
    pub channels: usize,
    /// Images per optimisation.
    pub batch: usize,
    /// Images per second at the full step count.
    pub images_per_second: f64,
    /// Milliseconds per update of the whole batch (free-running).
    pub ms_per_update: f64,
    /// Milliseconds per update in each phase (synchronised run).
    pub phase_ms: Vec<(String, f64)>,
    /// Seconds to build the batch's initial variables and upload them.
    pub init_seconds: f64,
    /// Seconds to read the final images back.
    pub readback_seconds: f64,
    /// Milliseconds to PNG-encode one image (one CPU core).
    pub png_ms_per_image: f64,
    /// Milliseconds to write one PNG + sidecar to a local folder (temp name + rename).
    pub store_ms_per_image: f64,
}

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Device description.
    pub device: String,
    /// Settings used.
    pub size: usize,
    /// Lucid threshold.
    pub steps: u32,
    /// Arithmetic precision.
    pub precision: lucid_proto::spec::Precision,
    /// Whether activations ran channels-last.
    pub channels_last: bool,
    /// Whether conv1 ran space-to-depth.
    pub space_to_depth: bool,
    /// Per-layer results.
    pub layers: Vec<LayerBench>,
    /// Estimated wall time of the whole sweep (all layers × seeds) on one device, in minutes.
    pub sweep_minutes: Option<f64>,
    /// Images in that sweep.
    pub sweep_images: Option<usize>,
}

struct SyncClock {
    device: Device,
    last: Instant,
    totals: Vec<(Phase, f64)>,
}

impl SyncClock {
    fn new(device: Device) -> Self {
        Self {
            device,
            last: Instant::now(),
            totals: Vec::new(),
        }
    }
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

impl PhaseClock for SyncClock {
    fn mark(&mut self, phase: Phase) {
        synchronize(self.device);
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        match self.totals.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, t)) => *t += dt,
            None => self.totals.push((phase, dt)),
        }
    }
}

/// Runs the benchmark and prints a table.
pub fn bench(args: &BenchArgs) -> Result<BenchReport> {
    let device = args.device.resolve()?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(args.cudnn_benchmark);
    }
    let seeds = discover(&args.checkpoint)
        .with_context(|| format!("no model found at {}", args.checkpoint.display()))?;
    let seed = seeds.first().context("no seed found")?;
    let file = ModelFile::open(&seed.path)?;
    let mut model = AlexNet::load(&file, device)?;
    model.set_channels_last(device.is_cuda() && !args.no_channels_last);
    model.set_space_to_depth((device.is_cuda() || args.space_to_depth) && !args.no_space_to_depth);
    let settings = Settings {
        steps: args.steps,
        size: args.size,
        transforms: TransformSet::Standard,
        fused_transforms: !args.unfused_transforms,
        precision: args.precision,
        ..Settings::lucid()
    };
    let layers: Vec<String> = if args.all_layers {
        model.spec().layers.iter().map(|l| l.name.clone()).collect()
    } else {
        vec![args.layer.clone()]
    };
    let mut results = Vec::new();
    println!(
        "{:<6} {:>6} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "layer", "chans", "batch", "img/s", "ms/upd", "param", "fwd", "bwd", "adam", "png", "store"
    );
    for layer in &layers {
        let r = bench_layer(&model, &seed.seed, layer, &settings, args, device)?;
        let phase = |name: &str| {
            r.phase_ms
                .iter()
                .find(|(p, _)| p == name)
                .map_or(0.0, |(_, v)| *v)
        };
        println!(
            "{:<6} {:>6} {:>6} {:>9.2} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7.2} {:>7.2}",
            r.layer,
            r.channels,
            r.batch,
            r.images_per_second,
            r.ms_per_update,
            phase("param+transforms"),
            phase("forward"),
            phase("backward"),
            phase("optimiser"),
            r.png_ms_per_image,
            r.store_ms_per_image
        );
        results.push(r);
    }
    let (sweep_minutes, sweep_images) = if args.all_layers {
        let images: usize = results.iter().map(|r| r.channels).sum::<usize>() * args.seeds;
        let seconds: f64 = results
            .iter()
            .map(|r| (r.channels * args.seeds) as f64 / r.images_per_second)
            .sum();
        println!(
            "estimated sweep: {images} images ({} seeds) in {:.1} min on {}",
            args.seeds,
            seconds / 60.0,
            crate::device::describe(device)
        );
        (Some(seconds / 60.0), Some(images))
    } else {
        (None, None)
    };
    let report = BenchReport {
        device: crate::device::describe(device),
        precision: args.precision,
        channels_last: model.channels_last(),
        space_to_depth: model.space_to_depth(),
        size: args.size,
        steps: args.steps,
        layers: results,
        sweep_minutes,
        sweep_images,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(report)
}

/// Picks a batch size: the requested one, 16 on CPU, or what fits in 70% of free GPU memory after a
/// probe of 16 images (capped at 512).
pub fn choose_batch(
    requested: usize,
    model: &AlexNet,
    layer: &str,
    settings: &Settings,
) -> Result<usize> {
    if requested > 0 {
        return Ok(requested);
    }
    let device = model.device();
    let Device::Cuda(_) = device else {
        return Ok(16);
    };
    let Some((free_before, _)) = crate::device::cuda_memory() else {
        return Ok(128);
    };
    let probe = 16usize;
    let layer_width = width(model, layer).unwrap_or(1).max(1);
    let channels: Vec<usize> = (0..probe).map(|i| i % layer_width).collect();
    let mut run = Optimisation::new(model, "probe", layer, &channels, settings)?;
    for u in 0..3 {
        run.update(u, &mut NoClock)?;
    }
    synchronize(device);
    let (free_after, _) = crate::device::cuda_memory().unwrap_or((free_before, 0));
    drop(run);
    let per_image = (free_before.saturating_sub(free_after) / probe as u64).max(1 << 20);
    let fit = (free_before as f64 * 0.7 / per_image as f64) as usize;
    Ok(fit.clamp(16, 512))
}

fn width(model: &AlexNet, layer: &str) -> Option<usize> {
    model
        .layer_index(layer)
        .ok()
        .map(|i| model.layer_spec(i).out_channels)
}

fn bench_layer(
    model: &AlexNet,
    seed: &str,
    layer: &str,
    settings: &Settings,
    args: &BenchArgs,
    device: Device,
) -> Result<LayerBench> {
    let channels_in_layer =
        width(model, layer).with_context(|| format!("unknown layer {layer}"))?;
    let batch = choose_batch(args.batch, model, layer, settings)?;
    let channels: Vec<usize> = (0..batch).map(|i| i % channels_in_layer).collect();

    let t = Instant::now();
    let mut run = Optimisation::new(model, seed, layer, &channels, settings)?;
    synchronize(device);
    let init_seconds = t.elapsed().as_secs_f64();
    for u in 0..args.warmup {
        run.update(u, &mut NoClock)?;
    }
    synchronize(device);
    let t = Instant::now();
    for u in 0..args.updates {
        run.update(args.warmup + u, &mut NoClock)?;
    }
    synchronize(device);
    let per_update = t.elapsed().as_secs_f64() / args.updates as f64;

    let mut clock = SyncClock::new(device);
    let phased = args.updates.clamp(1, 20);
    for u in 0..phased {
        run.update(args.warmup + args.updates + u, &mut clock)?;
    }
    let phase_ms = clock
        .totals
        .iter()
        .map(|(p, t)| {
            let name = match p {
                Phase::ParamTransforms => "param+transforms",
                Phase::Forward => "forward",
                Phase::Backward => "backward",
                Phase::Optimiser => "optimiser",
            };
            (name.to_string(), t * 1000.0 / phased as f64)
        })
        .collect();

    let t = Instant::now();
    let images = run.finish(vec![0.0; batch])?;
    let readback_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut pngs = Vec::with_capacity(images.len());
    for image in &images {
        pngs.push(encode_png(&image.rgb, image.size, image.size)?);
    }
    let png_ms_per_image = t.elapsed().as_secs_f64() * 1000.0 / images.len() as f64;

    let dir = tempfile::tempdir().context("failed to create a temporary folder")?;
    let t = Instant::now();
    for (i, png) in pngs.iter().enumerate() {
        crate::cli::write_atomic(&dir.path().join(format!("{i:04}.png")), png)?;
        crate::cli::write_atomic(&dir.path().join(format!("{i:04}.json")), b"{}")?;
    }
    let store_ms_per_image = t.elapsed().as_secs_f64() * 1000.0 / images.len() as f64;

    let updates_per_image = f64::from(settings.updates());
    let images_per_second =
        batch as f64 / (per_update * updates_per_image + (init_seconds + readback_seconds));
    Ok(LayerBench {
        layer: layer.to_string(),
        channels: channels_in_layer,
        batch,
        images_per_second,
        ms_per_update: per_update * 1000.0,
        phase_ms,
        init_seconds,
        readback_seconds,
        png_ms_per_image,
        store_ms_per_image,
    })
}
