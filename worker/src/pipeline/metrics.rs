//! The worker's Prometheus metrics. No channel or task-id labels: every label set is bounded.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

/// Outcomes counted by `lucid_worker_tasks_total{outcome}`.
pub mod outcome {
    /// Rendered, stored and acknowledged.
    pub const OK: &str = "ok";
    /// Failed and returned to the queue for another attempt.
    pub const FAILED: &str = "failed";
    /// Given up: sent to the dead-letter queue with a reason.
    pub const DEAD_LETTERED: &str = "dead_lettered";
    /// Its result was already stored; acknowledged without work.
    pub const SKIPPED_EXISTING: &str = "skipped_existing";
}

/// Phases timed by `lucid_worker_phase_seconds{phase}`.
pub mod phase {
    /// Loading (and downloading) a model.
    pub const LOAD: &str = "load";
    /// One batch's optimisation on the device.
    pub const RENDER: &str = "render";
    /// PNG encoding of one batch.
    pub const ENCODE: &str = "encode";
    /// Storing one batch's PNGs and sidecars.
    pub const UPLOAD: &str = "upload";
    /// Fetching, decoding and preparing one probe shard's files.
    pub const PROBE_READ: &str = "probe_read";
    /// One probe shard's forward passes on the device.
    pub const PROBE_FORWARD: &str = "probe_forward";
}

/// Every metric the worker exports.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// `lucid_worker_tasks_total{outcome}`.
    pub tasks: IntCounterVec,
    /// `lucid_worker_phase_seconds{phase}` (per batch).
    pub phase_seconds: HistogramVec,
    /// `lucid_worker_batch_size`.
    pub batch_size: Histogram,
    /// `lucid_worker_images_total`.
    pub images: IntCounter,
    /// `lucid_worker_probe_images_total`: probe images run through a model and stored in a shard's
    /// result (an image probed for two models counts twice).
    pub probe_images: IntCounter,
    /// `lucid_worker_probe_files_read_total`: probe files fetched and decoded (a shard read once for
    /// the models probing it together counts once).
    pub probe_files_read: IntCounter,
    /// `lucid_worker_in_flight`: tasks received and not yet settled.
    pub in_flight: IntGauge,
    /// `lucid_worker_last_success_timestamp_seconds`.
    pub last_success: Gauge,
    /// `lucid_worker_gpu_busy_seconds_total`: time the device spent rendering (its idle share is
    /// 1 − rate of this).
    pub gpu_busy_seconds: prometheus::Counter,
    /// `lucid_worker_broker_connected`: 1 while the worker's connection to RabbitMQ is up, 0 while it
    /// is lost, recovering or being made afresh (and in local mode, which has no broker).
    pub broker_connected: IntGauge,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let tasks = IntCounterVec::new(
            Opts::new("lucid_worker_tasks_total", "Tasks settled, by outcome"),
            &["outcome"],
        )?;
        let phase_seconds = HistogramVec::new(
            HistogramOpts::new(
                "lucid_worker_phase_seconds",
                "Seconds per batch in each phase",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
            ]),
            &["phase"],
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("lucid_worker_batch_size", "Images per optimisation").buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
        )?;
        let images = IntCounter::new("lucid_worker_images_total", "Images rendered and stored")?;
        let probe_images = IntCounter::new(
            "lucid_worker_probe_images_total",
            "Probe images run through a model and stored",
        )?;
        let probe_files_read = IntCounter::new(
            "lucid_worker_probe_files_read_total",
            "Probe files fetched and decoded, once per shard read",
        )?;
        let in_flight = IntGauge::new(
            "lucid_worker_in_flight",
            "Tasks received and not yet settled",
        )?;
        let last_success = Gauge::new(
            "lucid_worker_last_success_timestamp_seconds",
            "Unix time of the last stored image",
        )?;
        let gpu_busy_seconds = prometheus::Counter::new(
            "lucid_worker_gpu_busy_seconds_total",
            "Seconds the device spent rendering",
        )?;
        let broker_connected = IntGauge::new(
            "lucid_worker_broker_connected",
            "1 while the connection to RabbitMQ is up, else 0",
        )?;
        registry.register(Box::new(tasks.clone()))?;
        registry.register(Box::new(phase_seconds.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(images.clone()))?;
        registry.register(Box::new(probe_images.clone()))?;
        registry.register(Box::new(probe_files_read.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(gpu_busy_seconds.clone()))?;
        registry.register(Box::new(broker_connected.clone()))?;
        // pre-create every label value so dashboards see zeros, not gaps
        for o in [
            outcome::OK,
            outcome::FAILED,
            outcome::DEAD_LETTERED,
            outcome::SKIPPED_EXISTING,
        ] {
            tasks.with_label_values(&[o]);
        }
        for p in [
            phase::LOAD,
            phase::RENDER,
            phase::ENCODE,
            phase::UPLOAD,
            phase::PROBE_READ,
            phase::PROBE_FORWARD,
        ] {
            phase_seconds.with_label_values(&[p]);
        }
        Ok(Self {
            tasks,
            phase_seconds,
            batch_size,
            images,
            probe_images,
            probe_files_read,
            in_flight,
            last_success,
            gpu_busy_seconds,
            broker_connected,
        })
    }

    /// Counts `n` tasks with `outcome`.
    pub fn count(&self, outcome: &str, n: usize) {
        self.tasks.with_label_values(&[outcome]).inc_by(n as u64);
    }

    /// Records `seconds` spent in `phase`.
    pub fn time(&self, phase: &str, seconds: f64) {
        self.phase_seconds
            .with_label_values(&[phase])
            .observe(seconds);
    }
}
