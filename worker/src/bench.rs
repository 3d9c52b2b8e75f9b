//! `lucid-worker bench`: images/s of the render engine and where the time goes.
//!
//! Throughput is measured on free-running updates (one device synchronisation at the end); the phase
//! breakdown comes from a separate run that synchronises after every phase, so its total is a little
//! higher. Rates are scaled to the full `steps + 1` updates of one image.
//!
//! The table goes to stdout; with `--json` stdout gets one [`BenchReport`] document instead (the table
//! then goes to stderr). `--all-layers --rates-out FILE` also writes the measured images/s per layer as
//! a rates file ([`lucid_proto::rates`]), which `lucid-coordinator plan --rates FILE` reads to estimate
//! a sweep's GPU time on this device.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use lucid_proto::rates::{LayerRate, RATES_SCHEMA_VERSION, RatesFile};
use lucid_proto::spec::RenderSettings;
use lucid_proto::{LayerName, View};
use tch::Device;

use crate::device::DeviceChoice;
use crate::encode::encode_png;
use crate::layout::Layout;
use crate::pipeline::engine_settings;
use crate::render::Settings;
use crate::render::engine::{NoClock, Optimisation, Phase, PhaseClock};
use crate::render::net::RenderNet;

/// Arguments of `lucid-worker bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A checkpoint prefix, `.safetensors` file or model folder (the first model found is used).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The network: `alexnet_v2` (the native network, with its speed paths), another built-in name
    /// or `.toml` description (docs/networks.md), or `torchscript` with `--checkpoint` an export
    /// folder.
    #[arg(long, default_value = lucid_proto::spec::DEFAULT_NETWORK)]
    pub network: String,
    /// Layer to benchmark; ignored with `--all-layers`.
    #[arg(long, default_value = "conv5")]
    pub layer: String,
    /// The view rendered: channel, negative_channel, neuron or diversity:N (its copies count as
    /// images, so the rate is images per second whatever the view).
    #[arg(long, default_value = "channel")]
    pub view: View,
    /// λ of a diversity view.
    #[arg(long, default_value_t = lucid_proto::spec::render_defaults::DEFAULT_DIVERSITY_WEIGHT)]
    pub diversity_weight: f64,
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
    /// Make each Adam update the direct form's seven elementwise passes instead of libtorch's fused
    /// kernel.
    #[arg(long)]
    pub unfused_adam: bool,
    /// Keep activations NCHW on CUDA instead of channels-last.
    #[arg(long)]
    pub no_channels_last: bool,
    /// Run strided convolutions over few channels (alexnet_v2's conv1, a ResNet stem) directly on
    /// CUDA instead of space-to-depth; `--space-to-depth` turns space-to-depth on for the CPU.
    #[arg(long, conflicts_with = "space_to_depth")]
    pub no_space_to_depth: bool,
    /// Run space-to-depth on the CPU too (on by default on CUDA).
    #[arg(long)]
    pub space_to_depth: bool,
    /// Arithmetic precision: fp32, tf32 or bf16.
    #[arg(long, value_parser = crate::cli::parse_precision, default_value = "tf32")]
    pub precision: lucid_proto::spec::Precision,
    /// Print the results as one JSON document on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the measured images/s per layer as a rates file for `lucid-coordinator plan --rates`.
    #[arg(long, value_name = "FILE", requires = "all_layers")]
    pub rates_out: Option<PathBuf>,
    /// Benchmark the probe pass instead of renders: decoding on every core, the forward passes of
    /// every layer, and a whole pass's estimate ([`crate::probe::bench`]); `--size` is the probe
    /// side, `--batch` the images per forward pass (0: 256 on CUDA, 16 on CPU).
    #[arg(long, conflicts_with_all = ["all_layers", "rates_out"])]
    pub probe: bool,
    /// The probe benchmark's files: every file below this folder (default: generated
    /// photograph-like JPEGs).
    #[arg(long, requires = "probe")]
    pub probe_images: Option<PathBuf>,
    /// Forward batches the probe benchmark times.
    #[arg(long, default_value_t = 8)]
    pub probe_batches: usize,
    /// Probe images the probe benchmark's estimate is for (with `--seeds`).
    #[arg(long, default_value_t = 50_000)]
    pub probe_total: usize,
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

/// The whole report, as `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The libtorch device (`cpu`, `cuda:0`).
    pub device: String,
    /// What the device is (`NVIDIA H200`, `cpu: AMD EPYC 7B13`), as the rates file records it.
    pub device_name: String,
    /// Image side in pixels.
    pub size: usize,
    /// Lucid threshold.
    pub steps: u32,
    /// Arithmetic precision.
    pub precision: lucid_proto::spec::Precision,
    /// The view rendered.
    pub view: String,
    /// Whether activations ran channels-last.
    pub channels_last: bool,
    /// Whether a convolution ran space-to-depth.
    pub space_to_depth: bool,
    /// Per-layer results.
    pub layers: Vec<LayerBench>,
    /// Estimated wall time of the whole sweep (all layers × seeds) on one device, in minutes.
    pub sweep_minutes: Option<f64>,
    /// Images in that sweep.
    pub sweep_images: Option<usize>,
}

impl BenchReport {
    /// The measured rates as a rates file, dated today (UTC).
    pub fn rates_file(&self) -> Result<RatesFile> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerRate {
                    layer: LayerName::new(l.layer.as_str())?,
                    batch: u32::try_from(l.batch).context("batch too large for a rates file")?,
                    images_per_second: l.images_per_second,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let file = RatesFile {
            schema_version: RATES_SCHEMA_VERSION,
            device: self.device_name.clone(),
            precision: self.precision,
            steps: self.steps,
            size: u32::try_from(self.size).context("size too large for a rates file")?,
            date: crate::pipeline::rfc3339_now()[..10].to_owned(),
            code_version: crate::pipeline::CODE_VERSION.to_owned(),
            note: None,
            layers,
        };
        file.validate()
            .context("the measured rates do not make a valid rates file")?;
        Ok(file)
    }
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

/// What the device is: the GPU's name from `nvidia-smi` (the CUDA index mapped through
/// `CUDA_VISIBLE_DEVICES`), or the CPU's model name; the libtorch device string when neither is known.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => {
            let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
            let id = visible
                .as_deref()
                .and_then(|v| v.split(',').nth(i).map(|s| s.trim().to_owned()))
                .unwrap_or_else(|| i.to_string());
            std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=name", "--format=csv,noheader", "-i", &id])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| {
                    let text = String::from_utf8_lossy(&o.stdout);
                    text.lines().next().map(|l| l.trim().to_owned())
                })
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| crate::device::describe(device))
        }
        Device::Cpu => std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, model)| format!("cpu: {}", model.trim()))
            })
            .unwrap_or_else(|| "cpu".to_owned()),
        other => crate::device::describe(other),
    }
}

/// The device's layout with the command line's overrides.
fn layout(args: &BenchArgs, device: Device) -> Layout {
    let default = Layout::for_device(device);
    Layout {
        channels_last: default.channels_last && !args.no_channels_last,
        space_to_depth: (default.space_to_depth || args.space_to_depth) && !args.no_space_to_depth,
    }
}

/// The model (laid out as [`layout`] says) and settings a benchmark runs with.
fn load(args: &BenchArgs, device: Device) -> Result<(Box<dyn RenderNet>, String, Settings)> {
    let mut opened = crate::open::open_model(&args.checkpoint, &args.network, device)?;
    opened.net.set_layout(layout(args, device));
    Ok((opened.net, opened.label, bench_settings(args)))
}

/// The settings of a task of `--view` with the benchmark's steps, size and switches: the same
/// conversion a worker applies to a task ([`engine_settings`]).
fn bench_settings(args: &BenchArgs) -> Settings {
    let task = RenderSettings {
        steps: args.steps,
        size: args.size as u32,
        transforms: lucid_proto::spec::Transforms::Standard,
        fused_transforms: !args.unfused_transforms,
        precision: args.precision,
        diversity_weight: args.diversity_weight,
        ..RenderSettings::default()
    };
    Settings {
        fused_adam: !args.unfused_adam,
        ..engine_settings(&task, args.view)
    }
}

/// Runs the benchmark, prints the table (or the JSON report) and writes the rates file if asked.
pub fn bench(args: &BenchArgs) -> Result<BenchReport> {
    let device = args.device.resolve()?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(args.cudnn_benchmark);
    }
    let (loaded, model_id, settings) = load(args, device)?;
    let model = loaded.as_ref();
    let layers: Vec<String> = if args.all_layers {
        (0..model.layer_count())
            .map(|i| model.layer_name(i).to_owned())
            .collect()
    } else {
        vec![args.layer.clone()]
    };
    // the table is for people: on stderr when stdout carries the JSON document
    let mut table: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    writeln!(
        table,
        "{:<6} {:>6} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "layer", "chans", "batch", "img/s", "ms/upd", "param", "fwd", "bwd", "adam", "png", "store"
    )?;
    let mut results = Vec::new();
    for layer in &layers {
        let r = bench_layer(model, &model_id, layer, &settings, args, device)?;
        print_row(&mut table, &r)?;
        results.push(r);
    }
    let mut report = BenchReport {
        device: crate::device::describe(device),
        device_name: device_name(device),
        precision: args.precision,
        view: args.view.to_string(),
        channels_last: model.layout().channels_last,
        space_to_depth: model.layout().space_to_depth,
        size: args.size,
        steps: args.steps,
        layers: results,
        sweep_minutes: None,
        sweep_images: None,
    };
    if args.all_layers {
        let images: usize = report.layers.iter().map(|r| r.channels).sum::<usize>() * args.seeds;
        let seconds: f64 = report
            .layers
            .iter()
            .map(|r| (r.channels * args.seeds) as f64 / r.images_per_second)
            .sum();
        writeln!(
            table,
            "estimated sweep: {images} images ({} seeds) in {:.1} min on {}",
            args.seeds,
            seconds / 60.0,
            report.device_name
        )?;
        report.sweep_minutes = Some(seconds / 60.0);
        report.sweep_images = Some(images);
    }
    if let Some(path) = &args.rates_out {
        let rates = report.rates_file()?;
        write_atomic(path, rates.encode().as_bytes())
            .with_context(|| format!("failed to write rates file {}", path.display()))?;
        writeln!(table, "rates: {} ({})", path.display(), rates.label())?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report)
}

/// One row of the table.
fn print_row(out: &mut dyn Write, r: &LayerBench) -> std::io::Result<()> {
    let phase = |name: &str| {
        r.phase_ms
            .iter()
            .find(|(p, _)| p == name)
            .map_or(0.0, |(_, v)| *v)
    };
    writeln!(
        out,
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
    )
}

/// Picks a batch size: the requested one, 16 on CPU, or what fits in 70% of free GPU memory after a
/// probe of 16 images (capped at 512).
pub fn choose_batch(
    requested: usize,
    model: &dyn RenderNet,
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

fn width(model: &dyn RenderNet, layer: &str) -> Option<usize> {
    model.layer_index(layer).ok().map(|i| model.layer_width(i))
}

fn bench_layer(
    model: &dyn RenderNet,
    model_id: &str,
    layer: &str,
    settings: &Settings,
    args: &BenchArgs,
    device: Device,
) -> Result<LayerBench> {
    let channels_in_layer =
        width(model, layer).with_context(|| format!("unknown layer {layer}"))?;
    let requested = choose_batch(args.batch, model, layer, settings)?;
    // a view with copies optimises `copies` images per channel: the batch counts images
    let copies = settings.diversity.map_or(1, |d| d.copies);
    let units = (requested / copies).max(1);
    let channels: Vec<usize> = (0..units).map(|i| i % channels_in_layer).collect();
    let batch = units * copies;

    let t = Instant::now();
    let mut run = Optimisation::new(model, model_id, layer, &channels, settings)?;
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

    let (png_ms_per_image, store_ms_per_image) = time_output(&images)?;

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

/// Milliseconds per image to PNG-encode `images` and to write each PNG with a sidecar to a local
/// folder (temp name + rename).
fn time_output(images: &[crate::render::engine::RenderedImage]) -> Result<(f64, f64)> {
    let per_image = |t: Instant| t.elapsed().as_secs_f64() * 1000.0 / images.len().max(1) as f64;
    let t = Instant::now();
    let mut pngs = Vec::with_capacity(images.len());
    for image in images {
        pngs.push(encode_png(&image.rgb, image.size, image.size)?);
    }
    let png_ms = per_image(t);

    let dir = tempfile::tempdir().context("failed to create a temporary folder")?;
    let t = Instant::now();
    for (i, png) in pngs.iter().enumerate() {
        write_atomic(&dir.path().join(format!("{i:04}.png")), png)?;
        write_atomic(&dir.path().join(format!("{i:04}.json")), b"{}")?;
    }
    Ok((png_ms, per_image(t)))
}

/// Writes `bytes` to a temporary name beside `path`, then renames it: no partial files.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("part")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("failed to rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
