//! `lucid-worker serve`: the GPU worker of a distributed sweep.
//!
//! One async task consumes the task queue and groups deliveries of the same (run, seed, layer, model,
//! settings) into batches (up to the batch size, or after a short linger); at most two batches are in
//! flight, one on the render thread and one encoding and uploading, so the device does not wait for
//! storage. Shutdown stops consuming, finishes the batches in flight within the drain deadline,
//! requeues what was not started, and returns.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use lucid_proto::spec::SweepSpec;
use lucid_queue::{Broker, Consumer, Delivery, Topology};
use lucid_storage::Store;
use lucid_telemetry::Health;
use prometheus::Registry;
use tokio::task::JoinSet;

use crate::device::DeviceChoice;
use crate::pipeline::gpu::{GpuHandle, RenderMode};
use crate::pipeline::metrics::{WorkerMetrics, outcome};
use crate::pipeline::{
    BatchContext, Item, ModelResolver, TaskHandle, WorkerFault, code_version, process_batch,
};

/// Batches in flight at once: one rendering, one encoding and uploading.
const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// Everything `serve` needs, resolved from the command line, the spec and the environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The sweep spec (storage, queue, render defaults).
    pub spec: SweepSpec,
    /// The AMQP URI, with credentials (from the environment or a file, never a flag).
    pub amqp_uri: String,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub listen: SocketAddr,
    /// How long shutdown may take to finish the batches in flight.
    pub drain_timeout: Duration,
    /// The compute device.
    pub device: DeviceChoice,
    /// Images per optimisation.
    pub batch: usize,
    /// How long a partial batch waits for more tasks.
    pub linger: Duration,
    /// This worker's id, recorded in sidecars and used as the consumer tag.
    pub worker_id: String,
    /// Cache folder for models downloaded from S3.
    pub model_cache: PathBuf,
    /// What the render thread does; anything but [`RenderMode::Optimise`] is for benchmarks only.
    pub render_mode: RenderMode,
}

struct AmqpHandle(Delivery);

impl TaskHandle for AmqpHandle {
    fn delivery_count(&self) -> u32 {
        self.0.delivery_count
    }
    fn ack(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.ack().await.map_err(|e| e.to_string()) })
    }
    fn requeue(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.requeue().await.map_err(|e| e.to_string()) })
    }
    fn dead_letter<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.0.dead_letter(reason).await.map_err(|e| e.to_string()) })
    }
    fn is_stale(&self) -> bool {
        self.0.is_stale()
    }
}

/// Tasks waiting to fill a batch.
struct Group {
    since: Instant,
    items: Vec<Item>,
}

/// Runs the worker until `shutdown` completes (or the render thread dies).
pub async fn run(
    config: ServeConfig,
    registry: Registry,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let metrics = WorkerMetrics::register(&registry).context("failed to register metrics")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let (http_stop_tx, http_stop) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(lucid_telemetry::serve(
        listener,
        registry.clone(),
        health.clone(),
        async {
            let _ = http_stop.await;
        },
    ));

    let store = Store::from_section(&config.spec.storage)
        .await
        .context("failed to open result storage")?;
    let prefix = config
        .spec
        .storage
        .key_prefix()
        .context("invalid storage prefix")?;
    let device = config.device.resolve()?;
    let (fault, mut fault_rx) = WorkerFault::new();
    let (gpu, render_thread) = GpuHandle::spawn(device, config.render_mode)
        .context("failed to start the render thread")?;
    let ctx = BatchContext {
        store,
        prefix,
        gpu,
        metrics: metrics.clone(),
        worker_id: config.worker_id.clone(),
        max_attempts: config.spec.queue.delivery_limit.max(1),
        models: ModelResolver {
            storage: config.spec.storage.clone(),
            cache: lucid_storage::models::ModelCache::new(config.model_cache.clone()),
        },
        code_version: code_version(config.render_mode),
        fault,
    };
    if config.render_mode != RenderMode::Optimise {
        tracing::warn!(
            mode = ?config.render_mode,
            "BENCHMARK RENDERER: images are not optimised; use this only to measure queue and storage"
        );
    }
    let ctx = Arc::new(ctx);
    tracing::info!(
        worker_id = %config.worker_id,
        device = %crate::device::describe(device),
        batch = config.batch,
        "worker started"
    );

    tokio::pin!(shutdown);
    let max_bytes = config.spec.queue.max_message_bytes;
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut backoff = Duration::from_millis(500);
    let mut stopping = false;
    let mut fault_reason: Option<String> = None;

    'connection: while !stopping {
        let connected = tokio::select! {
            c = connect(&config) => c,
            () = &mut shutdown => break 'connection,
        };
        let (broker, mut consumer) = match connected {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms = backoff.as_millis() as u64, "cannot reach the broker");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break 'connection,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        metrics.broker_connected.set(1);
        health.set_ready(true);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    stopping = true;
                    health.set_ready(false);
                    if let Err(error) = consumer.cancel().await {
                        tracing::warn!(%error, "cancelling the consumer failed");
                    }
                    break;
                }
                Ok(()) = fault_rx.changed(), if fault_reason.is_none() => {
                    let reason = fault_rx.borrow_and_update().clone();
                    if let Some(reason) = reason {
                        tracing::error!(%reason, "stopping: this worker cannot continue; its tasks go back to the queue");
                        fault_reason = Some(reason);
                        stopping = true;
                        health.set_ready(false);
                        health.set_broken();
                        if let Err(error) = consumer.cancel().await {
                            tracing::warn!(%error, "cancelling the consumer failed");
                        }
                        break;
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        metrics.in_flight.inc();
                        receive(delivery, max_bytes, &mut groups, &ctx).await;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "consumer failed; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!("consumer closed; reconnecting");
                        break;
                    }
                },
                _ = tick.tick() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(error) = done {
                        tracing::error!(%error, "a batch task failed");
                    }
                }
            }
            // ready, and counted connected, only while the connection is up: lapin's recovery
            // after a loss takes up to `RECOVERY_DEADLINE` before the consumer reports anything
            let up = broker.is_connected();
            metrics.broker_connected.set(i64::from(up));
            health.set_ready(up);
            dispatch(
                &mut groups,
                &mut in_flight,
                &ctx,
                config.batch,
                config.linger,
                false,
            );
        }
        metrics.broker_connected.set(0);
        health.set_ready(false);
        if stopping {
            // what was received but not started goes back to the queue now
            for (_, group) in groups.drain() {
                for item in group.items {
                    if let Err(error) = item.handle.requeue().await {
                        tracing::warn!(task_id = %item.task.task_id, %error, "requeue on shutdown failed; the broker returns it when the channel closes");
                    }
                    metrics.in_flight.dec();
                }
            }
            drain(&mut in_flight, config.drain_timeout, &ctx.gpu).await;
            if let Err(error) = broker.close().await {
                tracing::debug!(%error, "closing the broker connection");
            }
        } else {
            // the channel is gone: its unsettled deliveries come back from the broker by themselves
            let dropped: usize = groups.drain().map(|(_, g)| g.items.len()).sum();
            metrics.in_flight.sub(dropped as i64);
        }
    }
    drain(&mut in_flight, config.drain_timeout, &ctx.gpu).await;
    // the last handle to the render thread goes with the context; the thread then ends (at once when
    // idle, within one update when a stopped render is still unwinding), and the process never exits
    // while libtorch is running
    drop(ctx);
    let joined = tokio::task::spawn_blocking(move || render_thread.join());
    match tokio::time::timeout(RENDER_THREAD_EXIT, joined).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(_))) => tracing::error!("the render thread panicked while stopping"),
        Ok(Err(error)) => tracing::error!(%error, "waiting for the render thread failed"),
        Err(_) => tracing::error!(
            seconds = RENDER_THREAD_EXIT.as_secs(),
            "the render thread did not stop in time"
        ),
    }
    let _ = http_stop_tx.send(());
    let _ = http.await;
    if let Some(reason) = fault_reason {
        anyhow::bail!("stopped because this worker cannot continue: {reason}");
    }
    tracing::info!("worker stopped");
    Ok(())
}

async fn connect(config: &ServeConfig) -> Result<(Broker, Consumer)> {
    let broker = Broker::connect(&config.amqp_uri, Topology::from_section(&config.spec.queue))
        .await
        .context("failed to connect to the broker")?;
    let prefetch = u16::try_from((config.batch * 2).max(usize::from(config.spec.queue.prefetch)))
        .unwrap_or(u16::MAX);
    let consumer = broker
        .consume(&config.worker_id, prefetch)
        .await
        .context("failed to start consuming")?;
    Ok((broker, consumer))
}

/// Decodes a delivery and files it into its group; undecodable ones are dead-lettered at once.
async fn receive(
    delivery: Delivery,
    max_bytes: usize,
    groups: &mut HashMap<String, Group>,
    ctx: &BatchContext,
) {
    match delivery.decode(max_bytes) {
        Ok(task) => {
            let key = format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
                task.run_id,
                task.seed,
                task.layer,
                task.model,
                task.settings.fingerprint()
            );
            groups
                .entry(key)
                .or_insert_with(|| Group {
                    since: Instant::now(),
                    items: Vec::new(),
                })
                .items
                .push(Item {
                    task,
                    handle: Box::new(AmqpHandle(delivery)),
                });
        }
        Err(error) => {
            let id = delivery
                .message_id
                .clone()
                .unwrap_or_else(|| "<no message id>".into());
            let reason = format!("undecodable task: {error}");
            tracing::warn!(task_id = %id, %reason, "dead-lettering message");
            let result = delivery.dead_letter(&reason).await;
            ctx.metrics.in_flight.dec();
            ctx.metrics.count(outcome::DEAD_LETTERED, 1);
            if let Err(error) = result {
                tracing::warn!(task_id = %id, %error, "dead-lettering failed; the message was requeued");
            }
        }
    }
}

/// Starts full batches, and partial ones older than `linger`, while fewer than two are in flight.
fn dispatch(
    groups: &mut HashMap<String, Group>,
    in_flight: &mut JoinSet<()>,
    ctx: &Arc<BatchContext>,
    batch: usize,
    linger: Duration,
    flush_all: bool,
) {
    while in_flight.len() < MAX_BATCHES_IN_FLIGHT {
        let ready = groups
            .iter()
            .filter(|(_, g)| flush_all || g.items.len() >= batch || g.since.elapsed() >= linger)
            .max_by_key(|(_, g)| g.items.len())
            .map(|(k, _)| k.clone());
        let Some(key) = ready else { break };
        let Some(group) = groups.get_mut(&key) else {
            break;
        };
        let take = group.items.len().min(batch);
        let items: Vec<Item> = group.items.drain(..take).collect();
        if group.items.is_empty() {
            groups.remove(&key);
        } else {
            group.since = Instant::now();
        }
        let ctx = ctx.clone();
        in_flight.spawn(async move { process_batch(items, &ctx).await });
    }
}

/// How long a stopping worker waits for its render thread once no batch needs it.
const RENDER_THREAD_EXIT: Duration = Duration::from_secs(60);

/// Waits up to `deadline` for the batches in flight; past it, stops the render (see
/// [`GpuHandle::stop`]) and abandons them: their deliveries, never settled, return to the queue when
/// the channel closes.
async fn drain(in_flight: &mut JoinSet<()>, deadline: Duration, gpu: &GpuHandle) {
    if in_flight.is_empty() {
        return;
    }
    tracing::info!(batches = in_flight.len(), "finishing the batches in flight");
    let finished = tokio::time::timeout(deadline, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            batches = in_flight.len(),
            "batches still running after the drain deadline; their tasks return to the queue"
        );
        gpu.stop();
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
    }
}
