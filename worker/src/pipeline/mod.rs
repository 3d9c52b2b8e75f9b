//! The path from a received task to a stored, acknowledged image, the same for `serve` (RabbitMQ +
//! S3) and `local` (in-process queue + folder).
//!
//! A batch of tasks of one (run, model, layer, model location, settings) goes through small steps, each of which
//! either passes its tasks on or settles them with a typed [`Failure`]:
//! [`skip_stale`] → [`skip_stored`] (a stored sidecar means done) → [`resolve_model`] → [`render`] (the
//! render thread) → [`encode`] (PNGs, on the blocking pool) → [`upload`] (PNG, then sidecar) →
//! acknowledgement. A task is acknowledged only after both objects are stored; [`settle`] is the one
//! place that turns an outcome into an ack, a requeue or a dead letter.

pub mod failure;
pub mod gpu;
pub mod metrics;
pub mod probe;
pub mod result;
mod settle;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use lucid_proto::keys::KeyPrefix;
use lucid_proto::spec::{RenderSettings, StorageSection};
use lucid_proto::{ModelLocation, NetworkRef, TaskMessage, View};
use lucid_storage::Store;

use crate::render::{Diversity, RenderedImage, Settings};
pub use failure::{Blame, Failure, SettleError};
use gpu::{GpuHandle, GpuJob, NetworkChoice};
use lucid_coordinator::models::NetworkReadError;
use metrics::{WorkerMetrics, phase};
pub use result::{CODE_VERSION, code_version, rfc3339_now};
pub use settle::WorkerFault;
use settle::settle;

/// Uploads in flight at once per batch.
const UPLOAD_CONCURRENCY: usize = 16;

/// How a received task is settled with whatever delivered it.
pub trait TaskHandle: Send + Sync {
    /// Earlier deliveries of this task (0 on the first).
    fn delivery_count(&self) -> u32;
    /// The task is done: forget it.
    fn ack(&self) -> BoxFuture<'_, Result<(), SettleError>>;
    /// Deliver it again later.
    fn requeue(&self) -> BoxFuture<'_, Result<(), SettleError>>;
    /// Give it up, keeping it with `reason` where an operator can see and retry it.
    fn dead_letter<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, Result<(), SettleError>>;
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

/// A decoded probe task and its handle.
pub struct ProbeItem {
    /// The task.
    pub task: lucid_proto::probe::ProbeTask,
    /// Its handle.
    pub handle: Box<dyn TaskHandle>,
}

/// A delivery turned into a task of either kind: render tasks wait to be batched by layer, probe
/// tasks to be grouped by shard.
pub enum Accepted {
    /// A render task.
    Render(Item),
    /// A probe task.
    Probe(ProbeItem),
}

impl Accepted {
    /// The task's handle, to give it back.
    pub fn handle(&self) -> &dyn TaskHandle {
        match self {
            Accepted::Render(item) => item.handle.as_ref(),
            Accepted::Probe(item) => item.handle.as_ref(),
        }
    }
}

/// What settling needs of a received task of either kind.
pub trait Settleable: Send + Sync {
    /// The task's id, for the log.
    fn task_id(&self) -> &str;
    /// How it is settled.
    fn handle(&self) -> &dyn TaskHandle;
}

impl Settleable for Item {
    fn task_id(&self) -> &str {
        &self.task.task_id
    }
    fn handle(&self) -> &dyn TaskHandle {
        self.handle.as_ref()
    }
}

impl Settleable for ProbeItem {
    fn task_id(&self) -> &str {
        &self.task.task_id
    }
    fn handle(&self) -> &dyn TaskHandle {
        self.handle.as_ref()
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("task", &self.task.task_id)
            .finish()
    }
}

/// Maps a task's model location to a local path, downloading S3 models into a cache, and a probe
/// task's probe set to its opened [`FileSet`].
#[derive(Debug, Clone)]
pub struct ModelResolver {
    /// Storage settings (endpoint, credentials) used for `s3://` model locations.
    pub storage: StorageSection,
    /// The model cache.
    pub cache: lucid_storage::models::ModelCache,
    /// The probe sets opened so far, by location: one S3 client per set, not per task.
    pub probe_sets: ProbeSets,
}

/// Opened probe sets, shared by every task of a worker.
pub type ProbeSets = std::sync::Arc<tokio::sync::Mutex<BTreeMap<String, lucid_storage::FileSet>>>;

impl ModelResolver {
    /// A resolver of `storage`'s locations through `cache`, no probe set opened yet.
    pub fn new(storage: StorageSection, cache: lucid_storage::models::ModelCache) -> Self {
        ModelResolver {
            storage,
            cache,
            probe_sets: ProbeSets::default(),
        }
    }

    /// The probe set at `location`, opened on first use.
    pub async fn probe_set(
        &self,
        location: &ModelLocation,
    ) -> Result<lucid_storage::FileSet, Failure> {
        let mut sets = self.probe_sets.lock().await;
        let key = location.to_string();
        if let Some(set) = sets.get(&key) {
            return Ok(set.clone());
        }
        let set = lucid_storage::FileSet::open(location, &self.storage)
            .await
            .map_err(|e| Failure::fetching(&format!("probe set {location}"), &e))?;
        sets.insert(key, set.clone());
        Ok(set)
    }

    /// A local path for `location`.
    pub async fn resolve(&self, location: &ModelLocation) -> Result<PathBuf, Failure> {
        self.cache
            .materialize(location, &self.storage)
            .await
            .map_err(|e| Failure::fetching(&format!("model {location}"), &e))
    }

    /// How the render thread runs `network`: the native `alexnet_v2`, or a description read here
    /// (a description file from S3 through the cache). A description that does not parse is the
    /// task's fault; one that cannot be fetched is a storage failure.
    pub async fn network(&self, network: &NetworkRef) -> Result<NetworkChoice, Failure> {
        if network.is_default() {
            return Ok(NetworkChoice::Native);
        }
        let read = lucid_coordinator::models::read_network(network, &self.storage, &self.cache);
        match read.await {
            Ok(None) => Ok(NetworkChoice::TorchScript),
            Ok(Some(loaded)) => Ok(NetworkChoice::Described {
                digest: loaded.digest,
                description: Box::new(loaded.description),
            }),
            Err(NetworkReadError::Fetch { location, source }) => Err(Failure::fetching(
                &format!("network description {location}"),
                &source,
            )),
            Err(e) => Err(Failure::task(e.to_string())),
        }
    }
}

/// A batch's model on local disk and the network to run it as.
struct ResolvedModel {
    path: PathBuf,
    network: NetworkChoice,
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

/// The engine settings for a task of `view` with render settings `s`: the view's objective, and for
/// a view with copies lucid's diversity term over them, weighted by `s.diversity_weight`.
pub fn engine_settings(s: &RenderSettings, view: View) -> Settings {
    Settings {
        steps: s.steps,
        size: s.size as usize,
        objective: view.objective(),
        param: s.param,
        decorrelate: s.decorrelate,
        transforms: s.transforms,
        lr: s.lr,
        run_seed: s.run_seed,
        relu_redirect: s.relu_redirect,
        diversity: match view {
            View::Diversity { copies } => Some(Diversity {
                weight: s.diversity_weight,
                copies: copies as usize,
            }),
            _ => None,
        },
        fused_transforms: s.fused_transforms,
        fused_adam: true,
        precision: s.precision,
    }
}

/// Renders, stores and settles one batch of tasks that share run, model, layer, model location,
/// settings and view.
pub async fn process_batch(items: Vec<Item>, ctx: &BatchContext) {
    let items = skip_stale(items, ctx);
    let todo = skip_stored(items, ctx).await;
    let Some(first) = todo.first().map(|i| i.task.clone()) else {
        return;
    };
    let started = Instant::now();
    let model = match resolve_model(ctx, &first).await {
        Ok(model) => model,
        Err(failure) => {
            for item in &todo {
                settle(ctx, item, Err(failure.clone())).await;
            }
            return;
        }
    };
    let download_seconds = started.elapsed().as_secs_f64();
    let rendered = render(ctx, &first, model, todo, download_seconds).await;
    if rendered.images.is_empty() {
        return;
    }
    let encoded = encode(ctx, rendered.images).await;
    upload(ctx, encoded, rendered.seconds_per_image).await;
}

/// Drops deliveries of a lost connection: the broker delivers them again, so rendering them now
/// would only duplicate that copy's work.
fn skip_stale(items: Vec<Item>, ctx: &BatchContext) -> Vec<Item> {
    let (stale, fresh): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|i| i.handle.is_stale());
    for item in &stale {
        tracing::info!(
            task_id = %item.task.task_id,
            model = %item.task.model_id,
            layer = %item.task.layer,
            "skipping a delivery of a lost connection; the broker delivers it again"
        );
        ctx.metrics.in_flight.dec();
    }
    fresh
}

/// Acknowledges the tasks whose sidecar is stored already (idempotency) and returns the rest. A
/// sidecar that cannot be checked counts as absent: rendering again only overwrites.
async fn skip_stored(items: Vec<Item>, ctx: &BatchContext) -> Vec<Item> {
    let stored = futures::future::join_all(items.iter().map(|item| {
        let key = ctx.prefix.sidecar_key_of(&item.task);
        async move { ctx.store.exists(&key).await.unwrap_or(false) }
    }))
    .await;
    let mut todo = Vec::with_capacity(items.len());
    for (item, done) in items.into_iter().zip(stored) {
        if done {
            settle::skipped_existing(ctx, &item).await;
        } else {
            todo.push(item);
        }
    }
    todo
}

/// A local path of the batch's model, downloaded into the cache first when it lives in S3, and its
/// network.
async fn resolve_model(ctx: &BatchContext, first: &TaskMessage) -> Result<ResolvedModel, Failure> {
    Ok(ResolvedModel {
        path: ctx.models.resolve(&first.model_location).await?,
        network: ctx.models.network(&first.network).await?,
    })
}

/// The images of a batch that the render thread made, paired with their tasks (one image per copy
/// of the view, in copy order).
struct Rendered {
    images: Vec<(Item, Vec<RenderedImage>)>,
    seconds_per_image: f64,
}

/// Sends the batch to the render thread; settles the tasks it could not render and returns the rest
/// with their images.
async fn render(
    ctx: &BatchContext,
    first: &TaskMessage,
    model: ResolvedModel,
    todo: Vec<Item>,
    download_seconds: f64,
) -> Rendered {
    let channels: Vec<usize> = todo.iter().map(|i| i.task.channel as usize).collect();
    let render_started = Instant::now();
    let reply = ctx
        .gpu
        .render(|reply| GpuJob {
            model: model.path,
            network: model.network,
            model_id: first.model_id.to_string(),
            layer: first.layer.to_string(),
            channels,
            settings: engine_settings(&first.settings, first.view),
            reply,
        })
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(failure) => {
            for item in &todo {
                settle(ctx, item, Err(failure.clone())).await;
            }
            return Rendered {
                images: Vec::new(),
                seconds_per_image: 0.0,
            };
        }
    };
    ctx.metrics
        .time(phase::LOAD, download_seconds + reply.load_seconds);
    let render_seconds = (render_started.elapsed().as_secs_f64() - reply.load_seconds).max(0.0);
    if !reply.images.is_empty() {
        ctx.metrics.time(phase::RENDER, render_seconds);
        ctx.metrics.batch_size.observe(reply.images.len() as f64);
        ctx.metrics.gpu_busy_seconds.inc_by(render_seconds);
    }
    let image_count = reply.images.len();
    let mut images = Vec::with_capacity(todo.len());
    for item in todo {
        let channel = item.task.channel as usize;
        if let Some((_, failure)) = reply.failed.iter().find(|(c, _)| *c == channel) {
            settle(ctx, &item, Err(failure.clone())).await;
            continue;
        }
        let mut copies: Vec<RenderedImage> = reply
            .images
            .iter()
            .filter(|i| i.channel == channel)
            .cloned()
            .collect();
        copies.sort_by_key(|i| i.copy);
        if copies.len() == item.task.view.images() as usize {
            images.push((item, copies));
        } else {
            let failure = Failure::transient(format!(
                "the render thread returned {} of the {} images of view {}",
                copies.len(),
                item.task.view.images(),
                item.task.view
            ));
            settle(ctx, &item, Err(failure)).await;
        }
    }
    let seconds_per_image = render_seconds / image_count.max(1) as f64;
    Rendered {
        images,
        seconds_per_image,
    }
}

/// A task, its images and their PNGs (or why encoding failed).
type Encoded = (Item, Vec<RenderedImage>, Result<Vec<Vec<u8>>, Failure>);

/// Encodes the PNGs off the async runtime.
async fn encode(ctx: &BatchContext, rendered: Vec<(Item, Vec<RenderedImage>)>) -> Vec<Encoded> {
    let started = Instant::now();
    let encoded = tokio::task::spawn_blocking(move || {
        rendered
            .into_iter()
            .map(|(item, images)| {
                let pngs = images
                    .iter()
                    .map(|image| crate::encode::encode_png(&image.rgb, image.size, image.size))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Failure::transient(format!("png encoding failed: {e}")));
                (item, images, pngs)
            })
            .collect::<Vec<_>>()
    })
    .await;
    ctx.metrics
        .time(phase::ENCODE, started.elapsed().as_secs_f64());
    match encoded {
        Ok(encoded) => encoded,
        Err(error) => {
            // the blocking task panicked and took the items with it: their handles are gone unsettled,
            // so the source delivers them again
            tracing::error!(%error, "png encoding task failed");
            Vec::new()
        }
    }
}

/// Stores each image (PNG, then sidecar) and settles its task.
async fn upload(ctx: &BatchContext, encoded: Vec<Encoded>, seconds_per_image: f64) {
    let started = Instant::now();
    stream::iter(encoded)
        .for_each_concurrent(UPLOAD_CONCURRENCY, |(item, images, pngs)| async move {
            let stored = match pngs {
                Ok(pngs) => {
                    let provenance = result::provenance(&ctx.worker_id, &ctx.code_version);
                    match result::sidecar(&item.task, &images, &pngs, seconds_per_image, provenance)
                    {
                        Some(sidecar) => result::store(&ctx.store, &ctx.prefix, &sidecar, pngs)
                            .await
                            .map(|()| settle::Stored::Image {
                                objective_end: sidecar.objective_end,
                            })
                            .map_err(|e| Failure::storing(&e)),
                        None => Err(Failure::transient("the render thread returned no image")),
                    }
                }
                Err(failure) => Err(failure),
            };
            settle(ctx, &item, stored).await;
        })
        .await;
    ctx.metrics
        .time(phase::UPLOAD, started.elapsed().as_secs_f64());
}
