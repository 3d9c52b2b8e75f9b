//! The one worker loop, shared by `serve` and `local`: it takes tasks from a [`TaskSource`] (the AMQP
//! consumer or the in-process queue), groups them into batches of one (run, model id and location, layer,
//! settings) and probe tasks into groups of one shard (every model probing it, so that the shard is
//! read once), keeps at most two batches in flight (one on the render thread, one encoding and
//! uploading, so the device does not wait for storage), watches for a fault of this worker's own
//! machine, and on shutdown stops taking work, gives back what was not started, finishes the batches
//! in flight within the drain deadline and waits for the render thread. Both modes batch, drain and
//! handle faults the same way because they run this code.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::pipeline::gpu::{GpuHandle, RenderMode};
use crate::pipeline::metrics::WorkerMetrics;
use crate::pipeline::probe::process_probes;
use crate::pipeline::{
    Accepted, BatchContext, Item, ModelResolver, ProbeItem, WorkerFault, code_version,
    process_batch,
};

/// Batches in flight at once: one rendering, one encoding and uploading.
const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// How long a stopping worker waits for its render thread once no batch needs it.
const RENDER_THREAD_EXIT: Duration = Duration::from_secs(60);

/// How often the loop wakes up without an event, to start lingering batches and let the source
/// report its state.
const TICK: Duration = Duration::from_millis(50);

/// What a [`TaskSource`] yields.
pub enum Received<R> {
    /// A delivery, to be turned into a task by [`TaskSource::accept`].
    Task(R),
    /// The connection that delivered the waiting tasks is gone; their deliveries come back by
    /// themselves, so the waiting items are dropped unsettled.
    Lost,
}

/// Why the loop stopped taking work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The source has nothing left and every batch is settled.
    Completed,
    /// The shutdown future completed (SIGINT/SIGTERM, a test's trigger).
    Shutdown,
    /// This worker's own machine cannot go on (see [`crate::pipeline::Blame::Worker`]).
    Fault(String),
}

/// Where tasks come from. Its futures are polled inside `select!`, so they must be cancel-safe.
pub trait TaskSource {
    /// A delivery as it arrives.
    type Raw;
    /// The next delivery, waiting while there is none (reconnecting, for a broker). Cancelled on
    /// every turn of the loop, so it keeps what it has started (a connection attempt) in `self`.
    fn next(&mut self) -> impl Future<Output = Received<Self::Raw>>;
    /// Turns a delivery into a task of either kind, or settles it here when no batch can take it
    /// (an undecodable message is dead-lettered). Runs to completion: it is never cancelled.
    fn accept(&mut self, raw: Self::Raw) -> impl Future<Output = Option<Accepted>>;
    /// Whether more tasks can be had now without waiting; when not, a partial batch starts at once
    /// instead of lingering for more.
    fn has_more_now(&self) -> bool;
    /// Whether the source yields nothing more unless a batch gives a task back; the loop completes
    /// when this holds and no batch is waiting or in flight. A broker never is.
    fn is_exhausted(&self) -> bool;
    /// Called on every turn of the loop (a broker source reports its connection state here).
    fn observe(&mut self) {}
    /// Stops taking tasks (a consumer is cancelled, the in-process queue cleared).
    fn stop(&mut self, why: &Stop) -> impl Future<Output = ()>;
    /// Closes the source once the batches in flight are settled.
    fn close(self) -> impl Future<Output = ()>;
}

/// How a worker batches and drains.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Images per optimisation.
    pub batch: usize,
    /// How long a partial batch waits for more tasks.
    pub linger: Duration,
    /// How long shutdown may take to finish the batches in flight.
    pub drain_timeout: Duration,
    /// Tasks received and waiting for a batch at most (a broker's prefetch bounds it already).
    pub intake_limit: usize,
}

/// What the batch context is made from.
#[derive(Debug, Clone)]
pub struct ContextParts {
    /// Where results go.
    pub store: lucid_storage::Store,
    /// Key prefix of the results.
    pub prefix: lucid_proto::KeyPrefix,
    /// The compute device.
    pub device: tch::Device,
    /// What the render thread does.
    pub render_mode: RenderMode,
    /// Metrics, registered by the caller.
    pub metrics: WorkerMetrics,
    /// Recorded in sidecars.
    pub worker_id: String,
    /// Deliveries after which a failing task is dead-lettered.
    pub max_attempts: u32,
    /// Model resolution.
    pub models: ModelResolver,
}

/// A running worker: the render thread, the batch context and the loop state.
pub struct Worker<S: TaskSource> {
    source: S,
    ctx: Arc<BatchContext>,
    render_thread: std::thread::JoinHandle<()>,
    fault: tokio::sync::watch::Receiver<Option<String>>,
    options: LoopOptions,
    batcher: Batcher<Item>,
    /// Probe tasks waiting, grouped by shard.
    probes: Batcher<ProbeItem>,
    in_flight: JoinSet<()>,
}

impl<S: TaskSource> Worker<S> {
    /// Starts the render thread and builds the batch context from `parts`.
    pub fn start(parts: ContextParts, source: S, options: LoopOptions) -> std::io::Result<Self> {
        let (fault, fault_rx) = WorkerFault::new();
        let (gpu, render_thread) = GpuHandle::spawn(parts.device, parts.render_mode)?;
        if parts.render_mode != RenderMode::Optimise {
            tracing::warn!(
                mode = ?parts.render_mode,
                "BENCHMARK RENDERER: images are not optimised; use this only to measure queue and storage"
            );
        }
        let ctx = BatchContext {
            store: parts.store,
            prefix: parts.prefix,
            gpu,
            metrics: parts.metrics,
            worker_id: parts.worker_id,
            max_attempts: parts.max_attempts.max(1),
            models: parts.models,
            code_version: code_version(parts.render_mode),
            fault,
        };
        Ok(Self {
            source,
            ctx: Arc::new(ctx),
            render_thread,
            fault: fault_rx,
            batcher: Batcher::default(),
            probes: Batcher::default(),
            in_flight: JoinSet::new(),
            options,
        })
    }

    /// The metrics the batches update (for a progress display).
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.ctx.metrics
    }

    /// Runs until the source is exhausted, `shutdown` completes or a worker fault is raised; then
    /// stops taking work, gives back the waiting tasks, drains and waits for the render thread.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Stop {
        let stop = self.take_work(shutdown).await;
        self.source.stop(&stop).await;
        let waiting = self.batcher.take_all().into_iter().map(Accepted::Render);
        let probes = self.probes.take_all().into_iter().map(Accepted::Probe);
        for item in waiting.chain(probes).collect::<Vec<_>>() {
            if let Err(error) = item.handle().requeue().await {
                tracing::warn!(%error, "giving back a waiting task failed; its source delivers it again");
            }
            self.ctx.metrics.in_flight.dec();
        }
        drain(
            &mut self.in_flight,
            self.options.drain_timeout,
            &self.ctx.gpu,
        )
        .await;
        self.source.close().await;
        // the last handle to the render thread goes with the context; the thread then ends (at once
        // when idle, within one update when a stopped render is still unwinding), so the process
        // never exits while libtorch is running
        drop(self.ctx);
        join_render_thread(self.render_thread).await;
        stop
    }

    async fn take_work(&mut self, shutdown: impl Future<Output = ()>) -> Stop {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        loop {
            if self.source.is_exhausted() && self.waiting() == 0 && self.in_flight.is_empty() {
                return Stop::Completed;
            }
            let intake = self.waiting() < self.options.intake_limit;
            tokio::select! {
                () = &mut shutdown => return Stop::Shutdown,
                Ok(()) = self.fault.changed() => {
                    if let Some(reason) = self.fault.borrow_and_update().clone() {
                        tracing::error!(%reason, "stopping: this worker cannot continue; its tasks go back to the queue");
                        return Stop::Fault(reason);
                    }
                }
                received = self.source.next(), if intake => match received {
                    Received::Task(raw) => {
                        match self.source.accept(raw).await {
                            Some(Accepted::Render(item)) => {
                                self.ctx.metrics.in_flight.inc();
                                self.batcher.push(render_key(&item), item);
                            }
                            Some(Accepted::Probe(item)) => {
                                self.ctx.metrics.in_flight.inc();
                                self.probes.push(shard_key(&item), item);
                            }
                            None => {}
                        }
                    }
                    Received::Lost => {
                        let dropped = self.batcher.take_all().len() + self.probes.take_all().len();
                        self.ctx.metrics.in_flight.sub(dropped as i64);
                    }
                },
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Err(error) = done {
                        tracing::error!(%error, "a batch task failed");
                    }
                }
                _ = tick.tick() => {}
            }
            self.source.observe();
            self.dispatch();
        }
    }

    /// Tasks received and not started: render tasks waiting for a batch and probe tasks.
    fn waiting(&self) -> usize {
        self.batcher.len() + self.probes.len()
    }

    /// Starts shard groups of probe tasks first (a group grows while its shard's tasks for other
    /// models keep arriving), then full render batches, and partial ones that lingered long enough
    /// or that no more tasks are coming for right now, while fewer than two are in flight.
    fn dispatch(&mut self) {
        let flush = !self.source.has_more_now() || self.waiting() >= self.options.intake_limit;
        while self.in_flight.len() < MAX_BATCHES_IN_FLIGHT {
            let whole_shard = self.options.intake_limit;
            if let Some(items) = self
                .probes
                .take_ready(whole_shard, self.options.linger, flush)
            {
                let ctx = self.ctx.clone();
                self.in_flight
                    .spawn(async move { process_probes(items, &ctx).await });
                continue;
            }
            let Some(items) =
                self.batcher
                    .take_ready(self.options.batch, self.options.linger, flush)
            else {
                break;
            };
            let ctx = self.ctx.clone();
            self.in_flight
                .spawn(async move { process_batch(items, &ctx).await });
        }
    }
}

/// What a render batch must share: run, model id and location, layer, settings and view (the
/// diversity view shares the channel view's settings, so the view is part of the key).
fn render_key(item: &Item) -> String {
    let task = &item.task;
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        task.run_id,
        task.model_id,
        task.layer,
        task.model_location,
        task.settings.fingerprint(),
        task.view
    )
}

/// What the probe tasks of one read share, whatever the model: the run's shard of the probe set,
/// its very files (hashed: tasks of one run's index agree, and a task that does not is read on its
/// own) and the side they are prepared at.
fn shard_key(item: &ProbeItem) -> String {
    use std::hash::{Hash, Hasher};
    let task = &item.task;
    let mut files = std::collections::hash_map::DefaultHasher::new();
    task.files.hash(&mut files);
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{:016x}",
        task.run_id,
        task.probe_set,
        task.shard,
        task.side,
        files.finish()
    )
}

/// Tasks waiting, grouped by a key of what one batch of them must share.
struct Batcher<T> {
    groups: HashMap<String, Group<T>>,
    len: usize,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self {
            groups: HashMap::new(),
            len: 0,
        }
    }
}

struct Group<T> {
    since: Instant,
    items: Vec<T>,
}

impl<T> Batcher<T> {
    fn push(&mut self, key: String, item: T) {
        self.groups
            .entry(key)
            .or_insert_with(|| Group {
                since: Instant::now(),
                items: Vec::new(),
            })
            .items
            .push(item);
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The largest group that is full, older than `linger`, or any when `flush`; at most `batch`
    /// of its items.
    fn take_ready(&mut self, batch: usize, linger: Duration, flush: bool) -> Option<Vec<T>> {
        let batch = batch.max(1);
        let key = self
            .groups
            .iter()
            .filter(|(_, g)| flush || g.items.len() >= batch || g.since.elapsed() >= linger)
            .max_by_key(|(_, g)| g.items.len())
            .map(|(k, _)| k.clone())?;
        let group = self.groups.get_mut(&key)?;
        let take = group.items.len().min(batch);
        let items: Vec<T> = group.items.drain(..take).collect();
        if group.items.is_empty() {
            self.groups.remove(&key);
        } else {
            group.since = Instant::now();
        }
        self.len -= items.len();
        Some(items)
    }

    fn take_all(&mut self) -> Vec<T> {
        self.len = 0;
        self.groups.drain().flat_map(|(_, g)| g.items).collect()
    }
}

/// Waits up to `deadline` for the batches in flight; past it, stops the render (see
/// [`GpuHandle::stop`]) and abandons them: their tasks, never settled, return to their source.
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

async fn join_render_thread(render_thread: std::thread::JoinHandle<()>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_waits_for_its_siblings_until_flushed_and_the_largest_goes_first() {
        let mut b: Batcher<u32> = Batcher::default();
        let hour = Duration::from_secs(3600);
        b.push("shard 0".into(), 1);
        assert_eq!(
            b.take_ready(8, hour, false),
            None,
            "not full, not old, not flushed"
        );
        b.push("shard 1".into(), 10);
        b.push("shard 0".into(), 2);
        b.push("shard 1".into(), 11);
        b.push("shard 1".into(), 12);
        assert_eq!(b.len(), 5);
        assert_eq!(b.take_ready(8, hour, true), Some(vec![10, 11, 12]));
        assert_eq!(b.take_ready(2, hour, false), Some(vec![1, 2]), "full at 2");
        assert_eq!(b.len(), 0);
        b.push("shard 2".into(), 20);
        assert_eq!(
            b.take_ready(8, Duration::ZERO, false),
            Some(vec![20]),
            "lingered"
        );
    }
}
