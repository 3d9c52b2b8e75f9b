//! `lucid-worker local`: a whole sweep in one process on the embedded default — the coordinator's task
//! enumeration, an in-process queue instead of RabbitMQ, and a local folder with the same key layout as
//! S3 — then a browsable gallery of the run.
//!
//! The in-process queue is the [`TaskSource`] of the shared worker loop ([`crate::runner`]), so it
//! batches, drains and handles faults exactly as `serve`; planning, the stored-results listing and the
//! run manifest are the coordinator's own steps. It resumes (tasks whose sidecar is stored are
//! skipped), shows a progress bar with images/s and ETA, and is Ctrl-C safe: every file is written to a temporary name and renamed, and an interrupted run
//! simply resumes on the next start.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use lucid_coordinator::plan::{Digests, plan_run};
use lucid_coordinator::probe::{Merged, plan_probe};
use lucid_coordinator::progress::StoredRun;
use lucid_coordinator::submit::{ensure_manifest, key_prefix};
use lucid_proto::spec::{StorageKind, SweepSpec};
use lucid_proto::{DeadLetterReport, DeadProbeTask, DeadTask, KeyPrefix, TaskMessage, Work};
use lucid_storage::Store;
use lucid_storage::models::ModelCache;
use prometheus::Registry;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::device::DeviceChoice;
use crate::pipeline::gpu::RenderMode;
use crate::pipeline::metrics::WorkerMetrics;
use crate::pipeline::{Accepted, Item, ModelResolver, ProbeItem, SettleError, TaskHandle};
use crate::runner::{ContextParts, LoopOptions, Received, Stop, TaskSource, Worker};

/// What `local` needs besides the spec.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The sweep spec; its storage section is replaced by a local folder.
    pub spec: SweepSpec,
    /// Result folder (same layout as the S3 bucket): `storage.local_dir` or this.
    pub out: PathBuf,
    /// The compute device.
    pub device: DeviceChoice,
    /// Images per optimisation.
    pub batch: usize,
    /// Build the gallery at the end.
    pub gallery: bool,
    /// Show a progress bar (off for tests and non-terminals).
    pub progress: bool,
}

/// What a local run did (printed by `lucid-worker local --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalSummary {
    /// The run.
    pub run_id: String,
    /// Tasks in the plan.
    pub expected: usize,
    /// Tasks already stored when the run started.
    pub already_stored: usize,
    /// Images rendered and stored by this run.
    pub rendered: usize,
    /// Tasks given up, with their reasons (also written to `dead-letters.json` in the run folder).
    pub dead_lettered: Vec<DeadTask>,
    /// Where the dead letters were written, when there were any.
    pub dead_letters_file: Option<PathBuf>,
    /// Whether Ctrl-C stopped the run early.
    pub interrupted: bool,
    /// The gallery's index page, when built.
    pub gallery: Option<PathBuf>,
    /// Wall time of the rendering part of the run, in seconds.
    pub seconds: f64,
    /// Share of that wall time the render thread spent rendering (1 − the device's idle share).
    pub render_busy_share: f64,
    /// The probe pass, for a spec with `[probe]`.
    pub probe: Option<ProbeSummary>,
}

/// What a local run's probe pass did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSummary {
    /// Probe tasks in the run: models × shards.
    pub expected: u64,
    /// Shards already stored when the run started.
    pub already_stored: u64,
    /// Probe images run through a model now (an image counts once per model).
    pub probed_images: u64,
    /// Probe files fetched and decoded now: once per shard for all the models probing it together,
    /// so fewer than `probed_images` when several models share the reads.
    pub files_read: u64,
    /// Probe tasks given up, with their reasons (also in `dead-letters.json`); the merge waits for
    /// them.
    pub dead_lettered: Vec<DeadProbeTask>,
    /// What the merge wrote (`None` when a shard is missing).
    pub merged: Option<Merged>,
    /// The channels matched across seeds (docs/matching.md), after a merge of two or more models.
    pub matched: Option<lucid_coordinator::matching::MatchRunOutput>,
}

/// The in-process queue: tasks waiting with their earlier delivery counts. Handles put requeued
/// tasks back; once the run stops taking work it is closed and a requeue is refused (the task is
/// found again on resume, since its sidecar is not stored).
struct LocalSource {
    queue: mpsc::UnboundedReceiver<(Work, u32)>,
    requeue: mpsc::UnboundedSender<(Work, u32)>,
    dead: Arc<Mutex<DeadLists>>,
}

/// The tasks a local run gave up, by kind.
#[derive(Debug, Default)]
struct DeadLists {
    renders: Vec<DeadTask>,
    probes: Vec<DeadProbeTask>,
}

impl LocalSource {
    fn new(tasks: Vec<Work>) -> Self {
        let (requeue, queue) = mpsc::unbounded_channel();
        for task in tasks {
            // the receiver is alive: it is in `queue` below
            let _ = requeue.send((task, 0));
        }
        Self {
            queue,
            requeue,
            dead: Arc::default(),
        }
    }
}

impl TaskSource for LocalSource {
    type Raw = Accepted;

    async fn accept(&mut self, item: Accepted) -> Option<Accepted> {
        Some(item)
    }

    async fn next(&mut self) -> Received<Accepted> {
        match self.queue.recv().await {
            Some((work, attempts)) => {
                let handle = Box::new(LocalHandle {
                    task: work.clone(),
                    attempts,
                    requeue: self.requeue.clone(),
                    dead: self.dead.clone(),
                });
                Received::Task(match work {
                    Work::Render(task) => Accepted::Render(Item { task, handle }),
                    Work::Probe(task) => Accepted::Probe(ProbeItem { task, handle }),
                })
            }
            // never: the source holds a sender itself
            None => std::future::pending().await,
        }
    }

    fn has_more_now(&self) -> bool {
        !self.queue.is_empty()
    }

    fn is_exhausted(&self) -> bool {
        self.queue.is_empty()
    }

    async fn stop(&mut self, why: &Stop) {
        if *why != Stop::Completed {
            self.queue.close();
            while self.queue.try_recv().is_ok() {}
        }
    }

    async fn close(self) {}
}

struct LocalHandle {
    task: Work,
    attempts: u32,
    requeue: mpsc::UnboundedSender<(Work, u32)>,
    dead: Arc<Mutex<DeadLists>>,
}

impl TaskHandle for LocalHandle {
    fn delivery_count(&self) -> u32 {
        self.attempts
    }
    fn ack(&self) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async { Ok(()) })
    }
    fn requeue(&self) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async move {
            self.requeue
                .send((self.task.clone(), self.attempts + 1))
                .map_err(|_| SettleError::LocalQueueClosed)
        })
    }
    fn dead_letter<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, Result<(), SettleError>> {
        Box::pin(async move {
            // a poisoned list still holds every letter pushed before the panic
            let mut dead = self
                .dead
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let attempts = self.attempts + 1;
            match &self.task {
                Work::Render(task) => dead.renders.push(DeadTask {
                    task_id: task.task_id.clone(),
                    model_id: task.model_id.clone(),
                    layer: task.layer.clone(),
                    channel: task.channel,
                    reason: reason.to_string(),
                    attempts,
                }),
                Work::Probe(task) => dead.probes.push(DeadProbeTask {
                    task_id: task.task_id.clone(),
                    model_id: task.model_id.clone(),
                    shard: task.shard,
                    reason: reason.to_string(),
                    attempts,
                }),
            }
            Ok(())
        })
    }
}

/// What was planned and found stored before rendering.
struct Prepared {
    spec: SweepSpec,
    prefix: KeyPrefix,
    store: Store,
    cache: ModelCache,
    expected: usize,
    todo: Vec<TaskMessage>,
    run: lucid_coordinator::plan::PlannedRun,
    probe: Option<lucid_coordinator::probe::ProbePlan>,
}

/// Plans the run from the real checkpoints (with digests), lists what is stored and writes or checks
/// the run manifest: the coordinator's own steps, so that `local` and `submit` plan the same tasks,
/// refuse the same specs and resume under the same manifest check.
async fn prepare(config: &LocalConfig) -> Result<Prepared> {
    let mut spec = config.spec.clone();
    spec.storage.kind = StorageKind::Local;
    spec.storage.local_dir = Some(config.out.clone());
    let cache = ModelCache::from_env().context("cannot locate the model cache folder")?;
    let run = plan_run(&spec, &cache, Digests::Compute)
        .await
        .context("cannot plan the sweep")?;
    let prefix = key_prefix(&spec)?;
    let store = Store::local(&config.out);
    let run_prefix = prefix.run_prefix(&spec.run_id);
    let (_, stored) = StoredRun::list(&store, &run_prefix)
        .await
        .with_context(|| format!("cannot list {}", config.out.display()))?;
    let probe = plan_probe(&spec, &run, &store, &prefix, &stored)
        .await
        .context("cannot plan the probe pass")?;
    ensure_manifest(&spec, &run, &store, &prefix, stored.manifest)
        .await
        .context("cannot resume this run in this folder")?;
    let tasks: Vec<TaskMessage> = run.plan.tasks().collect();
    let expected = tasks.len();
    let todo = tasks
        .into_iter()
        .filter(|t| !stored.is_done(&t.result_id()))
        .collect();
    Ok(Prepared {
        spec,
        prefix,
        store,
        cache,
        expected,
        todo,
        run,
        probe,
    })
}

/// Runs the sweep to completion or until `shutdown` completes.
pub async fn run(config: LocalConfig, shutdown: impl Future<Output = ()>) -> Result<LocalSummary> {
    let prepared = prepare(&config).await?;
    let expected = prepared.expected;
    let already_stored = expected - prepared.todo.len();
    let device = config.device.resolve()?;
    eprintln!(
        "run {}: {expected} tasks, {already_stored} already stored, {} to render on {} → {}",
        prepared.spec.run_id,
        prepared.todo.len(),
        crate::device::describe(device),
        config.out.display()
    );
    let (spec, prefix, store) = (
        prepared.spec.clone(),
        prepared.prefix.clone(),
        prepared.store.clone(),
    );
    let run = prepared.run.clone();
    let probe_plan = prepared.probe.clone();
    let rendered = render(&config, prepared, device, shutdown).await?;
    let dead_letters_file =
        write_dead_letters(&store, &prefix, &spec, &config.out, &rendered).await?;
    let probe = match probe_plan {
        Some(plan) => Some(finish_probe(&spec, &run, &store, &prefix, plan, &rendered).await?),
        None => None,
    };
    let gallery = if config.gallery && !rendered.interrupted {
        let run_prefix = prefix.run_prefix(&spec.run_id);
        Some(build_gallery(&config.out, &run_prefix, spec.run_id.as_str()).await?)
    } else {
        None
    };
    Ok(LocalSummary {
        run_id: spec.run_id.to_string(),
        expected,
        already_stored,
        rendered: rendered.images,
        dead_lettered: rendered.dead,
        dead_letters_file,
        interrupted: rendered.interrupted,
        gallery,
        seconds: rendered.seconds,
        render_busy_share: busy_share(rendered.busy_seconds, rendered.seconds),
        probe,
    })
}

/// The probe pass's summary; once every shard is stored (none given up, not interrupted), the
/// coordinator's own merge writes each model's examples.
async fn finish_probe(
    spec: &SweepSpec,
    run: &lucid_coordinator::plan::PlannedRun,
    store: &Store,
    prefix: &KeyPrefix,
    plan: lucid_coordinator::probe::ProbePlan,
    rendered: &Rendered,
) -> Result<ProbeSummary> {
    let complete = !rendered.interrupted && rendered.dead_probes.is_empty();
    let merged = if complete {
        Some(
            lucid_coordinator::probe::merge(spec, run, store, prefix)
                .await
                .context("cannot merge the probe shards")?,
        )
    } else {
        None
    };
    let matched = if merged.is_some() && run.plan.models.len() >= 2 {
        let settings = lucid_coordinator::matching::MatchSettings::default();
        Some(
            lucid_coordinator::matching::run_match(spec, run, store, prefix, &settings)
                .await
                .context("cannot match the channels across seeds")?,
        )
    } else {
        None
    };
    Ok(ProbeSummary {
        expected: plan.expected,
        already_stored: plan.expected - plan.missing.len() as u64,
        probed_images: rendered.probed_images,
        files_read: rendered.probe_files_read,
        dead_lettered: rendered.dead_probes.clone(),
        merged,
        matched,
    })
}

/// What the worker loop did with a prepared run's tasks.
struct Rendered {
    images: usize,
    dead: Vec<DeadTask>,
    probed_images: u64,
    probe_files_read: u64,
    dead_probes: Vec<DeadProbeTask>,
    interrupted: bool,
    seconds: f64,
    busy_seconds: f64,
}

/// Runs the prepared tasks through the one worker loop on `device`, until done or `shutdown`.
async fn render(
    config: &LocalConfig,
    prepared: Prepared,
    device: tch::Device,
    shutdown: impl Future<Output = ()>,
) -> Result<Rendered> {
    let metrics = WorkerMetrics::register(&Registry::new())?;
    let parts = ContextParts {
        store: prepared.store,
        prefix: prepared.prefix,
        device,
        render_mode: RenderMode::Optimise,
        metrics: metrics.clone(),
        worker_id: format!("local-{}", std::process::id()),
        max_attempts: prepared.spec.queue.delivery_limit,
        models: ModelResolver::new(prepared.spec.storage.clone(), prepared.cache),
    };
    let options = LoopOptions {
        batch: config.batch,
        linger: Duration::ZERO,
        drain_timeout: LOCAL_DRAIN_TIMEOUT,
        intake_limit: config.batch.max(1) * 2,
    };
    let to_render = prepared.todo.len() as u64;
    let probes = prepared.probe.into_iter().flat_map(|p| p.missing);
    let work: Vec<Work> = prepared
        .todo
        .into_iter()
        .map(Work::Render)
        .chain(probes.map(Work::Probe))
        .collect();
    let source = LocalSource::new(work);
    let dead = source.dead.clone();
    let worker =
        Worker::start(parts, source, options).context("failed to start the render thread")?;
    let progress = show_progress(config.progress, to_render, metrics.clone());
    let started = std::time::Instant::now();
    let stop = worker.run(shutdown).await;
    progress.abort();
    let seconds = started.elapsed().as_secs_f64();
    if let Stop::Fault(reason) = stop {
        bail!(
            "stopped: {reason}; nothing unfinished was recorded as done, and the run resumes \
             where it stopped once the cause is fixed"
        );
    }
    let interrupted = stop == Stop::Shutdown;
    if interrupted {
        eprintln!(
            "\ninterrupted: the batches in flight were finished (files are renamed into place; the run resumes next time)"
        );
    }
    let dead = std::mem::take(
        &mut *dead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(Rendered {
        images: metrics.images.get() as usize,
        dead: dead.renders,
        probed_images: metrics.probe_images.get(),
        probe_files_read: metrics.probe_files_read.get(),
        dead_probes: dead.probes,
        interrupted,
        seconds,
        busy_seconds: metrics.gpu_busy_seconds.get(),
    })
}

/// How long an interrupted local run may take to finish its batches in flight.
const LOCAL_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

fn busy_share(busy_seconds: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (busy_seconds / seconds).min(1.0)
    } else {
        0.0
    }
}

/// Writes `{run}/dead-letters.json` when any render or probe task was given up (and removes nothing
/// otherwise: a resumed run that fails nothing leaves the earlier report as it was).
async fn write_dead_letters(
    store: &Store,
    prefix: &KeyPrefix,
    spec: &SweepSpec,
    out: &Path,
    rendered: &Rendered,
) -> Result<Option<PathBuf>> {
    if rendered.dead.is_empty() && rendered.dead_probes.is_empty() {
        return Ok(None);
    }
    let key = prefix.dead_letters_key(&spec.run_id);
    let report = DeadLetterReport::new(
        spec.run_id.clone(),
        rendered.dead.clone(),
        rendered.dead_probes.clone(),
    );
    store
        .put(&key, report.encode(), "application/json")
        .await
        .with_context(|| format!("cannot write the dead letters to {key}"))?;
    Ok(Some(out.join(&key)))
}

/// Builds the static gallery under `{out}/{run_prefix}/gallery/` and returns its index page.
pub async fn build_gallery(out: &Path, run_prefix: &str, run_id: &str) -> Result<PathBuf> {
    let root = out.join(run_prefix);
    let run_id = run_id.to_string();
    let root_for_build = root.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let mut store = lucid_gallery::FolderStore::new(&root_for_build);
        let source = lucid_gallery::FolderStore::new(&root_for_build);
        lucid_gallery::build(
            &source,
            &mut store,
            &lucid_gallery::GalleryOptions::recommended(run_id),
        )
    })
    .await
    .context("the gallery builder failed")?
    .context("cannot build the gallery")?;
    tracing::info!(
        pages = summary.pages,
        sprites = summary.sprites,
        "gallery built"
    );
    Ok(root.join(lucid_proto::keys::GALLERY_DIR).join("index.html"))
}

/// Shows a progress bar fed from the images counter until the returned task is aborted.
fn show_progress(show: bool, total: u64, metrics: WorkerMetrics) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !show {
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        let style = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        loop {
            bar.set_position(metrics.images.get());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
