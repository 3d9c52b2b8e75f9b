//! `submit`: publish the tasks of a run whose results are not stored yet.
//!
//! 1. One `list` of `{prefix}/{run}/`; a task is done when its `.json` sidecar exists.
//! 2. The run manifest `{prefix}/{run}/run.json`: written when absent; when present it must agree with
//!    this run (settings and checkpoint digests, see [`RunManifest::conflict_with`]), else nothing is
//!    published and the error names the difference. A stored manifest is never rewritten.
//! 3. The missing tasks are published in (model, layer, channel) order with publisher confirms.
//!
//! Submitting again while a run's tasks are still queued publishes those tasks a second time (they are
//! not stored yet); workers are idempotent, so the cost is duplicate work, not wrong output. `cancel`
//! first, or wait, to avoid it.

use lucid_proto::{KeyPrefix, RunManifest, SweepSpec, TaskMessage};
use lucid_queue::Broker;
use lucid_storage::Store;

use crate::error::{Error, Result};
use crate::plan::PlannedRun;
use crate::progress::StoredRun;

/// The coordinator's version, recorded in manifests.
pub const CODE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Publisher-confirm window used by `submit` unless told otherwise.
pub const DEFAULT_CONFIRM_WINDOW: usize = 512;

/// What a submit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitReport {
    /// Tasks published now.
    pub published: u64,
    /// Tasks in the plan.
    pub expected: u64,
    /// Tasks whose sidecar was already stored.
    pub already_stored: u64,
    /// Whether this submit wrote the manifest (false: it was already there and agreed).
    pub wrote_manifest: bool,
    /// The manifest's key.
    pub manifest_key: String,
    /// The probe pass's tasks, for a spec with `[probe]`.
    pub probe: Option<ProbeSubmitted>,
}

/// What `submit` did with a run's probe tasks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeSubmitted {
    /// Probe tasks published now.
    pub published: u64,
    /// Probe tasks in the run: models × shards.
    pub expected: u64,
    /// Probe tasks whose shard was already stored.
    pub already_stored: u64,
    /// Files in the probe set's index (after names no key may have).
    pub files: u64,
    /// Whether this submit wrote the index.
    pub wrote_index: bool,
}

impl std::fmt::Display for SubmitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "published {} of {} tasks ({} already stored)",
            self.published, self.expected, self.already_stored
        )?;
        if let Some(probe) = &self.probe {
            write!(
                f,
                "; probe: published {} of {} shard tasks ({} already stored) over {} files",
                probe.published, probe.expected, probe.already_stored, probe.files
            )?;
        }
        Ok(())
    }
}

/// Submits `run` (planned with checkpoint digests) from `spec`: see the module docs.
pub async fn submit(
    spec: &SweepSpec,
    run: &PlannedRun,
    store: &Store,
    broker: &Broker,
    confirm_window: usize,
) -> Result<SubmitReport> {
    let prefix = key_prefix(spec)?;
    let plan = &run.plan;
    let run_prefix = prefix.run_prefix(&plan.run_id);
    let (_, stored) = StoredRun::list(store, &run_prefix).await?;
    // the probe set is listed (and an empty one refused) before the manifest is written
    let probe = crate::probe::plan_probe(spec, run, store, &prefix, &stored).await?;

    let (manifest_key, wrote_manifest) =
        ensure_manifest(spec, run, store, &prefix, stored.manifest).await?;

    let missing: Vec<TaskMessage> = plan
        .tasks()
        .filter(|t| !stored.is_done(&t.result_id()))
        .collect();
    let expected = plan.task_count();
    let already_stored = expected - missing.len() as u64;
    let published = if missing.is_empty() {
        0
    } else {
        broker
            .publish_tasks(&missing, confirm_window)
            .await
            .map_err(|e| Error::queue(format!("publish to {}", spec.queue.tasks), e))?
    };
    tracing::info!(
        run = %plan.run_id,
        published,
        expected,
        already_stored,
        queue = %spec.queue.tasks,
        "submitted"
    );
    let probe = match probe {
        Some(probe) => Some(publish_probe(spec, broker, probe, confirm_window).await?),
        None => None,
    };
    Ok(SubmitReport {
        published,
        expected,
        already_stored,
        wrote_manifest,
        manifest_key,
        probe,
    })
}

/// Publishes the probe tasks whose shard is not stored.
async fn publish_probe(
    spec: &SweepSpec,
    broker: &Broker,
    probe: crate::probe::ProbePlan,
    confirm_window: usize,
) -> Result<ProbeSubmitted> {
    let published = if probe.missing.is_empty() {
        0
    } else {
        broker
            .publish_tasks(&probe.missing, confirm_window)
            .await
            .map_err(|e| Error::queue(format!("publish probe tasks to {}", spec.queue.tasks), e))?
    };
    tracing::info!(run = %spec.run_id, published, expected = probe.expected, "submitted probe tasks");
    Ok(ProbeSubmitted {
        published,
        expected: probe.expected,
        already_stored: probe.expected - probe.missing.len() as u64,
        files: probe.index.files.len() as u64,
        wrote_index: probe.wrote_index,
    })
}

/// Writes the run manifest when `stored` says it is absent; when present, checks that it agrees with
/// this run ([`RunManifest::conflict_with`]) and refuses, naming the difference, when not. A stored
/// manifest is never rewritten. Returns its key and whether it was written now. `submit` and the
/// worker's `local` both call this, so a resume checks the same things in either mode.
pub async fn ensure_manifest(
    spec: &SweepSpec,
    run: &PlannedRun,
    store: &Store,
    prefix: &KeyPrefix,
    stored: bool,
) -> Result<(String, bool)> {
    let plan = &run.plan;
    let manifest_key = prefix.manifest_key(&plan.run_id);
    let manifest = RunManifest::new(spec, plan, CODE_VERSION, run.checkpoint_refs());
    let wrote_manifest = if stored {
        let bytes = crate::progress::get_listed(store, &manifest_key).await?;
        let existing = RunManifest::decode(&bytes).map_err(|e| Error::Decode {
            key: manifest_key.clone(),
            reason: e.to_string(),
        })?;
        if let Some(difference) = existing.conflict_with(&manifest) {
            return Err(Error::ManifestConflict {
                key: manifest_key,
                difference,
            });
        }
        false
    } else {
        store
            .put(&manifest_key, manifest.encode(), "application/json")
            .await
            .map_err(|e| Error::storage(format!("put {manifest_key}"), e))?;
        tracing::info!(key = %manifest_key, "wrote run manifest");
        true
    };
    Ok((manifest_key, wrote_manifest))
}

/// The spec's validated storage prefix.
pub fn key_prefix(spec: &SweepSpec) -> Result<KeyPrefix> {
    spec.storage
        .key_prefix()
        .map_err(|e| Error::Plan(lucid_proto::PlanError::Spec(e)))
}
