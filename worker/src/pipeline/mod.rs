//! The path from a received task to a stored, acknowledged image, shared by `serve` (RabbitMQ + S3)
//! and `local` (in-process queue + folder).
//!
//! A batch of tasks of one (run, seed, layer, settings) goes through: idempotency check (a task whose
//! sidecar exists is acknowledged without work) → model resolution → the render thread → PNG encoding
//! on the blocking pool → upload of PNG then sidecar → acknowledgement. A task is acknowledged only
//! after both objects are stored; failures are retried a bounded number of times, then dead-lettered
//! with a reason.

pub mod gpu;
pub mod metrics;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use lucid_proto::keys::KeyPrefix;
use lucid_proto::result::{Provenance, RenderOutcome, ResultSidecar};
use lucid_proto::spec::{RenderSettings, StorageSection};
use lucid_proto::{ModelLocation, TaskMessage};
use lucid_storage::Store;
use sha2::{Digest, Sha256};

use crate::render::Settings;
use gpu::{GpuHandle, GpuJob, GpuReply};
use metrics::{WorkerMetrics, outcome, phase};

/// Uploads in flight at once per batch.
const UPLOAD_CONCURRENCY: usize = 16;

/// The version recorded in sidecars.
pub const CODE_VERSION: &str = concat!("lucid-worker ", env!("CARGO_PKG_VERSION"));

/// How a received task is settled with whatever delivered it.
pub trait TaskHandle: Send + Sync {
    /// Earlier deliveries of this task (0 on the first).
    fn delivery_count(&self) -> u32;
    /// The task is done: forget it.
    fn ack(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Deliver it again later.
    fn requeue(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Give it up, keeping it with `reason` where an operator can see and retry it.
    fn dead_letter<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// The handle can no longer be settled and the task was given back already (an AMQP delivery
    /// whose connection was lost): the task will come again, so working on it now is wasted.
    fn is_stale(&self) -> bool {
        false
    }
}

/// A decoded task and its handle.
pub struct Item {
    /// The task.
    pub task: TaskMessage,
    /// Its handle.
    pub handle: Box<dyn TaskHandle>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("task", &self.task.task_id)
            .finish()
    }
}

/// Maps a task's model location to a local path, downloading S3 models into a cache.
#[derive(Debug, Clone)]
pub struct ModelResolver {
    /// Storage settings (endpoint, credentials) used for `s3://` model locations.
    pub storage: StorageSection,
    /// The model cache.
    pub cache: lucid_storage::models::ModelCache,
}

/// Who a failure is due to, which decides how its task is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The task itself (a missing model, a bad layer): dead-letter it at once.
    Task,
    /// Something that may pass (a network error, an overloaded store): requeue it, within the
    /// attempt budget.
    Transient,
    /// This worker's machine (a full disk, an unwritable cache folder): requeue it and stop taking
    /// work, so that a healthy worker gets it and this one is restarted.
    Worker,
}

impl Blame {
    /// The blame for a storage error.
    pub fn of(error: &lucid_storage::StorageError) -> Self {
        if error.is_local_fault() {
            Blame::Worker
        } else if error.is_transient() {
            Blame::Transient
        } else {
            Blame::Task
        }
    }
}

impl ModelResolver {
    /// A local path for `location`; the error says who is to blame.
    pub async fn resolve(&self, location: &ModelLocation) -> Result<PathBuf, (String, Blame)> {
        self.cache
            .materialize(location, &self.storage)
            .await
            .map_err(|e| (e.to_string(), Blame::of(&e)))
    }
}

/// Where a batch reports that this worker cannot go on (see [`Blame::Worker`]); the serving loop
/// watches the receiver, stops consuming and exits with the reason.
#[derive(Debug, Clone)]
pub struct WorkerFault(tokio::sync::watch::Sender<Option<String>>);

impl WorkerFault {
    /// A new fault signal and the receiver the serving loop watches.
    pub fn new() -> (Self, tokio::sync::watch::Receiver<Option<String>>) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (Self(tx), rx)
    }

    /// Reports the fault (the first report wins).
    pub fn raise(&self, reason: &str) {
        self.0.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(reason.to_owned());
                true
            } else {
                false
            }
        });
    }
}

/// Everything a batch needs besides its items.
#[derive(Debug, Clone)]
pub struct BatchContext {
    /// Where results go.
    pub store: Store,
    /// Key prefix of the results.
    pub prefix: KeyPrefix,
    /// The render thread.
    pub gpu: GpuHandle,
    /// Metrics.
    pub metrics: WorkerMetrics,
    /// This worker's id, recorded in sidecars.
    pub worker_id: String,
    /// Deliveries after which a failing task is dead-lettered instead of requeued.
    pub max_attempts: u32,
    /// Model resolution.
    pub models: ModelResolver,
    /// The version recorded in sidecars: [`CODE_VERSION`], marked when the benchmark renderer
    /// made the images ([`code_version`]).
    pub code_version: String,
    /// Where a batch reports a fault of this worker's own machine.
    pub fault: WorkerFault,
}

/// The sidecars' `code_version` for images made in `mode`: results of the benchmark renderer say so.
pub fn code_version(mode: gpu::RenderMode) -> String {
    match mode {
        gpu::RenderMode::Optimise => CODE_VERSION.to_string(),
        gpu::RenderMode::SkipOptimisation => {
            format!("{CODE_VERSION} (benchmark renderer: stand-in images, not optimised)")
        }
    }
}

/// The engine settings for a task's render settings (lucid's ReLU redirect on, no diversity).
pub fn engine_settings(s: &RenderSettings) -> Settings {
    Settings {
        steps: s.steps,
        size: s.size as usize,
        objective: s.objective,
        param: s.param,
        decorrelate: s.decorrelate,
        transforms: s.transforms,
        lr: s.lr,
        run_seed: s.run_seed,
        relu_redirect: true,
        diversity: None,
        fused_transforms: true,
        precision: s.precision,
    }
}

/// Renders, stores and settles one batch of tasks that share run, seed, layer, model and settings.
pub async fn process_batch(items: Vec<Item>, ctx: &BatchContext) {
    let Some(first) = items.first().map(|i| i.task.clone()) else {
        return;
    };
    // deliveries of a lost connection come again from the broker; rendering them now would only
    // duplicate that copy's work
    let (stale, items): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|i| i.handle.is_stale());
    for item in &stale {
        tracing::info!(
            task_id = %item.task.task_id,
            seed = %item.task.seed,
            layer = %item.task.layer,
            "skipping a delivery of a lost connection; the broker delivers it again"
        );
        ctx.metrics.in_flight.dec();
    }
    if items.is_empty() {
        return;
    }
    // idempotency: tasks whose sidecar is stored are done
    let stored = futures::future::join_all(items.iter().map(|item| {
        let key = sidecar_key(ctx, &item.task);
        async move { ctx.store.exists(&key).await.unwrap_or(false) }
    }))
    .await;
    let mut todo = Vec::with_capacity(items.len());
    for (item, done) in items.into_iter().zip(stored) {
        if done {
            settle(ctx, &item, Settle::Ack, outcome::SKIPPED_EXISTING).await;
        } else {
            todo.push(item);
        }
    }
    if todo.is_empty() {
        return;
    }

    let started = Instant::now();
    let model = match ctx.models.resolve(&first.model).await {
        Ok(path) => path,
        Err((reason, blame)) => {
            let reason = format!("model {}: {reason}", first.model);
            for item in &todo {
                fail_with(ctx, item, &reason, blame).await;
            }
            return;
        }
    };
    let download_seconds = started.elapsed().as_secs_f64();
    let channels: Vec<usize> = todo.iter().map(|i| i.task.channel as usize).collect();
    let settings = engine_settings(&first.settings);
    let render_started = Instant::now();
    let reply = ctx
        .gpu
        .render(|reply| GpuJob {
            model,
            seed: first.seed.to_string(),
            layer: first.layer.to_string(),
            channels: channels.clone(),
            settings,
            reply,
        })
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(reason) => GpuReply {
            output: None,
            refused: Vec::new(),
            transient: Some(reason),
            load_seconds: 0.0,
        },
    };
    ctx.metrics
        .time(phase::LOAD, download_seconds + reply.load_seconds);
    let render_seconds = (render_started.elapsed().as_secs_f64() - reply.load_seconds).max(0.0);

    // settle refused and failed channels; keep the rendered ones
    let mut rendered = Vec::new();
    let images = reply.output.map(|o| o.images).unwrap_or_default();
    if !images.is_empty() {
        ctx.metrics.time(phase::RENDER, render_seconds);
        ctx.metrics.batch_size.observe(images.len() as f64);
        ctx.metrics.gpu_busy_seconds.inc_by(render_seconds);
    }
    for item in todo {
        let channel = item.task.channel as usize;
        if let Some((_, reason)) = reply.refused.iter().find(|(c, _)| *c == channel) {
            fail(ctx, &item, reason, true).await;
        } else if let Some(image) = images.iter().find(|i| i.channel == channel) {
            rendered.push((item, image.clone()));
        } else {
            let reason = reply
                .transient
                .clone()
                .unwrap_or_else(|| "the render thread returned no image".into());
            fail(ctx, &item, &reason, false).await;
        }
    }
    if rendered.is_empty() {
        return;
    }
    let per_image = render_seconds / rendered.len() as f64;

    // encode off the async runtime
    let encode_started = Instant::now();
    let encoded = tokio::task::spawn_blocking(move || {
        rendered
            .into_iter()
            .map(|(item, image)| {
                let png = crate::encode::encode_png(&image.rgb, image.size, image.size);
                (item, image, png)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let encoded = match encoded {
        Ok(encoded) => encoded,
        Err(error) => {
            tracing::error!(%error, "png encoding task failed");
            return;
        }
    };
    ctx.metrics
        .time(phase::ENCODE, encode_started.elapsed().as_secs_f64());

    let upload_started = Instant::now();
    stream::iter(encoded)
        .for_each_concurrent(UPLOAD_CONCURRENCY, |(item, image, png)| async move {
            let png = match png {
                Ok(png) => png,
                Err(e) => {
                    fail(ctx, &item, &format!("png encoding failed: {e}"), false).await;
                    return;
                }
            };
            let sidecar = ResultSidecar::from_task(
                &item.task,
                RenderOutcome {
                    objective_start: image.objective_start,
                    objective_end: image.objective_end,
                    render_seconds: per_image,
                    png_sha256: hex(&Sha256::digest(&png)),
                },
                Provenance {
                    worker_id: ctx.worker_id.clone(),
                    code_version: ctx.code_version.clone(),
                    created_at: rfc3339_now(),
                },
            );
            let png_key = ctx.prefix.png_key(
                &item.task.run_id,
                &item.task.seed,
                &item.task.layer,
                item.task.channel,
            );
            let stored = async {
                ctx.store.put(&png_key, png, "image/png").await?;
                ctx.store
                    .put(
                        &sidecar_key(ctx, &item.task),
                        sidecar.encode(),
                        "application/json",
                    )
                    .await
            }
            .await;
            match stored {
                Ok(()) => {
                    ctx.metrics.images.inc();
                    settle(ctx, &item, Settle::Ack, outcome::OK).await;
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    ctx.metrics.last_success.set(now);
                    tracing::info!(
                        task_id = %item.task.task_id,
                        seed = %item.task.seed,
                        layer = %item.task.layer,
                        channel = item.task.channel,
                        objective_end = image.objective_end,
                        "stored"
                    );
                }
                Err(e) => {
                    let reason = format!("storing the result failed: {e}");
                    let blame = match Blame::of(&e) {
                        // an error the store does not call transient is still retried: the
                        // task is fine, the store refused
                        Blame::Task => Blame::Transient,
                        blame => blame,
                    };
                    fail_with(ctx, &item, &reason, blame).await
                }
            }
        })
        .await;
    ctx.metrics
        .time(phase::UPLOAD, upload_started.elapsed().as_secs_f64());
}

fn sidecar_key(ctx: &BatchContext, task: &TaskMessage) -> String {
    ctx.prefix
        .sidecar_key(&task.run_id, &task.seed, &task.layer, task.channel)
}

enum Settle {
    Ack,
    Requeue,
    DeadLetter(String),
}

async fn settle(ctx: &BatchContext, item: &Item, how: Settle, outcome: &str) {
    let result = match &how {
        Settle::Ack => item.handle.ack().await,
        Settle::Requeue => item.handle.requeue().await,
        Settle::DeadLetter(reason) => item.handle.dead_letter(reason).await,
    };
    ctx.metrics.in_flight.dec();
    ctx.metrics.count(outcome, 1);
    if let Err(error) = result {
        // the delivery is still owned by the broker: it will come back, and the idempotency check
        // settles it then
        tracing::warn!(task_id = %item.task.task_id, %error, "settling the delivery failed; it will be redelivered");
    }
}

/// Settles a failure by who is to blame: [`Blame::Worker`] requeues the task without judging it and
/// raises the worker fault; the others go to [`fail`].
pub async fn fail_with(ctx: &BatchContext, item: &Item, reason: &str, blame: Blame) {
    match blame {
        Blame::Task => fail(ctx, item, reason, true).await,
        Blame::Transient => fail(ctx, item, reason, false).await,
        Blame::Worker => {
            tracing::error!(task_id = %item.task.task_id, %reason, "this worker cannot store or cache files; requeueing the task and stopping");
            ctx.fault.raise(reason);
            settle(ctx, item, Settle::Requeue, outcome::FAILED).await;
        }
    }
}

/// Settles a failure: permanent ones, and transient ones out of attempts, are dead-lettered with the
/// reason; the others are requeued.
pub async fn fail(ctx: &BatchContext, item: &Item, reason: &str, permanent: bool) {
    let attempts = item.handle.delivery_count() + 1;
    if permanent || attempts >= ctx.max_attempts {
        let reason = if permanent {
            reason.to_string()
        } else {
            format!("{reason} (gave up after {attempts} attempts)")
        };
        tracing::warn!(task_id = %item.task.task_id, seed = %item.task.seed, layer = %item.task.layer, %reason, "dead-lettering task");
        settle(
            ctx,
            item,
            Settle::DeadLetter(reason),
            outcome::DEAD_LETTERED,
        )
        .await;
    } else {
        tracing::warn!(task_id = %item.task.task_id, attempts, %reason, "task failed; requeueing");
        settle(ctx, item, Settle::Requeue, outcome::FAILED).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time as RFC 3339 in UTC with seconds precision.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
