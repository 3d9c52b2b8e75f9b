//! The gauges `watch` exports. They live in a [`Registry`] passed in by the caller, so each test (and
//! each `watch` instance) has its own.
//!
//! Labels are bounded sets only: the run id (one per watched run) and the queue name. The text
//! exposition is [`lucid_telemetry::encode`].

use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The coordinator's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `lucid_run_tasks_expected{run}`: planned tasks.
    pub tasks_expected: IntGaugeVec,
    /// `lucid_run_tasks_completed{run}`: planned tasks with a stored sidecar.
    pub tasks_completed: IntGaugeVec,
    /// `lucid_run_tasks_failed{run}`: messages in the dead-letter queue.
    pub tasks_failed: IntGaugeVec,
    /// `lucid_queue_ready_messages{queue}`: tasks ready for delivery.
    pub queue_ready: IntGaugeVec,
    /// `lucid_queue_unacked_messages{queue}`: tasks delivered and not yet acknowledged.
    pub queue_unacked: IntGaugeVec,
    /// `lucid_queue_dead_messages{queue}`: messages in the dead-letter queue.
    pub queue_dead: IntGaugeVec,
    /// `lucid_coordinator_last_refresh_timestamp_seconds`: Unix time of the last complete refresh.
    pub last_refresh: Gauge,
    /// `lucid_coordinator_refresh_errors_total{source}`: failed refreshes, by `storage` or `queue`.
    pub refresh_errors: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge_vec = |name: &str, help: &str, label: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let metrics = Self {
            tasks_expected: gauge_vec(
                "lucid_run_tasks_expected",
                "Tasks planned for the run.",
                "run",
            )?,
            tasks_completed: gauge_vec(
                "lucid_run_tasks_completed",
                "Planned tasks of the run whose result sidecar is stored.",
                "run",
            )?,
            tasks_failed: gauge_vec(
                "lucid_run_tasks_failed",
                "Tasks in the dead-letter queue.",
                "run",
            )?,
            queue_ready: gauge_vec(
                "lucid_queue_ready_messages",
                "Messages ready for delivery.",
                "queue",
            )?,
            queue_unacked: gauge_vec(
                "lucid_queue_unacked_messages",
                "Messages delivered and not yet acknowledged.",
                "queue",
            )?,
            queue_dead: gauge_vec(
                "lucid_queue_dead_messages",
                "Messages in the dead-letter queue.",
                "queue",
            )?,
            last_refresh: Gauge::new(
                "lucid_coordinator_last_refresh_timestamp_seconds",
                "Unix time of the last refresh that read both storage and queue.",
            )?,
            refresh_errors: IntCounterVec::new(
                Opts::new(
                    "lucid_coordinator_refresh_errors_total",
                    "Refreshes that failed, by source.",
                ),
                &["source"],
            )?,
        };
        registry.register(Box::new(metrics.last_refresh.clone()))?;
        registry.register(Box::new(metrics.refresh_errors.clone()))?;
        Ok(metrics)
    }
}
