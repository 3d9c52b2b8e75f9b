//! `status`: progress of a run from one listing, queue depths, and a rate and ETA.
//!
//! # Rate
//!
//! The rate comes from the `created_at` timestamps of the last `sample` sidecars in key order. Keys sort
//! in (model, layer, channel) order, which is the order tasks are published and (FIFO queue) mostly
//! completed in, so the last keys are roughly the most recent results. The rate is
//! `(n - 1) / (newest - oldest)` over that sample: the throughput while those results were made. It
//! says nothing about whether workers are still running; the report therefore also prints the newest
//! timestamp. `watch` exports the completed count instead, so Prometheus can take `rate()` over two
//! listings.

use std::fmt;

use futures::StreamExt;
use lucid_proto::{Plan, ResultSidecar, SweepSpec};
use lucid_queue::{Broker, ManagementApi, QueueStats};
use lucid_storage::Store;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::Result;
use crate::estimate::format_duration;
use crate::progress::{LayerProgress, StoredRun, layer_progress, totals};
use crate::submit::key_prefix;

/// Sidecars sampled for the rate unless told otherwise.
pub const DEFAULT_RATE_SAMPLE: usize = 50;

/// Throughput measured from sidecar timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Results per second over the sample.
    pub per_second: f64,
    /// Sidecars with a readable timestamp in the sample.
    pub sample: usize,
    /// The newest `created_at` in the sample (RFC 3339).
    pub newest: String,
}

/// The `status` report.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The run.
    pub run: String,
    /// Done / expected per model and layer.
    pub rows: Vec<LayerProgress>,
    /// Planned tasks with a sidecar.
    pub done: u64,
    /// Planned tasks.
    pub expected: u64,
    /// Queue depths, or why they could not be read.
    pub queue: std::result::Result<QueueStats, String>,
    /// Throughput, when at least two sampled sidecars have distinct timestamps.
    pub rate: Option<Rate>,
}

impl StatusReport {
    /// Seconds until done at the measured rate.
    pub fn eta_seconds(&self) -> Option<f64> {
        let rate = self.rate.as_ref()?;
        (rate.per_second > 0.0).then(|| (self.expected - self.done) as f64 / rate.per_second)
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "run {}: {} of {} tasks done",
            self.run, self.done, self.expected
        )?;
        let mut current_model = None;
        for row in &self.rows {
            if current_model != Some(&row.model_id) {
                writeln!(f, "model {}", row.model_id)?;
                current_model = Some(&row.model_id);
            }
            writeln!(
                f,
                "  {:<8} {:>6} / {:<6}",
                row.layer.as_str(),
                row.done,
                row.expected
            )?;
        }
        let opt = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |n| n.to_string());
        match &self.queue {
            Ok(q) => writeln!(
                f,
                "queue: {} ready, {} unacked, {} consumers, {} dead",
                q.ready,
                opt(q.unacked),
                opt(q.consumers),
                q.dead
            )?,
            Err(e) => writeln!(f, "queue: unavailable ({e})")?,
        }
        match (&self.rate, self.eta_seconds()) {
            (Some(rate), Some(eta)) => writeln!(
                f,
                "rate: {:.2} img/s over the last {} results (newest {}); eta {}",
                rate.per_second,
                rate.sample,
                rate.newest,
                format_duration(eta)
            ),
            _ => writeln!(f, "rate: not enough results to measure"),
        }
    }
}

/// Reads the progress of `plan` from `store` (one listing plus `sample` sidecars) and the queue depths
/// from `broker` and `api`.
pub async fn status(
    spec: &SweepSpec,
    plan: &Plan,
    store: &Store,
    queue: std::result::Result<(&Broker, Option<&ManagementApi>), String>,
    sample: usize,
) -> Result<StatusReport> {
    let prefix = key_prefix(spec)?;
    let run_prefix = prefix.run_prefix(&plan.run_id);
    let (_, stored) = StoredRun::list(store, &run_prefix).await?;
    let rows = layer_progress(plan, &stored);
    let (done, expected) = totals(&rows);
    let queue = match queue {
        Ok((broker, api)) => broker.stats(api).await.map_err(|e| crate::error::chain(&e)),
        Err(e) => Err(e),
    };
    let sampled: Vec<&String> = stored.sidecars.values().rev().take(sample).collect();
    let rate = sample_rate(store, &sampled).await;
    Ok(StatusReport {
        run: plan.run_id.to_string(),
        rows,
        done,
        expected,
        queue,
        rate,
    })
}

async fn sample_rate(store: &Store, keys: &[&String]) -> Option<Rate> {
    let times: Vec<OffsetDateTime> = futures::stream::iter(keys.iter().copied())
        .map(|key| async move {
            match store.get(key).await {
                Ok(Some(bytes)) => ResultSidecar::decode(&bytes)
                    .ok()
                    .and_then(|s| OffsetDateTime::parse(&s.created_at, &Rfc3339).ok()),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(key = %key, %error, "cannot read sidecar for the rate");
                    None
                }
            }
        })
        .buffer_unordered(16)
        .filter_map(|t| async move { t })
        .collect()
        .await;
    rate_of(&times)
}

/// The rate over `times`: `(n - 1) / (newest - oldest)`; `None` for fewer than two distinct times.
pub fn rate_of(times: &[OffsetDateTime]) -> Option<Rate> {
    let oldest = times.iter().min()?;
    let newest = times.iter().max()?;
    let span = (*newest - *oldest).as_seconds_f64();
    if times.len() < 2 || span <= 0.0 {
        return None;
    }
    Some(Rate {
        per_second: (times.len() - 1) as f64 / span,
        sample: times.len(),
        newest: newest.format(&Rfc3339).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text report, as people read it.
    #[test]
    fn report_prose() {
        let report = StatusReport {
            run: "r1".into(),
            rows: vec![LayerProgress {
                model_id: "s1".parse().expect("model"),
                layer: "conv1".parse().expect("layer"),
                done: 4,
                expected: 4,
            }],
            done: 4,
            expected: 8,
            queue: Ok(QueueStats {
                ready: 118,
                unacked: Some(0),
                consumers: None,
                dead: 1,
            }),
            rate: Some(Rate {
                per_second: 1.0,
                sample: 20,
                newest: "2026-01-01T00:00:19Z".into(),
            }),
        };
        assert_eq!(
            report.to_string(),
            "run r1: 4 of 8 tasks done\nmodel s1\n  conv1         4 / 4     \n\
             queue: 118 ready, 0 unacked, ? consumers, 1 dead\n\
             rate: 1.00 img/s over the last 20 results (newest 2026-01-01T00:00:19Z); eta 4s\n"
        );
        let unavailable = StatusReport {
            queue: Err("connection refused".into()),
            rate: None,
            ..report
        };
        let text = unavailable.to_string();
        assert!(
            text.contains("queue: unavailable (connection refused)\n"),
            "{text}"
        );
        assert!(
            text.ends_with("rate: not enough results to measure\n"),
            "{text}"
        );
    }

    #[test]
    fn rate_from_timestamps() {
        let t = |s: &str| OffsetDateTime::parse(s, &Rfc3339).expect("timestamp");
        let times = [
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T00:00:10Z"),
            t("2026-01-01T00:00:05Z"),
        ];
        let rate = rate_of(&times).expect("rate");
        assert!((rate.per_second - 0.2).abs() < 1e-9);
        assert_eq!(rate.sample, 3);
        assert_eq!(rate.newest, "2026-01-01T00:00:10Z");
        assert_eq!(rate_of(&times[..1]), None);
        assert_eq!(rate_of(&[times[0], times[0]]), None);
    }
}
