//! One function per subcommand, as the binary runs them: load the spec, plan, connect, act, and
//! return the command's report, which the binary prints as text or, with `--json`, as a
//! [`crate::output::Document`].

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use lucid_proto::SweepSpec;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::estimate::{RateTable, estimate};
use crate::models::ModelCache;
use crate::output::{CancelOutput, RetryDeadOutput};
use crate::plan::{Digests, PlanReport, plan_run};
use crate::services::{connect_broker, management_api, open_store};
use crate::status::StatusReport;
use crate::submit::{SubmitReport, key_prefix};
use crate::verify::VerifyReport;

/// The spec arguments every command takes.
#[derive(Debug, Clone)]
pub struct SpecArgs {
    /// The TOML spec file.
    pub file: PathBuf,
    /// `key=value` overrides, strongest last.
    pub sets: Vec<String>,
}

impl SpecArgs {
    /// Loads and validates the spec.
    pub fn load(&self) -> Result<SweepSpec> {
        crate::spec::load(&self.file, &self.sets)
    }

    /// The same arguments with `run_id` overridden (for `--run`).
    pub fn with_run(mut self, run: Option<&str>) -> Self {
        if let Some(run) = run {
            self.sets.push(format!("run_id={run}"));
        }
        self
    }
}

/// `plan`: tasks per model and layer, the total and the GPU time estimate at the rates of `rates`
/// (a file written by `lucid-worker bench --rates-out`), else at the shipped default rates.
pub async fn plan(args: &SpecArgs, rates: Option<&std::path::Path>) -> Result<PlanReport> {
    let spec = args.load()?;
    let table = RateTable::load_or_built_in(rates)?;
    let run = plan_run(&spec, &model_cache()?, Digests::Skip).await?;
    let estimate = estimate(&run.plan, &table);
    Ok(PlanReport {
        plan: run.plan,
        estimate,
    })
}

/// The model cache named by the environment (see [`ModelCache::from_env`]).
fn model_cache() -> Result<ModelCache> {
    ModelCache::from_env().map_err(|e| Error::storage("locate the model cache", e))
}

/// `submit`: see [`crate::submit`].
pub async fn submit(args: &SpecArgs, confirm_window: usize) -> Result<SubmitReport> {
    let spec = args.load()?;
    let run = plan_run(&spec, &model_cache()?, Digests::Compute).await?;
    let store = open_store(&spec).await?;
    store
        .ensure_bucket()
        .await
        .map_err(|e| Error::storage("ensure the bucket exists", e))?;
    let (broker, _uri) = connect_broker(&spec).await?;
    let result = crate::submit::submit(&spec, &run, &store, &broker, confirm_window).await;
    close(&broker).await;
    result
}

/// `status`: see [`crate::status`].
pub async fn status(args: &SpecArgs, rabbit_api: &str, sample: usize) -> Result<StatusReport> {
    let spec = args.load()?;
    let run = plan_run(&spec, &model_cache()?, Digests::Skip).await?;
    let store = open_store(&spec).await?;
    let connected = connect_broker(&spec).await;
    let report = match &connected {
        Ok((broker, uri)) => {
            let api = management_api(rabbit_api, uri);
            crate::status::status(&spec, &run.plan, &store, Ok((broker, Some(&api))), sample).await
        }
        Err(e) => {
            crate::status::status(
                &spec,
                &run.plan,
                &store,
                Err(crate::error::chain(e)),
                sample,
            )
            .await
        }
    };
    if let Ok((broker, _)) = &connected {
        close(broker).await;
    }
    report
}

/// `retry-dead`: moves every dead-lettered task back to the task queue.
pub async fn retry_dead(args: &SpecArgs) -> Result<RetryDeadOutput> {
    let spec = args.load()?;
    let (broker, _uri) = connect_broker(&spec).await?;
    let moved = broker.retry_dead().await.map_err(|e| {
        Error::queue(
            format!(
                "move {} back to {}",
                spec.queue.dead_letter_queue, spec.queue.tasks
            ),
            e,
        )
    });
    close(&broker).await;
    Ok(RetryDeadOutput {
        moved: moved?,
        queue: spec.queue.tasks.clone(),
    })
}

/// `cancel`: drops the run's ready tasks from the task queue.
pub async fn cancel(args: &SpecArgs) -> Result<CancelOutput> {
    let spec = args.load()?;
    let (broker, _uri) = connect_broker(&spec).await?;
    let dropped = broker.cancel_run(spec.run_id.as_str()).await.map_err(|e| {
        Error::queue(
            format!("cancel run {} in {}", spec.run_id, spec.queue.tasks),
            e,
        )
    });
    close(&broker).await;
    Ok(CancelOutput {
        run_id: spec.run_id.to_string(),
        cancelled: dropped?,
        queue: spec.queue.tasks.clone(),
    })
}

/// What `verify` checks besides the stored objects.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Read the dead-letter queue (the run's dead letters are listed; a planned task among them is a
    /// violation).
    pub queue: bool,
    /// The exact set of ids the run's dead letters must be (implies `queue`).
    pub expect_dead: Option<BTreeSet<String>>,
    /// At most this many dead letters are read.
    pub dead_limit: usize,
    /// A `lucid-coordinator watch` `/metrics` URL whose gauges must agree.
    pub metrics_url: Option<String>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            queue: true,
            expect_dead: None,
            dead_limit: 10_000,
            metrics_url: None,
        }
    }
}

/// `verify`: the report (see [`crate::verify`]): stored objects, then the dead-letter queue, then
/// the metrics, as `options` asks.
pub async fn verify(args: &SpecArgs, options: &VerifyOptions) -> Result<VerifyReport> {
    let spec = args.load()?;
    let run = plan_run(&spec, &model_cache()?, Digests::Skip).await?;
    let store = open_store(&spec).await?;
    let (mut report, stored_dead) =
        crate::verify::fetch_and_check(&store, &run.plan, &key_prefix(&spec)?, spec.probe.as_ref())
            .await?;
    let mut dead_depth = None;
    let mut truncated = None;
    let mut dead = stored_dead;
    if options.queue || options.expect_dead.is_some() {
        let (broker, _uri) = connect_broker(&spec).await?;
        // one more than the limit tells a full read from a truncated one
        let letters = broker.peek_dead(options.dead_limit.saturating_add(1)).await;
        close(&broker).await;
        let letters = letters
            .map_err(|e| Error::queue(format!("read {}", spec.queue.dead_letter_queue), e))?;
        truncated = (letters.len() > options.dead_limit).then_some(options.dead_limit);
        dead_depth = truncated.is_none().then_some(letters.len());
        let ours = crate::verify::RunDeadLetter::of_run(spec.run_id.as_str(), &letters);
        dead.get_or_insert_with(Vec::new).extend(ours);
    }
    if let Some(dead) = dead {
        crate::verify::check_dead_letters(
            &run.plan,
            &mut report,
            dead,
            options.expect_dead.as_ref(),
            truncated,
        );
    }
    if let Some(url) = &options.metrics_url {
        let exposition = fetch_text(url).await?;
        crate::verify::check_metrics(
            &run.plan,
            &mut report,
            &exposition,
            &spec.queue.dead_letter_queue,
            dead_depth,
        );
    }
    Ok(report)
}

/// The body of a GET of `url`, which must answer 200.
async fn fetch_text(url: &str) -> Result<String> {
    let failed = |message: String| Error::MetricsRead {
        url: url.to_owned(),
        message,
    };
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| failed(e.to_string()))?
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    response.text().await.map_err(|e| failed(e.to_string()))
}

/// `gallery`: builds the run's static HTML gallery and uploads it next to the run's objects.
pub async fn gallery(
    args: &SpecArgs,
    gallery_args: &crate::gallery::GalleryArgs,
) -> Result<crate::gallery::GalleryReport> {
    let spec = args.load()?;
    let store = open_store(&spec).await?;
    crate::gallery::build(&spec, &store, gallery_args).await
}

/// `examples`: see [`crate::probe::merge`].
pub async fn examples(args: &SpecArgs) -> Result<crate::output::ExamplesOutput> {
    let spec = args.load()?;
    let run = plan_run(&spec, &model_cache()?, Digests::Skip).await?;
    let store = open_store(&spec).await?;
    let prefix = key_prefix(&spec)?;
    let merged = crate::probe::merge(&spec, &run, &store, &prefix).await?;
    Ok(crate::output::ExamplesOutput {
        run_id: spec.run_id.to_string(),
        merged,
    })
}

/// `match`: see [`crate::matching::run_match`].
pub async fn match_seeds(
    args: &SpecArgs,
    settings: &crate::matching::MatchSettings,
) -> Result<crate::matching::MatchRunOutput> {
    let spec = args.load()?;
    let run = plan_run(&spec, &model_cache()?, Digests::Skip).await?;
    let store = open_store(&spec).await?;
    let prefix = key_prefix(&spec)?;
    crate::matching::run_match(&spec, &run, &store, &prefix, settings).await
}

/// `watch`'s settings besides the spec.
#[derive(Debug, Clone)]
pub struct WatchArgs {
    /// The management API base URL.
    pub rabbit_api: String,
    /// Time between refreshes.
    pub interval: Duration,
}

/// `watch`: serves metrics on `listener` until `shutdown`.
pub async fn watch(
    args: &SpecArgs,
    watch_args: &WatchArgs,
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let spec = args.load()?;
    let run = plan_run(&spec, &model_cache()?, Digests::Skip).await?;
    let store = open_store(&spec).await?;
    let amqp_uri = crate::services::amqp_uri(&spec.queue)?;
    let config = crate::watch::WatchConfig {
        spec,
        plan: run.plan,
        store,
        amqp_uri,
        rabbit_api: watch_args.rabbit_api.clone(),
        interval: watch_args.interval,
    };
    crate::watch::run(listener, config, registry, shutdown).await
}

async fn close(broker: &lucid_queue::Broker) {
    if let Err(error) = broker.close().await {
        tracing::debug!(%error, "closing broker connection");
    }
}
