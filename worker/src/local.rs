//! `lucid-worker local`: a whole sweep in one process on the embedded default — the coordinator's task
//! enumeration, an in-process queue instead of RabbitMQ, and a local folder with the same key layout as
//! S3 — then a browsable gallery of the run.
//!
//! It resumes (tasks whose sidecar is stored are skipped), shows a progress bar with images/s and ETA,
//! and is Ctrl-C safe: every file is written to a temporary name and renamed, and an interrupted run
//! simply resumes on the next start.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use lucid_checkpoint::alexnet::AlexNetSpec;
use lucid_checkpoint::{ModelFile, discover};
use lucid_proto::geometry::{LayerTable, plan_checked};
use lucid_proto::keys::{Kind, parse_key};
use lucid_proto::spec::{StorageKind, SweepSpec};
use lucid_proto::{LayerName, SeedId, TaskMessage};
use lucid_storage::Store;
use lucid_storage::models::ModelCache;
use prometheus::Registry;
use tokio::task::JoinSet;

use crate::device::DeviceChoice;
use crate::pipeline::gpu::{GpuHandle, RenderMode};
use crate::pipeline::metrics::WorkerMetrics;
use crate::pipeline::{
    BatchContext, Item, ModelResolver, TaskHandle, WorkerFault, code_version, process_batch,
};

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

/// What a local run did.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSummary {
    /// Tasks in the plan.
    pub expected: usize,
    /// Tasks already stored when the run started.
    pub already_stored: usize,
    /// Images rendered and stored by this run.
    pub rendered: usize,
    /// Tasks given up, with their reasons (also written to `dead-letters.json` in the run folder).
    pub dead_lettered: Vec<(String, String)>,
    /// Whether Ctrl-C stopped the run early.
    pub interrupted: bool,
    /// The gallery's index page, when built.
    pub gallery: Option<PathBuf>,
    /// Wall time of the rendering part of the run, in seconds.
    pub seconds: f64,
    /// Share of that wall time the render thread spent rendering (1 − the device's idle share).
    pub render_busy_share: f64,
}

/// The in-process queue's shared state: which tasks were acknowledged, requeued or given up.
#[derive(Debug, Default)]
struct Ledger {
    acked: usize,
    requeued: Vec<(TaskMessage, u32)>,
    dead: Vec<(String, String)>,
}

struct LocalHandle {
    task: TaskMessage,
    attempts: u32,
    ledger: Arc<Mutex<Ledger>>,
}

impl LocalHandle {
    fn with_ledger<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> Result<T, String> {
        self.ledger
            .lock()
            .map(|mut l| f(&mut l))
            .map_err(|_| "the local queue's ledger is poisoned".to_string())
    }
}

impl TaskHandle for LocalHandle {
    fn delivery_count(&self) -> u32 {
        self.attempts
    }
    fn ack(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.with_ledger(|l| l.acked += 1) })
    }
    fn requeue(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.with_ledger(|l| l.requeued.push((self.task.clone(), self.attempts + 1)))
        })
    }
    fn dead_letter<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.with_ledger(|l| l.dead.push((self.task.task_id.clone(), reason.to_string())))
        })
    }
}

/// The layer table (widths, smallest input sides) of every seed in the spec, read from the
/// checkpoints (S3 ones downloaded first).
pub async fn layer_tables(
    spec: &SweepSpec,
    cache: &ModelCache,
) -> Result<BTreeMap<SeedId, LayerTable>> {
    let mut out = BTreeMap::new();
    for (seed, location) in &spec.models {
        let path = cache
            .materialize(location, &spec.storage)
            .await
            .with_context(|| format!("cannot fetch the model of {seed} from {location}"))?;
        let table = tokio::task::spawn_blocking(move || read_table(&path))
            .await
            .context("the checkpoint reader failed")?
            .with_context(|| format!("cannot read the checkpoint of {seed} at {location}"))?;
        out.insert(seed.clone(), table);
    }
    Ok(out)
}

fn read_table(path: &Path) -> Result<LayerTable> {
    let seeds = discover(path)?;
    let [one] = seeds.as_slice() else {
        bail!(
            "{} must hold exactly one checkpoint, found {}",
            path.display(),
            seeds.len()
        );
    };
    let net = AlexNetSpec::from_model(&ModelFile::open(&one.path)?)?;
    Ok(LayerTable::from_layers(net.layers.iter().map(|l| {
        (
            l.name.as_str(),
            l.out_channels,
            net.min_input_side_for(&l.name),
        )
    }))?)
}

/// Runs the sweep to completion or until `shutdown` completes.
pub async fn run(config: LocalConfig, shutdown: impl Future<Output = ()>) -> Result<LocalSummary> {
    let mut spec = config.spec.clone();
    spec.storage.kind = StorageKind::Local;
    spec.storage.local_dir = Some(config.out.clone());
    let cache = ModelCache::from_env().context("cannot locate the model cache folder")?;
    let tables = layer_tables(&spec, &cache).await?;
    let plan = plan_checked(&spec, &tables).context("cannot plan the sweep")?;
    let prefix = spec
        .storage
        .key_prefix()
        .context("invalid storage.prefix")?;
    let store = Store::local(&config.out);
    let run_prefix = prefix.run_prefix(&spec.run_id);
    let stored: HashSet<(SeedId, LayerName, u32)> = store
        .list(&run_prefix)
        .await
        .with_context(|| format!("cannot list {}", config.out.display()))?
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&run_prefix)
                .map(|r| r.trim_start_matches('/'))
        })
        .filter_map(parse_key)
        .filter(|(_, _, _, kind)| *kind == Kind::Sidecar)
        .map(|(s, l, c, _)| (s, l, c))
        .collect();
    let tasks: Vec<TaskMessage> = plan.tasks().collect();
    let expected = tasks.len();
    let todo: Vec<TaskMessage> = tasks
        .into_iter()
        .filter(|t| !stored.contains(&(t.seed.clone(), t.layer.clone(), t.channel)))
        .collect();
    let already_stored = expected - todo.len();
    let manifest_key = prefix.manifest_key(&spec.run_id);
    let manifest = serde_json::json!({
        "run_id": spec.run_id.to_string(),
        "spec": spec.redacted(),
        "code_version": crate::pipeline::CODE_VERSION,
        "task_count": expected,
        "mode": "local",
    });
    store
        .put(
            &manifest_key,
            serde_json::to_vec_pretty(&manifest)?,
            "application/json",
        )
        .await
        .context("cannot write the run manifest")?;

    let device = config.device.resolve()?;
    let (gpu, _thread) = GpuHandle::spawn(device, RenderMode::Optimise)
        .context("failed to start the render thread")?;
    let registry = Registry::new();
    let metrics = WorkerMetrics::register(&registry)?;
    let (fault, mut fault_rx) = WorkerFault::new();
    let ctx = Arc::new(BatchContext {
        store: store.clone(),
        prefix: prefix.clone(),
        gpu,
        metrics: metrics.clone(),
        worker_id: format!("local-{}", std::process::id()),
        max_attempts: spec.queue.delivery_limit.max(1),
        models: ModelResolver {
            storage: spec.storage.clone(),
            cache,
        },
        code_version: code_version(RenderMode::Optimise),
        fault,
    });
    let bar = progress_bar(config.progress, todo.len() as u64);
    eprintln!(
        "run {}: {expected} tasks, {already_stored} already stored, {} to render on {} → {}",
        spec.run_id,
        todo.len(),
        crate::device::describe(device),
        config.out.display()
    );

    let started = std::time::Instant::now();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut queue: std::collections::VecDeque<(TaskMessage, u32)> =
        todo.into_iter().map(|t| (t, 0)).collect();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut interrupted = false;
    let mut fault_reason: Option<String> = None;
    tokio::pin!(shutdown);
    loop {
        // requeued tasks go to the back with one more attempt
        // (after an interrupt or a fault they are dropped: unfinished work is found again on resume)
        if let Ok(mut l) = ledger.lock() {
            let requeued = l.requeued.drain(..);
            if !interrupted {
                queue.extend(requeued);
            }
        }
        while in_flight.len() < 2 && !queue.is_empty() {
            let batch = next_batch(&mut queue, config.batch);
            metrics.in_flight.add(batch.len() as i64);
            let items = batch
                .into_iter()
                .map(|(task, attempts)| Item {
                    handle: Box::new(LocalHandle {
                        task: task.clone(),
                        attempts,
                        ledger: ledger.clone(),
                    }),
                    task,
                })
                .collect();
            let ctx = ctx.clone();
            in_flight.spawn(async move { process_batch(items, &ctx).await });
        }
        if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            () = &mut shutdown, if !interrupted => {
                interrupted = true;
                queue.clear();
                eprintln!("\ninterrupted: finishing the batches in flight (files are renamed into place; the run resumes next time)");
            }
            Ok(()) = fault_rx.changed(), if fault_reason.is_none() => {
                fault_reason = fault_rx.borrow_and_update().clone();
                if fault_reason.is_some() {
                    interrupted = true;
                    queue.clear();
                }
            }
            done = in_flight.join_next() => {
                if let Some(Err(error)) = done {
                    tracing::error!(%error, "a batch task failed");
                }
                let images = metrics.images.get();
                bar.set_position(images);
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => bar.set_position(metrics.images.get()),
        }
        if interrupted {
            queue.clear();
        }
    }
    bar.finish_and_clear();
    if let Some(reason) = fault_reason {
        anyhow::bail!(
            "stopped: {reason}; nothing unfinished was recorded as done, and the run resumes \
             where it stopped once the cause is fixed"
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let render_busy_share = if seconds > 0.0 {
        (metrics.gpu_busy_seconds.get() / seconds).min(1.0)
    } else {
        0.0
    };
    let (rendered, dead) = {
        let l = ledger
            .lock()
            .map_err(|_| anyhow::anyhow!("the local queue's ledger is poisoned"))?;
        (metrics.images.get() as usize, l.dead.clone())
    };
    if !dead.is_empty() {
        let key = format!("{run_prefix}/dead-letters.json");
        let body = serde_json::to_vec_pretty(
            &dead
                .iter()
                .map(|(id, reason)| serde_json::json!({"task_id": id, "reason": reason}))
                .collect::<Vec<_>>(),
        )?;
        store.put(&key, body, "application/json").await?;
    }
    let gallery = if config.gallery && !interrupted {
        Some(build_gallery(&config.out, &run_prefix, spec.run_id.as_str()).await?)
    } else {
        None
    };
    Ok(LocalSummary {
        expected,
        already_stored,
        rendered,
        dead_lettered: dead,
        interrupted,
        gallery,
        seconds,
        render_busy_share,
    })
}

/// Takes the next run of tasks of one (seed, layer, settings), up to `batch`.
fn next_batch(
    queue: &mut std::collections::VecDeque<(TaskMessage, u32)>,
    batch: usize,
) -> Vec<(TaskMessage, u32)> {
    let mut out: Vec<(TaskMessage, u32)> = Vec::with_capacity(batch);
    while let Some((task, _)) = queue.front() {
        let same = out.first().is_none_or(|(first, _)| {
            first.seed == task.seed
                && first.layer == task.layer
                && first.model == task.model
                && first.settings == task.settings
        });
        if !same || out.len() >= batch.max(1) {
            break;
        }
        if let Some(next) = queue.pop_front() {
            out.push(next);
        }
    }
    out
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
    Ok(root.join("gallery").join("index.html"))
}

fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} images  {per_sec}  eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
