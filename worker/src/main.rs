//! `lucid-worker`: inspect model files and render feature visualizations.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lucid_worker::cli;

/// The lucid-sweep GPU worker.
#[derive(Debug, Parser)]
#[command(name = "lucid-worker", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print each model's layers (kernel, stride, channels) and the channel totals.
    Inspect {
        /// A checkpoint prefix, a `.safetensors` file or a folder of `training_seed_NN` sub-folders.
        path: PathBuf,
        /// Print one JSON document on stdout instead of the table (schema: lucid_worker::inspect).
        #[arg(long)]
        json: bool,
        /// The network: a built-in name, a `.toml` description file (docs/networks.md), or
        /// `torchscript` with PATH a `lucid-export` folder.
        #[arg(long, default_value = lucid_network::builtin::ALEXNET_V2)]
        network: String,
    },
    /// Render channels of one layer to a folder: a one-layer `local` run (sidecars, run.json).
    Render(Box<cli::RenderArgs>),
    /// Run a whole sweep on this machine: in-process queue, results in a local folder, then a gallery.
    Local(Box<LocalArgs>),
    /// Consume render tasks from RabbitMQ and store the images in S3 (the GPU worker of a sweep).
    Serve(Box<ServeArgs>),
    /// Measure images/s and the time per phase (add `--all-layers` for a sweep estimate).
    Bench(Box<lucid_worker::bench::BenchArgs>),
    /// Probe one model with a folder of images: each channel's dataset examples (top and bottom by
    /// spatial mean, top maxima with their receptive-field crops) and the images x channels means.
    Probe(Box<lucid_worker::probe::command::ProbeArgs>),
    /// Write the generated probe stimuli (gratings at eight orientations, colour fields) into a
    /// folder: the demo's probe set, whose known answers the demo models' examples show.
    DemoProbeSet {
        /// Output folder (created).
        out: PathBuf,
    },
    /// Write the synthetic demo models (Gabor and colour-opponent first layers) under a folder.
    DemoModels {
        /// Output folder; gets `training_seed_NN/model.safetensors`.
        out: PathBuf,
        /// Number of seeds.
        #[arg(long, default_value_t = 2)]
        seeds: u32,
        /// Random weights at the ecoset AlexNet's widths (64 … 4096, 565) instead of the small demo
        /// network: for benchmarks (194 MB per seed; not committed).
        #[arg(long)]
        ecoset_widths: bool,
    },
}

/// Arguments of `lucid-worker local`.
#[derive(Debug, clap::Args)]
struct LocalArgs {
    /// The sweep spec (TOML); its queue and storage sections are not used.
    #[arg(long)]
    spec: PathBuf,
    /// Overrides `key=value`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Result folder (same layout as the S3 bucket); default `storage.local_dir` or `out`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: lucid_worker::device::DeviceChoice,
    /// Images per optimisation (0: render.batch from the spec, else 256 on CUDA and 8 on the CPU).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Skip building the HTML gallery at the end.
    #[arg(long)]
    no_gallery: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the run's summary as one JSON document on stdout (`LocalSummary`) instead of prose.
    #[arg(long)]
    json: bool,
}

fn load_spec(
    path: &std::path::Path,
    set: &[String],
) -> anyhow::Result<lucid_proto::spec::SweepSpec> {
    use anyhow::Context;
    let overrides = lucid_proto::spec::parse_overrides(set)?;
    lucid_proto::spec::SweepSpec::load(Some(path), "LUCID", &overrides)
        .with_context(|| format!("invalid sweep spec {}", path.display()))
}

fn batch_size(
    requested: usize,
    spec: &lucid_proto::spec::SweepSpec,
    device: lucid_worker::device::DeviceChoice,
) -> usize {
    match (requested, spec.render.batch) {
        (0, 0) => {
            if device.resolve().map(|d| d.is_cuda()).unwrap_or(false) {
                256
            } else {
                8
            }
        }
        (0, b) => b as usize,
        (b, _) => b,
    }
}

fn local(args: &LocalArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let spec = load_spec(&args.spec, &args.set)?;
    let out = args
        .out
        .clone()
        .or_else(|| spec.storage.local_dir.clone())
        .unwrap_or_else(|| PathBuf::from("out"));
    let config = lucid_worker::local::LocalConfig {
        batch: batch_size(args.batch, &spec, args.device),
        spec,
        out,
        device: args.device,
        gallery: !args.no_gallery,
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    run_local(config, args.json)
}

/// `render`: the same run as `local`, on the one-layer spec its arguments describe.
fn render(args: &cli::RenderArgs) -> anyhow::Result<()> {
    let spec = args.spec()?;
    let config = lucid_worker::local::LocalConfig {
        batch: batch_size(args.batch, &spec, args.device),
        spec,
        out: args.out.clone(),
        device: args.device,
        gallery: args.gallery,
        progress: false,
    };
    run_local(config, args.json)
}

/// Runs `config` to its end and reports it: the summary (as JSON or prose), then a non-zero exit
/// when it was interrupted or tasks failed.
fn run_local(config: lucid_worker::local::LocalConfig, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    let summary = runtime.block_on(lucid_worker::local::run(
        config,
        lucid_telemetry::shutdown_signal(),
    ))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    if summary.interrupted {
        anyhow::bail!("interrupted; run the same command again to resume");
    }
    if let Some(file) = &summary.dead_letters_file {
        let mut failed = Vec::new();
        if !summary.dead_lettered.is_empty() {
            let (dead, expected) = (summary.dead_lettered.len(), summary.expected);
            failed.push(format!("{dead} of {expected} task(s)"));
        }
        let dead_probes = summary
            .probe
            .as_ref()
            .filter(|p| !p.dead_lettered.is_empty());
        if let Some(probe) = dead_probes {
            let (dead, expected) = (probe.dead_lettered.len(), probe.expected);
            failed.push(format!("{dead} of {expected} probe shard task(s)"));
        }
        let unmerged = if dead_probes.is_some() {
            ", so no examples were merged"
        } else {
            ""
        };
        anyhow::bail!(
            "{} failed{unmerged}; their reasons are in {}; run the same command again to retry them",
            failed.join(" and "),
            file.display()
        );
    }
    Ok(())
}

fn print_summary(summary: &lucid_worker::local::LocalSummary) {
    println!(
        "{} of {} images stored ({} already there, {} rendered now)",
        summary.already_stored + summary.rendered,
        summary.expected,
        summary.already_stored,
        summary.rendered
    );
    if summary.rendered > 0 {
        println!(
            "{:.2} images/s over {:.1} s; the render thread was busy {:.0}% of the time (device idle {:.0}%)",
            summary.rendered as f64 / summary.seconds,
            summary.seconds,
            summary.render_busy_share * 100.0,
            (1.0 - summary.render_busy_share) * 100.0
        );
    }
    for letter in &summary.dead_lettered {
        eprintln!("failed: {}: {}", letter.task_id, letter.reason);
    }
    if let Some(probe) = &summary.probe {
        println!(
            "probe: {} of {} shard tasks were stored before, {} images probed now ({} files read)",
            probe.already_stored, probe.expected, probe.probed_images, probe.files_read
        );
        if let Some(merged) = &probe.merged {
            print!("{merged}");
        }
        if let Some(matched) = &probe.matched {
            print!("match: {matched}");
        }
        for letter in &probe.dead_lettered {
            eprintln!("failed: {}: {}", letter.task_id, letter.reason);
        }
    }
    if let Some(index) = &summary.gallery {
        println!("gallery: {}", index.display());
    }
}

/// Arguments of `lucid-worker serve`. Credentials never come from flags: the AMQP URI from
/// `LUCID_AMQP_URI` or `queue.uri_file`, S3 keys from `LUCID_S3_ACCESS_KEY_ID` /
/// `LUCID_S3_SECRET_ACCESS_KEY` or `storage.credentials_file`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The sweep spec (TOML); `LUCID__SECTION__KEY` environment variables override it.
    #[arg(long)]
    spec: PathBuf,
    /// Overrides `key=value` (e.g. `queue.tasks=lucid.tasks.test`); refused for credentials.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:9186")]
    listen: std::net::SocketAddr,
    /// Seconds shutdown may take to finish and store the batches in flight.
    #[arg(long, default_value_t = 600)]
    drain_timeout_secs: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: lucid_worker::device::DeviceChoice,
    /// Images per optimisation (0: render.batch from the spec, else 256 on CUDA and 8 on the CPU).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Milliseconds a partial batch waits for more tasks.
    #[arg(long, default_value_t = 500)]
    linger_ms: u64,
    /// Worker id for sidecars and the consumer tag (default: host name and process id).
    #[arg(long)]
    worker_id: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Benchmark only: store cheap stand-in images (noise with a rendered image's statistics)
    /// without optimising or running the model, to measure the queue-and-storage path alone.
    /// Refused unless the environment has LUCID_BENCHMARK=1; its sidecars' code_version says so.
    #[arg(long)]
    benchmark_renderer: bool,
}

/// The environment variable that must be `1` for `serve --benchmark-renderer`.
const BENCHMARK_ENV: &str = "LUCID_BENCHMARK";

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let render_mode = if args.benchmark_renderer {
        if std::env::var(BENCHMARK_ENV).as_deref() != Ok("1") {
            anyhow::bail!(
                "--benchmark-renderer stores images that are not optimised; it is for benchmarks \
                 only and refused unless {BENCHMARK_ENV}=1 is set"
            );
        }
        lucid_worker::pipeline::gpu::RenderMode::SkipOptimisation
    } else {
        lucid_worker::pipeline::gpu::RenderMode::Optimise
    };
    let spec = load_spec(&args.spec, &args.set)?;
    let uri_file = match &spec.queue.uri_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("failed to read queue.uri_file {}", path.display()))?,
        ),
        None => None,
    };
    let env_uri = std::env::var(lucid_proto::spec::AMQP_URI_ENV).ok();
    let amqp_uri = spec
        .queue
        .resolve_uri(env_uri.as_deref(), uri_file.as_deref().map(str::trim));
    let device = args.device;
    let batch = batch_size(args.batch, &spec, device);
    let worker_id = args.worker_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let model_cache = lucid_storage::models::ModelCache::from_env()
        .context("cannot locate the model cache folder")?
        .root()
        .to_path_buf();
    let config = lucid_worker::serve::ServeConfig {
        spec,
        amqp_uri,
        listen: args.listen,
        drain_timeout: std::time::Duration::from_secs(args.drain_timeout_secs),
        device,
        batch,
        linger: std::time::Duration::from_millis(args.linger_ms),
        worker_id,
        model_cache,
        render_mode,
    };
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let health = lucid_telemetry::Health::new();
        lucid_worker::serve::run(config, registry, health, lucid_telemetry::shutdown_signal()).await
    })
}

/// `lucid-worker probe`: runs the pass, then prints its report (JSON) or a summary line per layer.
fn probe(args: &lucid_worker::probe::command::ProbeArgs) -> anyhow::Result<()> {
    let report = lucid_worker::probe::command::probe(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "probed {} images of {} ({} set aside) into {}",
        report.probe_set.images.len(),
        report.model.label,
        report.probe_set.skipped.len(),
        args.out.display()
    );
    for skipped in &report.probe_set.skipped {
        println!("  set aside: {}", skipped.reason);
    }
    for layer in &report.layers {
        println!("  {}: {} channels", layer.layer, layer.channels);
    }
    let timing = &report.timing;
    println!(
        "{:.1} images/s: reading {:.2} s ({:.0}%), forward {:.2} s",
        timing.images_per_second,
        timing.read_seconds,
        100.0 * timing.read_share,
        timing.forward_seconds
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (format, default_filter) = match &args.command {
        Command::Serve(serve) if serve.log_format == "json" => {
            (lucid_telemetry::LogFormat::Json, "info")
        }
        Command::Serve(_) => (lucid_telemetry::LogFormat::Text, "info"),
        _ => (lucid_telemetry::LogFormat::Text, "warn"),
    };
    lucid_telemetry::init_tracing(format, "LUCID_LOG", default_filter);
    let result = match &args.command {
        Command::Inspect {
            path,
            json,
            network,
        } => lucid_worker::inspect::run(path, network, *json, &mut std::io::stdout().lock()),
        Command::Render(args) => render(args),
        Command::DemoModels {
            out,
            seeds,
            ecoset_widths,
        } => cli::demo_models(out, *seeds, *ecoset_widths),
        Command::DemoProbeSet { out } => cli::demo_probe_set(out).map(|n| {
            println!("{n} probe images written to {}", out.display());
        }),
        Command::Bench(bench) if bench.probe => {
            lucid_worker::probe::bench::bench_probe(bench).map(|_| ())
        }
        Command::Bench(bench) => lucid_worker::bench::bench(bench).map(|_| ()),
        Command::Probe(args) => probe(args),
        Command::Serve(args) => serve(args),
        Command::Local(args) => local(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", lucid_telemetry::error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}
