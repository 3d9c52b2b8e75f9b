//! `lucid-worker bench --probe`: probe images per second per seed and where the time goes — decoding
//! and preparing the files (on every core, as a worker's blocking pool does) against the forward
//! passes through every layer of one seed (on the device, as the render thread does) — and what a
//! whole probe pass of `--probe-total` images through `--seeds` seeds costs when each image is
//! decoded once for all seeds or once per seed.
//!
//! The files are a folder's (`--probe-images`) or generated photograph-like JPEGs of ecoset's usual
//! size (500 × 375), so the decode cost is a photograph's, not a flat test image's.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use lucid_probe::{DecodeLimits, Prepared, Preprocessing};
use tch::Device;

use super::files::{list_files, prepare_file};
use super::{LayerExamples, batch_tensor, probe_batch};
use crate::bench::BenchArgs;

/// Generated files when no folder is given.
const GENERATED_FILES: usize = 96;

/// A probe file: its name and bytes.
type File = (String, Vec<u8>);

/// The report of `bench --probe`, as `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeBenchReport {
    /// The libtorch device (`cpu`, `cuda:0`).
    pub device: String,
    /// What the device is.
    pub device_name: String,
    /// The model's label.
    pub model: String,
    /// Layers every image goes through (all of the model's).
    pub layers: usize,
    /// The prepared side.
    pub side: u32,
    /// Images per forward pass.
    pub batch: usize,
    /// Reading the files.
    pub decode: DecodeBench,
    /// The forward passes of one seed.
    pub forward: ForwardBench,
    /// A whole pass.
    pub estimate: ProbeEstimate,
}

/// Decoding and preparing probe files.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeBench {
    /// Where the files came from.
    pub source: String,
    /// Files decoded per measurement.
    pub files: usize,
    /// Their mean size in bytes.
    pub mean_file_bytes: f64,
    /// Threads of the parallel measurement (the cores available).
    pub threads: usize,
    /// Images decoded and prepared per second on all threads.
    pub images_per_second: f64,
    /// The same on one thread.
    pub one_thread_images_per_second: f64,
}

/// The forward passes of one seed through every layer, with the lists kept.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardBench {
    /// Batches timed.
    pub batches: usize,
    /// Images per second (upload, forward, reduction, read back, lists).
    pub images_per_second: f64,
    /// Milliseconds per batch.
    pub ms_per_batch: f64,
}

/// The cost of `images` probe images through `seeds` seeds on this machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeEstimate {
    /// Probe images.
    pub images: usize,
    /// Seeds.
    pub seeds: usize,
    /// Decoding every image once, on all threads.
    pub decode_seconds: f64,
    /// The forward passes of every seed.
    pub forward_seconds: f64,
    /// Every image decoded once and offered to every seed, decoding not overlapped with the
    /// forward passes (the upper bound).
    pub decode_once_seconds: f64,
    /// Every image decoded again for each seed (one probe task per seed and shard).
    pub decode_per_seed_seconds: f64,
    /// The decoding's share of `decode_per_seed_seconds`.
    pub decode_share_per_seed: f64,
}

/// Runs the probe benchmark, prints its table (or the JSON report).
pub fn bench_probe(args: &BenchArgs) -> Result<ProbeBenchReport> {
    let device = args.device.resolve()?;
    let how = Preprocessing::for_side(args.size as u32);
    let (files, source) = probe_files(args)?;
    let decode = bench_decode(&files, source, how)?;
    let prepared = prepare_all(&files, how)?;
    let opened = crate::open::open_model(&args.checkpoint, &args.network, device)?;
    let net = opened.net.as_ref();
    let batch = match args.batch {
        0 if device.is_cuda() => 256,
        0 => 16,
        n => n,
    };
    let forward = bench_forward(net, &prepared, batch, args.probe_batches, device)?;
    let report = ProbeBenchReport {
        device: crate::device::describe(device),
        device_name: crate::bench::device_name(device),
        model: opened.label.clone(),
        layers: net.layer_count(),
        side: how.side,
        batch,
        estimate: estimate(args.probe_total, args.seeds, &decode, &forward),
        decode,
        forward,
    };
    print_report(&report, args.json)?;
    Ok(report)
}

/// The files' bytes: a folder's (`--probe-images`) or generated ones.
fn probe_files(args: &BenchArgs) -> Result<(Vec<File>, String)> {
    let Some(folder) = &args.probe_images else {
        let files = (0..GENERATED_FILES)
            .map(|i| {
                let bytes = lucid_probe::stimuli::photo_like_jpeg(500, 375, i as u64);
                (format!("photo-{i:03}.jpg"), bytes)
            })
            .collect();
        return Ok((
            files,
            "generated 500 x 375 photograph-like JPEGs (quality 90)".into(),
        ));
    };
    let names = list_files(folder)?;
    let files = names
        .into_iter()
        .map(|name| {
            let path = folder.join(&name);
            let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            Ok((name, bytes))
        })
        .collect::<Result<Vec<_>>>()?;
    if files.is_empty() {
        bail!("--probe-images {} holds no files", folder.display());
    }
    Ok((files, folder.display().to_string()))
}

/// Every file decoded and prepared on `threads` threads; the seconds it took.
fn decode_on(files: &[File], how: Preprocessing, threads: usize) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let failures: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = 0;
                    while let Some((name, bytes)) = files.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        failed += usize::from(
                            prepare_file(name, bytes, how, DecodeLimits::default()).is_err(),
                        );
                    }
                    failed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(1)).sum()
    });
    let seconds = started.elapsed().as_secs_f64();
    if failures == files.len() {
        bail!("no probe file could be decoded");
    }
    Ok(seconds)
}

fn bench_decode(files: &[File], source: String, how: Preprocessing) -> Result<DecodeBench> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let one = decode_on(files, how, 1)?;
    let all = decode_on(files, how, threads)?;
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    Ok(DecodeBench {
        source,
        files: files.len(),
        mean_file_bytes: bytes as f64 / files.len() as f64,
        threads,
        images_per_second: files.len() as f64 / all.max(1e-9),
        one_thread_images_per_second: files.len() as f64 / one.max(1e-9),
    })
}

/// The usable files prepared, for the forward passes.
fn prepare_all(files: &[File], how: Preprocessing) -> Result<Vec<Prepared>> {
    let prepared: Vec<Prepared> = files
        .iter()
        .filter_map(|(name, bytes)| prepare_file(name, bytes, how, DecodeLimits::default()).ok())
        .collect();
    if prepared.is_empty() {
        bail!("no probe file could be decoded");
    }
    Ok(prepared)
}

/// `batches` batches of `batch` images (the prepared ones, cycled) through every layer, after one
/// untimed batch.
fn bench_forward(
    net: &dyn crate::render::net::RenderNet,
    prepared: &[Prepared],
    batch: usize,
    batches: usize,
    device: Device,
) -> Result<ForwardBench> {
    let images: Vec<Prepared> = prepared.iter().cycle().take(batch).cloned().collect();
    let indices: Vec<usize> = (0..net.layer_count()).collect();
    let mut layers: Vec<LayerExamples> = indices
        .iter()
        .map(|&i| LayerExamples::new(net, i, 9))
        .collect();
    let mut run = |first: u32| -> Result<()> {
        let tensor = batch_tensor(&images, device);
        probe_batch(net, &tensor, first, &mut layers)?;
        Ok(())
    };
    run(0)?;
    let started = Instant::now();
    for b in 0..batches.max(1) {
        run(((b + 1) * batch) as u32)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let batches = batches.max(1);
    Ok(ForwardBench {
        batches,
        images_per_second: (batches * batch) as f64 / seconds.max(1e-9),
        ms_per_batch: seconds * 1e3 / batches as f64,
    })
}

fn estimate(
    images: usize,
    seeds: usize,
    decode: &DecodeBench,
    forward: &ForwardBench,
) -> ProbeEstimate {
    let decode_seconds = images as f64 / decode.images_per_second.max(1e-9);
    let forward_seconds = (images * seeds) as f64 / forward.images_per_second.max(1e-9);
    let per_seed = decode_seconds * seeds as f64 + forward_seconds;
    ProbeEstimate {
        images,
        seeds,
        decode_seconds,
        forward_seconds,
        decode_once_seconds: decode_seconds + forward_seconds,
        decode_per_seed_seconds: per_seed,
        decode_share_per_seed: decode_seconds * seeds as f64 / per_seed.max(1e-9),
    }
}

fn print_report(report: &ProbeBenchReport, json: bool) -> Result<()> {
    let mut out: Box<dyn std::io::Write> = if json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let (d, f, e) = (&report.decode, &report.forward, &report.estimate);
    writeln!(
        out,
        "probe bench on {} ({}), {} layers of {} at {} px, batch {}",
        report.device_name, report.device, report.layers, report.model, report.side, report.batch
    )?;
    writeln!(
        out,
        "decode + prepare: {:.1} images/s on {} threads ({:.1} on one), {} files of {:.0} KB ({})",
        d.images_per_second,
        d.threads,
        d.one_thread_images_per_second,
        d.files,
        d.mean_file_bytes / 1e3,
        d.source
    )?;
    writeln!(
        out,
        "forward, every layer: {:.1} images/s per seed ({:.1} ms per batch)",
        f.images_per_second, f.ms_per_batch
    )?;
    writeln!(
        out,
        "{} images x {} seeds: decode once {:.0} s ({:.0} s decoding + {:.0} s forward); \
         decode per seed {:.0} s (decoding {:.0}%)",
        e.images,
        e.seeds,
        e.decode_once_seconds,
        e.decode_seconds,
        e.forward_seconds,
        e.decode_per_seed_seconds,
        e.decode_share_per_seed * 100.0
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(())
}
