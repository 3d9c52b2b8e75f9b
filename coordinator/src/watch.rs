//! `watch`: a long-running exporter of a run's progress and the queue depths on `/metrics`.
//!
//! [`run`] takes a bound listener, a [`Registry`] and a shutdown future, so `main` passes `ctrl_c` and
//! tests pass their own trigger and a fresh registry. Two tasks run until shutdown: the refresher
//! (one listing and one queue-stats call every `interval`) and the shared HTTP endpoint of
//! [`lucid_telemetry::serve`] (`/metrics`, `/healthz`, `/readyz`), which on shutdown stops accepting
//! and lets open connections finish their current request for a few seconds.
//!
//! `/readyz` answers 503 until the first refresh that read both storage and the queue, then 200: a
//! probe (or a test) can wait for it before trusting the gauges.
//!
//! A failed refresh keeps the previous values, counts
//! `lucid_coordinator_refresh_errors_total{source}` and logs; a lost broker connection is re-opened on
//! the next refresh.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lucid_proto::{Plan, SweepSpec};
use lucid_queue::{Broker, ManagementApi, Topology};
use lucid_storage::Store;
use lucid_telemetry::Health;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::progress::{StoredRun, layer_progress, totals};
use crate::submit::key_prefix;

/// What to watch and how often.
pub struct WatchConfig {
    /// The run's spec.
    pub spec: SweepSpec,
    /// The run's plan (gives the expected counts).
    pub plan: Plan,
    /// The run's object store.
    pub store: Store,
    /// The AMQP URI (with credentials; never logged).
    pub amqp_uri: String,
    /// The management API base URL (for unacked counts).
    pub rabbit_api: String,
    /// Time between refreshes.
    pub interval: Duration,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` and refreshes the gauges every
/// `config.interval` until `shutdown` completes. Ready after the first complete refresh.
pub async fn run(
    listener: TcpListener,
    config: WatchConfig,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let metrics = Metrics::register(&registry).map_err(|e| Error::Metrics(e.to_string()))?;
    let health = Health::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let refresher = tokio::spawn(refresh_loop(config, metrics, health.clone(), stop_rx));
    // stop refreshing as soon as shutdown is requested, while the server drains its connections
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    };
    lucid_telemetry::serve(listener, registry, health, shutdown).await;
    if let Err(error) = refresher.await {
        tracing::warn!(%error, "refresher ended abnormally");
    }
    Ok(())
}

async fn refresh_loop(
    config: WatchConfig,
    metrics: Metrics,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let run = config.plan.run_id.to_string();
    metrics
        .tasks_expected
        .with_label_values(&[run.as_str()])
        .set(clamp(config.plan.task_count()));
    let api = ManagementApi::from_amqp_uri(&config.rabbit_api, &config.amqp_uri);
    let mut broker: Option<Broker> = None;
    loop {
        if refresh(&config, &metrics, &api, &mut broker).await && !health.is_ready() {
            tracing::info!(run = %run, "first refresh complete; ready");
            health.set_ready(true);
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            _ = stop.changed() => break,
        }
    }
    if let Some(broker) = broker
        && let Err(error) = broker.close().await
    {
        tracing::debug!(%error, "closing broker connection");
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One refresh of every gauge; whether both storage and the queue were read.
async fn refresh(
    config: &WatchConfig,
    metrics: &Metrics,
    api: &ManagementApi,
    broker: &mut Option<Broker>,
) -> bool {
    let run = config.plan.run_id.to_string();
    let mut ok = true;
    match list_done(config).await {
        Ok(done) => metrics
            .tasks_completed
            .with_label_values(&[run.as_str()])
            .set(clamp(done)),
        Err(error) => {
            ok = false;
            metrics.refresh_errors.with_label_values(&["storage"]).inc();
            let error = crate::error::chain(&error);
            tracing::warn!(%error, run = %run, "refresh: listing failed");
        }
    }
    if broker.is_none() {
        match Broker::connect(&config.amqp_uri, Topology::from_section(&config.spec.queue)).await {
            Ok(b) => *broker = Some(b),
            Err(error) => {
                let error = crate::error::chain(&error);
                tracing::warn!(%error, "refresh: cannot connect to the broker");
            }
        }
    }
    let stats = match broker.as_ref() {
        Some(b) => b
            .stats(Some(api))
            .await
            .map_err(|e| crate::error::chain(&e)),
        None => Err("no broker connection".to_owned()),
    };
    let q = &config.spec.queue;
    match stats {
        Ok(stats) => {
            metrics
                .queue_ready
                .with_label_values(&[q.tasks.as_str()])
                .set(clamp(stats.ready));
            if let Some(unacked) = stats.unacked {
                metrics
                    .queue_unacked
                    .with_label_values(&[q.tasks.as_str()])
                    .set(clamp(unacked));
            }
            metrics
                .queue_dead
                .with_label_values(&[q.dead_letter_queue.as_str()])
                .set(clamp(stats.dead));
            metrics
                .tasks_failed
                .with_label_values(&[run.as_str()])
                .set(clamp(stats.dead));
        }
        Err(error) => {
            ok = false;
            metrics.refresh_errors.with_label_values(&["queue"]).inc();
            tracing::warn!(%error, "refresh: queue stats failed; reconnecting next time");
            *broker = None;
        }
    }
    if ok {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics.last_refresh.set(now);
    }
    ok
}

async fn list_done(config: &WatchConfig) -> Result<u64> {
    let prefix = key_prefix(&config.spec)?;
    let run_prefix = prefix.run_prefix(&config.plan.run_id);
    let keys = config
        .store
        .list(&run_prefix)
        .await
        .map_err(|e| Error::storage(format!("list {run_prefix}"), e))?;
    let stored = StoredRun::classify(&run_prefix, &keys);
    Ok(totals(&layer_progress(&config.plan, &stored)).0)
}
