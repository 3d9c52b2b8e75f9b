//! `lucid-worker serve`: the GPU worker of a distributed sweep.
//!
//! The broker is the [`TaskSource`] of the shared worker loop ([`crate::runner`]), which batches,
//! drains and handles faults exactly as in `local`; this module connects, reconnects with backoff,
//! decodes deliveries and keeps `/readyz` and `lucid_worker_broker_connected` true to the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use lucid_proto::Work;
use lucid_proto::spec::SweepSpec;
use lucid_queue::{Broker, Consumer, Delivery, Topology};
use lucid_storage::Store;
use lucid_telemetry::Health;
use prometheus::Registry;

use crate::device::DeviceChoice;
use crate::pipeline::gpu::RenderMode;
use crate::pipeline::metrics::{WorkerMetrics, outcome};
use crate::pipeline::{Accepted, Item, ModelResolver, ProbeItem, SettleError, TaskHandle};
use crate::runner::{ContextParts, LoopOptions, Received, Stop, TaskSource, Worker};

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
    fn ack(&self) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async move { Ok(self.0.ack().await?) })
    }
    fn requeue(&self) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async move { Ok(self.0.requeue().await?) })
    }
    fn dead_letter<'a>(&'a self, reason: &'a str) -> BoxFuture<'a, Result<(), SettleError>> {
        Box::pin(async move { Ok(self.0.dead_letter(reason).await?) })
    }
    fn is_stale(&self) -> bool {
        self.0.is_stale()
    }
}

/// A connection attempt in progress.
type Connecting = Pin<Box<dyn Future<Output = Result<(Broker, Consumer)>>>>;

/// The broker as a task source: connects (and reconnects with backoff), decodes deliveries
/// (undecodable ones are dead-lettered here, since no batch can take them), and keeps readiness and
/// the connection gauge true to the connection.
struct AmqpSource {
    config: ServeConfig,
    health: Arc<Health>,
    metrics: WorkerMetrics,
    connection: Option<(Broker, Consumer)>,
    /// The connection attempt in progress: kept here, since the loop cancels `next` on every turn.
    connecting: Option<Connecting>,
    /// No attempt before this, after a failed one.
    retry_at: tokio::time::Instant,
    backoff: Duration,
}

impl AmqpSource {
    fn set_connected(&self, up: bool) {
        self.metrics.broker_connected.set(i64::from(up));
        self.health.set_ready(up);
    }

    /// Waits out the backoff, then drives the connection attempt (kept in `self`, so a cancelled
    /// call resumes it) to its end.
    async fn connect(&mut self) {
        tokio::time::sleep_until(self.retry_at).await;
        let config = self.config.clone();
        let attempt = self
            .connecting
            .get_or_insert_with(|| Box::pin(async move { connect(&config).await }));
        let result = attempt.await;
        self.connecting = None;
        match result {
            Ok(pair) => {
                self.connection = Some(pair);
                self.backoff = INITIAL_BACKOFF;
                self.set_connected(true);
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms = self.backoff.as_millis() as u64, "cannot reach the broker");
                self.retry_at = tokio::time::Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// The connection is gone: its unsettled deliveries come back from the broker by themselves.
    fn lose_connection(&mut self, error: Option<lucid_queue::QueueError>) -> Received<Delivery> {
        match error {
            Some(error) => tracing::warn!(%error, "consumer failed; reconnecting"),
            None => tracing::warn!("consumer closed; reconnecting"),
        }
        self.connection = None;
        self.set_connected(false);
        Received::Lost
    }

    /// A decoded delivery, or `None` when it was undecodable and has been dead-lettered.
    async fn decode(&self, delivery: Delivery) -> Option<Accepted> {
        match delivery.decode(self.config.spec.queue.max_message_bytes) {
            Ok(Work::Render(task)) => Some(Accepted::Render(Item {
                task,
                handle: Box::new(AmqpHandle(delivery)),
            })),
            Ok(Work::Probe(task)) => Some(Accepted::Probe(ProbeItem {
                task,
                handle: Box::new(AmqpHandle(delivery)),
            })),
            Err(error) => {
                let id = delivery
                    .message_id
                    .clone()
                    .unwrap_or_else(|| "<no message id>".into());
                let reason = format!("undecodable task: {error}");
                tracing::warn!(task_id = %id, %reason, "dead-lettering message");
                let result = delivery.dead_letter(&reason).await;
                self.metrics.count(outcome::DEAD_LETTERED, 1);
                if let Err(error) = result {
                    tracing::warn!(task_id = %id, %error, "dead-lettering failed; the message was requeued");
                }
                None
            }
        }
    }
}

impl TaskSource for AmqpSource {
    type Raw = Delivery;

    async fn accept(&mut self, delivery: Delivery) -> Option<Accepted> {
        self.decode(delivery).await
    }

    async fn next(&mut self) -> Received<Delivery> {
        loop {
            let Some((_, consumer)) = self.connection.as_mut() else {
                self.connect().await;
                continue;
            };
            return match consumer.next().await {
                Some(Ok(delivery)) => Received::Task(delivery),
                Some(Err(error)) => self.lose_connection(Some(error)),
                None => self.lose_connection(None),
            };
        }
    }

    fn has_more_now(&self) -> bool {
        // a broker may always deliver more: partial batches linger
        true
    }

    fn is_exhausted(&self) -> bool {
        false
    }

    fn observe(&mut self) {
        // ready, and counted connected, only while the connection is up: lapin's recovery after a
        // loss takes up to `RECOVERY_DEADLINE` before the consumer reports anything
        if let Some((broker, _)) = &self.connection {
            self.set_connected(broker.is_connected());
        }
    }

    async fn stop(&mut self, why: &Stop) {
        self.health.set_ready(false);
        if matches!(why, Stop::Fault(_)) {
            self.health.set_broken();
        }
        if let Some((_, consumer)) = &self.connection
            && let Err(error) = consumer.cancel().await
        {
            tracing::warn!(%error, "cancelling the consumer failed");
        }
    }

    async fn close(self) {
        self.set_connected(false);
        if let Some((broker, _)) = self.connection
            && let Err(error) = broker.close().await
        {
            tracing::debug!(%error, "closing the broker connection");
        }
    }
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the worker until `shutdown` completes (or a fault of this worker's machine stops it).
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
    let stopped = work(config, metrics, health, shutdown).await;
    let _ = http_stop_tx.send(());
    let _ = http.await;
    match stopped? {
        Stop::Fault(reason) => {
            anyhow::bail!("stopped because this worker cannot continue: {reason}")
        }
        Stop::Completed | Stop::Shutdown => {
            tracing::info!("worker stopped");
            Ok(())
        }
    }
}

async fn work(
    config: ServeConfig,
    metrics: WorkerMetrics,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stop> {
    let store = Store::from_section(&config.spec.storage)
        .await
        .context("failed to open result storage")?;
    let prefix = config
        .spec
        .storage
        .key_prefix()
        .context("invalid storage prefix")?;
    let device = config.device.resolve()?;
    let parts = ContextParts {
        store,
        prefix,
        device,
        render_mode: config.render_mode,
        metrics: metrics.clone(),
        worker_id: config.worker_id.clone(),
        max_attempts: config.spec.queue.delivery_limit,
        models: ModelResolver::new(
            config.spec.storage.clone(),
            lucid_storage::models::ModelCache::new(config.model_cache.clone()),
        ),
    };
    let options = LoopOptions {
        batch: config.batch,
        linger: config.linger,
        drain_timeout: config.drain_timeout,
        // the consumer's prefetch bounds what waits for a batch
        intake_limit: usize::MAX,
    };
    tracing::info!(
        worker_id = %config.worker_id,
        device = %crate::device::describe(device),
        batch = config.batch,
        "worker started"
    );
    let source = AmqpSource {
        config,
        health,
        metrics,
        connection: None,
        connecting: None,
        retry_at: tokio::time::Instant::now(),
        backoff: INITIAL_BACKOFF,
    };
    let worker =
        Worker::start(parts, source, options).context("failed to start the render thread")?;
    Ok(worker.run(shutdown).await)
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
