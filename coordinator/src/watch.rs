//! `watch`: a long-running exporter of a run's progress and the queue depths on `/metrics`.
//!
//! [`run`] takes a bound listener, a [`Registry`] and a shutdown future, so `main` passes `ctrl_c` and
//! tests pass their own trigger and a fresh registry. Two tasks run until shutdown: the refresher
//! (one listing and one queue-stats call every `interval`) and the HTTP server (`/metrics`,
//! `/healthz`). On shutdown the server stops accepting, asks open connections to finish their current
//! request, and gives them [`DRAIN_TIMEOUT`] before dropping them.
//!
//! A failed refresh keeps the previous values, counts
//! `lucid_coordinator_refresh_errors_total{source}` and logs; a lost broker connection is re-opened on
//! the next refresh.

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lucid_proto::{Plan, SweepSpec};
use lucid_queue::{Broker, ManagementApi, Topology};
use lucid_storage::Store;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::metrics::{Metrics, encode};
use crate::progress::{StoredRun, layer_progress, totals};
use crate::submit::key_prefix;

/// How long open connections get to finish after shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Serves `/metrics` and `/healthz` on `listener` and refreshes the gauges every `config.interval`
/// until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: WatchConfig,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let metrics = Metrics::register(&registry).map_err(|e| Error::Metrics(e.to_string()))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let refresher = tokio::spawn(refresh_loop(config, metrics, stop_rx.clone()));
    let server = serve(listener, registry, stop_rx);
    tokio::pin!(server);
    tokio::select! {
        () = shutdown => tracing::info!("shutdown requested"),
        () = &mut server => tracing::warn!("server stopped"),
    }
    let _ = stop_tx.send(true);
    server.await;
    if let Err(error) = refresher.await {
        tracing::warn!(%error, "refresher ended abnormally");
    }
    Ok(())
}

async fn refresh_loop(config: WatchConfig, metrics: Metrics, mut stop: watch::Receiver<bool>) {
    let run = config.plan.run_id.to_string();
    metrics
        .tasks_expected
        .with_label_values(&[run.as_str()])
        .set(clamp(config.plan.task_count()));
    let api = ManagementApi::from_amqp_uri(&config.rabbit_api, &config.amqp_uri);
    let mut broker: Option<Broker> = None;
    loop {
        refresh(&config, &metrics, &api, &mut broker).await;
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

async fn refresh(
    config: &WatchConfig,
    metrics: &Metrics,
    api: &ManagementApi,
    broker: &mut Option<Broker>,
) {
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

async fn serve(listener: TcpListener, registry: Registry, stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut accept_stop = stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = accept_stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let mut conn_stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(respond(&registry, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = conn_stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
        // reap finished connections so the set does not grow
        while connections.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain timeout; dropping them"
        );
        connections.abort_all();
    }
}

fn respond(registry: &Registry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            encode(registry),
        ),
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
