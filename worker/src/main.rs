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
    /// Print each seed's layers (kernel, stride, channels) and the channel totals.
    Inspect {
        /// A checkpoint prefix, a `.safetensors` file or a folder of `training_seed_NN` sub-folders.
        path: PathBuf,
    },
    /// Render channels of one layer to a folder.
    Render(Box<cli::RenderArgs>),
    /// Consume render tasks from RabbitMQ and store the images in S3 (the GPU worker of a sweep).
    Serve(Box<ServeArgs>),
    /// Measure images/s and the time per phase (add `--all-layers` for a sweep estimate).
    Bench(Box<lucid_worker::bench::BenchArgs>),
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
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let overrides = args
        .set
        .iter()
        .map(|kv| lucid_proto::spec::parse_override(kv))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = lucid_proto::spec::SweepSpec::load(Some(&args.spec), "LUCID", &overrides)
        .with_context(|| format!("invalid sweep spec {}", args.spec.display()))?;
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
    let batch = match (args.batch, spec.render.batch) {
        (0, 0) if device == lucid_worker::device::DeviceChoice::Cpu => 8,
        (0, 0) => {
            if device.resolve().map(|d| d.is_cuda()).unwrap_or(false) {
                256
            } else {
                8
            }
        }
        (0, b) => b as usize,
        (b, _) => b,
    };
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
    };
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let health = lucid_telemetry::Health::new();
        lucid_worker::serve::run(config, registry, health, shutdown_signal()).await
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
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
        Command::Inspect { path } => cli::inspect(path, &mut std::io::stdout().lock()),
        Command::Render(render) => cli::render(render),
        Command::DemoModels {
            out,
            seeds,
            ecoset_widths,
        } => cli::demo_models(out, *seeds, *ecoset_widths),
        Command::Bench(bench) => lucid_worker::bench::bench(bench).map(|_| ()),
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
