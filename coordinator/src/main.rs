//! `lucid-coordinator`: plans, submits and tracks sweeps. Parses arguments, sets up tracing and calls
//! `lucid_coordinator::commands`; all logic lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use lucid_coordinator::commands::{self, SpecArgs, VerifyOptions, WatchArgs};
use lucid_coordinator::gallery::GalleryArgs;
use lucid_coordinator::output::{Document, Report};
use lucid_coordinator::services::{DEFAULT_RABBIT_API, RABBIT_API_ENV};
use lucid_coordinator::status::DEFAULT_RATE_SAMPLE;
use lucid_coordinator::submit::DEFAULT_CONFIRM_WINDOW;

/// Plans, submits and tracks lucid-sweep runs.
///
/// The AMQP URI with its credentials comes from env LUCID_AMQP_URI or the file named by
/// queue.uri_file; S3 keys from LUCID_S3_ACCESS_KEY_ID / LUCID_S3_SECRET_ACCESS_KEY (or AWS_*) or
/// storage.credentials_file. Neither is accepted as a flag.
#[derive(Parser, Debug)]
#[command(name = "lucid-coordinator", version)]
struct Cli {
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

/// The spec file and its overrides.
#[derive(Args, Debug, Clone)]
struct SpecFlags {
    /// Sweep spec (TOML).
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// Override a spec value, e.g. --set render.steps=64 (repeatable; credentials are refused).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

impl SpecFlags {
    fn args(&self) -> SpecArgs {
        SpecArgs {
            file: self.spec.clone(),
            sets: self.sets.clone(),
        }
    }
}

/// How a command prints its result.
#[derive(Args, Debug, Clone, Copy)]
struct OutputFlags {
    /// Print one JSON document on stdout instead of the text report (schema:
    /// lucid_coordinator::output).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Count the tasks per model and layer from the real checkpoints and estimate GPU time.
    ///
    /// Layer widths are read from each model's checkpoint (S3 models are downloaded into
    /// ${LUCID_CACHE_DIR:-~/.cache/lucid-sweep}/models first). The estimate uses the engine's
    /// images/s per layer from --rates (written by `lucid-worker bench --all-layers --rates-out`),
    /// or the shipped H200 measurement (bf16, B=512), scaled by steps and image size.
    Plan(PlanCmd),
    /// Publish the run's tasks whose results are not stored yet.
    ///
    /// Lists {prefix}/{run}/ once (a task is done when its .json sidecar exists), writes or checks
    /// the run manifest run.json (refusing a run whose settings or checkpoints differ), then
    /// publishes the missing tasks in model, layer, channel order with publisher confirms.
    Submit(SubmitCmd),
    /// Show done / expected per model and layer, queue depths, rate and ETA.
    ///
    /// The rate comes from the created_at timestamps of the last --rate-sample result sidecars.
    Status(StatusCmd),
    /// Move every dead-lettered task back to the task queue.
    RetryDead(RetryDeadCmd),
    /// Drop a run's queued (ready) tasks from the task queue.
    ///
    /// Tasks that workers hold unacknowledged are not touched.
    Cancel(CancelCmd),
    /// Check a run's stored output against its plan; exits 2 on any violation.
    ///
    /// Every planned task must have exactly one PNG and one sidecar, nothing else may be stored under
    /// the run but run.json, the gallery and a local run's dead-letters.json, sidecars must decode
    /// and match their task, PNGs must be valid, of the planned size and match their sidecar's
    /// sha256. The run's dead letters are read from the dead-letter queue and, for a run made
    /// without a broker (`lucid-worker local` or `render`), from its dead-letters.json.
    Verify(VerifyCmd),
    /// Build the run's static HTML gallery and upload it under {prefix}/{run}/gallery/.
    ///
    /// Lists {prefix}/{run}/ once, reads every PNG and sidecar, and writes an index of models and
    /// layers, a contact sheet per layer (thumbnail sprites), a page per channel and cross-model
    /// comparison pages. Every link is relative, so the gallery works from the bucket or a copy on
    /// disk. Prints the index's key and a URL to open it.
    Gallery(GalleryCmd),
    /// Merge the run's probe shards into each model's dataset examples.
    ///
    /// For a spec with [probe]: reads every shard the workers stored under
    /// {prefix}/{run}/probe/{model}/shards/ and writes per model probe.json, and per layer
    /// {layer}.examples.json and {layer}.means.safetensors (docs/dataset-examples.md). Refused,
    /// naming the first missing shard, until every shard of every model is stored.
    Examples(ExamplesCmd),
    /// Match channels across the run's seeds from the probe pass's means (docs/matching.md).
    ///
    /// Per layer the models share: every pair of seeds correlated over the probe images, matched
    /// one-to-one (Jonker-Volgenant), many-to-one and as mutual best buddies; each reference
    /// channel's partner in every seed, universal and unique channels; representational
    /// consistency. Writes {prefix}/{run}/match/layers/{layer}.json and .csv and
    /// match/summary.json. Needs the merged probe pass (`examples`), not a new one.
    Match(MatchCmd),
    /// Serve the run's progress and queue depths as Prometheus metrics until interrupted.
    ///
    /// Endpoints: /metrics, /healthz and /readyz (ready after the first complete refresh).
    Watch(WatchCmd),
}

/// The arguments of `plan`.
#[derive(Args, Debug)]
struct PlanCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// Rates file of `lucid-worker bench --all-layers --rates-out FILE`.
    #[arg(long, value_name = "FILE", alias = "rate-file")]
    rates: Option<PathBuf>,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `submit`.
#[derive(Args, Debug)]
struct SubmitCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// Publishes awaiting their broker confirm at once.
    #[arg(long, default_value_t = DEFAULT_CONFIRM_WINDOW)]
    confirm_window: usize,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `status`.
#[derive(Args, Debug)]
struct StatusCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// Check this run instead of the spec's run_id.
    #[arg(long)]
    run: Option<String>,
    /// RabbitMQ management API (for unacked and consumer counts).
    #[arg(long, env = RABBIT_API_ENV, default_value = DEFAULT_RABBIT_API)]
    rabbit_api: String,
    /// Sidecars read to measure the rate.
    #[arg(long, default_value_t = DEFAULT_RATE_SAMPLE)]
    rate_sample: usize,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `retry-dead`.
#[derive(Args, Debug)]
struct RetryDeadCmd {
    #[command(flatten)]
    spec: SpecFlags,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `cancel`.
#[derive(Args, Debug)]
struct CancelCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// Cancel this run instead of the spec's run_id.
    #[arg(long)]
    run: Option<String>,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `verify`.
#[derive(Args, Debug)]
struct VerifyCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// Verify this run instead of the spec's run_id.
    #[arg(long)]
    run: Option<String>,
    /// The ids (task ids or message ids) the run's dead letters must be, exactly; repeat or
    /// comma-separate them, or give the flag alone to require none. Without it the run's dead
    /// letters are listed, and only planned tasks among them are violations.
    #[arg(long, num_args = 0.., value_delimiter = ',')]
    expect_dead: Option<Vec<String>>,
    /// Read at most this many dead letters; more is reported as a violation.
    #[arg(long, default_value_t = VerifyOptions::default().dead_limit)]
    dead_limit: usize,
    /// Check only the stored objects, not the dead-letter queue.
    #[arg(long, conflicts_with = "expect_dead")]
    skip_queue: bool,
    /// A `lucid-coordinator watch` /metrics URL: its run and dead-letter gauges must agree
    /// with what is stored and queued.
    #[arg(long)]
    metrics: Option<String>,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `gallery`.
#[derive(Args, Debug)]
struct GalleryCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// Build the gallery of this run instead of the spec's run_id.
    #[arg(long)]
    run: Option<String>,
    /// Side of a thumbnail in pixels (4 to 1024).
    #[arg(long, default_value_t = GalleryArgs::default().thumb_size)]
    thumb_size: u32,
    /// Threads reading and decoding images (0: one per core); reads wait on the network, so
    /// more than the cores helps.
    #[arg(long, default_value_t = GalleryArgs::default().threads)]
    threads: usize,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `examples`.
#[derive(Args, Debug)]
struct ExamplesCmd {
    #[command(flatten)]
    spec: SpecFlags,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `match`.
#[derive(Args, Debug)]
struct MatchCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// The model every other is matched against for the reference rows (default: the first).
    #[arg(long)]
    reference: Option<String>,
    /// A channel whose best correlation with every other seed's channels is below this is unique.
    #[arg(long, default_value_t = 0.3)]
    unique_below: f32,
    /// k of the mutual best buddies (1: mutual nearest neighbours).
    #[arg(long, default_value_t = 1)]
    buddies_k: usize,
    /// Probe images the RDMs are computed over (evenly spaced; all when fewer).
    #[arg(long, default_value_t = 1000)]
    rdm_images: usize,
    #[command(flatten)]
    output: OutputFlags,
}

/// The arguments of `watch`.
#[derive(Args, Debug)]
struct WatchCmd {
    #[command(flatten)]
    spec: SpecFlags,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:9187")]
    listen: SocketAddr,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 15)]
    interval_secs: u64,
    /// RabbitMQ management API (for unacked counts).
    #[arg(long, env = RABBIT_API_ENV, default_value = DEFAULT_RABBIT_API)]
    rabbit_api: String,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", lucid_telemetry::error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Prints `report` on stdout: its text, or with `--json` its [`Document`].
fn print(report: &impl Report, flags: OutputFlags) {
    if flags.json {
        println!("{}", Document::new(report.output()).to_json());
    } else {
        println!("{}", report.to_string().trim_end());
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan(a) => {
            let report = commands::plan(&a.spec.args(), a.rates.as_deref()).await?;
            print(&report, a.output);
        }
        Command::Submit(a) => {
            print(
                &commands::submit(&a.spec.args(), a.confirm_window).await?,
                a.output,
            );
        }
        Command::Status(a) => {
            let args = a.spec.args().with_run(a.run.as_deref());
            print(
                &commands::status(&args, &a.rabbit_api, a.rate_sample).await?,
                a.output,
            );
        }
        Command::RetryDead(a) => print(&commands::retry_dead(&a.spec.args()).await?, a.output),
        Command::Cancel(a) => {
            let args = a.spec.args().with_run(a.run.as_deref());
            print(&commands::cancel(&args).await?, a.output);
        }
        Command::Verify(a) => return verify(a).await,
        Command::Gallery(a) => {
            let args = GalleryArgs {
                thumb_size: a.thumb_size,
                threads: a.threads,
            };
            let spec = a.spec.args().with_run(a.run.as_deref());
            print(&commands::gallery(&spec, &args).await?, a.output);
        }
        Command::Examples(a) => print(&commands::examples(&a.spec.args()).await?, a.output),
        Command::Match(a) => {
            let settings = lucid_coordinator::matching::MatchSettings {
                reference: a.reference.clone(),
                unique_below: a.unique_below,
                buddies_k: a.buddies_k,
                rdm_images: a.rdm_images,
            };
            print(
                &commands::match_seeds(&a.spec.args(), &settings).await?,
                a.output,
            )
        }
        Command::Watch(a) => watch(a).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify`: prints the report; exits 2 when a rule is broken.
async fn verify(a: VerifyCmd) -> anyhow::Result<ExitCode> {
    let options = VerifyOptions {
        queue: !a.skip_queue,
        expect_dead: a.expect_dead.map(|ids| ids.into_iter().collect()),
        dead_limit: a.dead_limit,
        metrics_url: a.metrics,
    };
    let report = commands::verify(&a.spec.args().with_run(a.run.as_deref()), &options).await?;
    print(&report, a.output);
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `watch`: serves the run's metrics on `--listen` until interrupted.
async fn watch(a: WatchCmd) -> anyhow::Result<()> {
    let listen = a.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    tracing::info!(addr = %listen, "serving /metrics, /healthz and /readyz");
    let watch_args = WatchArgs {
        rabbit_api: a.rabbit_api,
        interval: Duration::from_secs(a.interval_secs.max(1)),
    };
    commands::watch(
        &a.spec.args(),
        &watch_args,
        listener,
        prometheus::Registry::new(),
        lucid_telemetry::shutdown_signal(),
    )
    .await?;
    Ok(())
}
