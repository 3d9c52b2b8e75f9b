//! Shared service plumbing: the HTTP endpoint every long-running lucid-sweep process exposes
//! (`/metrics` in the Prometheus text format, `/healthz`, `/readyz`) and tracing set-up.
//!
//! The server takes its shutdown as a future (as tokio-rs/mini-redis does): `main` passes a signal,
//! tests pass their own trigger.
#![warn(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long open connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Liveness and readiness as the probes see them.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    broken: AtomicBool,
}

impl Health {
    /// A process that is alive but not ready yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks the process ready (or not) to take work: `/readyz` answers 200 or 503.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Marks the process as broken beyond repair: `/healthz` answers 503 so it gets restarted.
    pub fn set_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }
}

/// Encodes every metric of `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(%error, "failed to encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes, then lets
/// open connections finish (up to five seconds).
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
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
        let health = health.clone();
        let mut conn_stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&registry, &health, &req);
                async move { Ok::<_, Infallible>(response) }
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
        while connections.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
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

fn respond(registry: &Registry, health: &Health, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status, body: &str| (status, "text/plain; charset=utf-8", body.to_owned());
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            encode(registry),
        ),
        (&Method::GET, "/healthz") if health.broken.load(Ordering::SeqCst) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "broken\n")
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if health.is_ready() => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
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

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Sets up tracing to stderr with the filter from `filter_env` (e.g. `LUCID_LOG=info`), `default`
/// when unset.
pub fn init_tracing(format: LogFormat, filter_env: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(error) = result {
        eprintln!("tracing already initialised: {error}");
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends before killing a pod).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}

/// `error` and its causes, joined by `: ` (what `anyhow`'s `{:#}` prints), for logs, reports and a
/// binary's last word. Unlike `{:#}` it skips a cause whose text its error already ends with, as
/// errors of the form `"model {model}: {source}"` do.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chain_joins_causes_and_skips_one_its_error_already_shows() {
        let repeated = Layer(
            "cannot plan run",
            Some(Box::new(Layer(
                "model a: range 0-23 is beyond the layer width 16",
                Some(Box::new(Layer(
                    "range 0-23 is beyond the layer width 16",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&repeated),
            "cannot plan run: model a: range 0-23 is beyond the layer width 16"
        );
        let plain = Layer("storing failed", Some(Box::new(Layer("http 403", None))));
        assert_eq!(error_chain(&plain), "storing failed: http 403");
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let registry = Registry::new();
        let counter =
            prometheus::IntCounter::new("lucid_test_total", "a test counter").expect("counter");
        registry
            .register(Box::new(counter.clone()))
            .expect("register");
        counter.inc_by(3);
        let health = Health::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, registry, health.clone(), async {
            let _ = rx.await;
        }));
        let get = |path: &str| {
            let url = format!("http://{addr}{path}");
            async move {
                let r = reqwest::get(url).await.expect("request");
                (r.status().as_u16(), r.text().await.unwrap_or_default())
            }
        };
        let (status, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("lucid_test_total 3"), "{body}");
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 503);
        health.set_ready(true);
        assert_eq!(get("/readyz").await.0, 200);
        health.set_broken();
        assert_eq!(get("/healthz").await.0, 503);
        assert_eq!(get("/nope").await.0, 404);
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops after shutdown")
            .expect("server task");
    }
}

/// The value of the first sample `name` in the Prometheus text exposition `text` whose labels
/// include every `(label, value)` pair of `labels`; `None` when no sample matches or its value does
/// not parse. Label values are compared as written (escaped) in the exposition.
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (sample_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if sample_name != name {
                return None;
            }
            let pairs: Vec<&str> = label_text
                .split("\",")
                .map(|p| p.trim_end_matches('"'))
                .collect();
            let all = labels
                .iter()
                .all(|(k, v)| pairs.iter().any(|p| p.split_once("=\"") == Some((k, v))));
            if all { value.parse().ok() } else { None }
        })
}

#[cfg(test)]
mod sample_tests {
    use super::sample_value;

    const TEXT: &str = "# HELP x y\n# TYPE a counter\na{outcome=\"ok\",run=\"r1\"} 3\na{outcome=\"okish\",run=\"r1\"} 5\nb 7.5\n";

    #[test]
    fn finds_samples_by_name_and_exact_labels() {
        assert_eq!(sample_value(TEXT, "a", &[("outcome", "ok")]), Some(3.0));
        assert_eq!(
            sample_value(TEXT, "a", &[("outcome", "okish"), ("run", "r1")]),
            Some(5.0)
        );
        assert_eq!(sample_value(TEXT, "a", &[("run", "r2")]), None);
        assert_eq!(sample_value(TEXT, "b", &[]), Some(7.5));
        assert_eq!(sample_value(TEXT, "c", &[]), None);
    }
}
