//! Checking a run's stored output against its plan.
//!
//! [`check`] is a pure function over the plan, one listing of `{prefix}/{run}/` and what was fetched
//! (sidecar bodies, PNG facts), so it can be tested without a store; [`fetch_and_check`] does the I/O.
//!
//! Rules: every planned task has its PNG (one per copy of a view with copies) and one sidecar at its
//! keys; nothing else is stored
//! under the run except `run.json`, the gallery (`gallery/…`) and a `local` run's
//! `dead-letters.json` (whose tasks count as dead letters, as the queue's do); each sidecar decodes and names its own run, model, layer, channel
//! and task id, with the plan's settings; each PNG starts with the PNG signature and an `IHDR` of
//! `size × size`, and hashes to the sidecar's digest of its copy. For a spec with `[probe]`
//! ([`check_probe`]): the probe set index is stored, every model has every shard of it (a sidecar,
//! stored after its data), and a model with every shard has its merged `probe.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use futures::StreamExt;
use lucid_proto::probe::{ProbeIndex, probe_task_id};
use lucid_proto::{DeadLetterReport, KeyPrefix, ModelId, Plan, ResultSidecar, RunId};
use lucid_storage::Store;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::{StoredRun, planned_results};

/// The 8-byte PNG signature.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Bytes of a PNG kept for checking: signature, IHDR length and type, width and height.
pub const PNG_HEAD_LEN: usize = 24;

/// What verification needs from a PNG without keeping its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PngFacts {
    /// The first [`PNG_HEAD_LEN`] bytes (fewer if the file is shorter).
    pub head: Vec<u8>,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
}

impl PngFacts {
    /// The facts of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            head: bytes[..bytes.len().min(PNG_HEAD_LEN)].to_vec(),
            sha256: Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    /// `(width, height)` from the IHDR chunk, when the head is a PNG signature plus an IHDR.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        let h = &self.head;
        if h.len() < PNG_HEAD_LEN || h[..8] != PNG_SIGNATURE || &h[12..16] != b"IHDR" {
            return None;
        }
        let be = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some((be(16), be(20)))
    }
}

/// The fetched objects of a run: sidecar bodies and PNG facts by key. A listed key missing here was
/// listed but could not be fetched.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Sidecar bodies by key.
    pub sidecars: BTreeMap<String, Vec<u8>>,
    /// PNG facts by key.
    pub pngs: BTreeMap<String, PngFacts>,
}

/// One broken rule. In `verify --json` each is an object whose `kind` is the variant's name in
/// snake case (`missing_sidecar`), with the variant's fields beside it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// The run has no `run.json`.
    MissingManifest {
        /// The expected key.
        key: String,
    },
    /// A planned task has no PNG.
    MissingPng {
        /// The task id.
        task: String,
    },
    /// A planned task has no sidecar.
    MissingSidecar {
        /// The task id.
        task: String,
    },
    /// A stored key that no planned task (or the manifest) accounts for.
    Unexpected {
        /// The key.
        key: String,
    },
    /// A listed object could not be fetched.
    Unreadable {
        /// The key.
        key: String,
    },
    /// A sidecar that does not decode.
    BadSidecar {
        /// The key.
        key: String,
        /// The decoder's message.
        reason: String,
    },
    /// A sidecar whose field disagrees with its key or the plan.
    SidecarMismatch {
        /// The key.
        key: String,
        /// The field.
        field: String,
        /// What the key or plan implies.
        expected: String,
        /// What the sidecar says.
        found: String,
    },
    /// A PNG that does not start with the PNG signature and an IHDR chunk.
    BadPng {
        /// The key.
        key: String,
    },
    /// A PNG of the wrong size.
    PngSize {
        /// The key.
        key: String,
        /// The planned side.
        expected: u32,
        /// Width and height found.
        found: (u32, u32),
    },
    /// A PNG whose SHA-256 differs from its sidecar's `png_sha256`.
    PngDigest {
        /// The PNG's key.
        key: String,
    },
    /// A planned task of the run sits in the dead-letter queue.
    DeadLettered {
        /// The task id.
        task: String,
        /// Why it was dead-lettered.
        reason: String,
    },
    /// A dead letter of the run that was not expected (only with an expected set).
    UnexpectedDeadLetter {
        /// Its id.
        id: String,
        /// Why it was dead-lettered.
        reason: String,
    },
    /// An expected dead letter that is not in the dead-letter queue.
    MissingDeadLetter {
        /// Its id.
        id: String,
    },
    /// The same id more than once in the dead-letter queue.
    DuplicateDeadLetter {
        /// Its id.
        id: String,
        /// How many copies.
        copies: usize,
    },
    /// The dead-letter queue held more messages than were read, so the check is incomplete.
    DeadLettersTruncated {
        /// How many were read.
        limit: usize,
    },
    /// The run's spec has `[probe]` but the probe set index is not stored (nothing was submitted).
    MissingProbeIndex {
        /// The expected key.
        key: String,
    },
    /// A shard of the probe set has no stored result for a model.
    MissingProbeShard {
        /// The probe task's id.
        task: String,
    },
    /// Every shard of a model is stored but its merged pass is not (`examples` was not run, or
    /// stopped).
    UnmergedProbe {
        /// The model.
        model: String,
        /// The merged report's expected key.
        key: String,
    },
    /// A metric disagrees with what is stored or queued.
    MetricDisagrees {
        /// The series, as `name{labels}`.
        series: String,
        /// What the store or queue says.
        expected: f64,
        /// The metric's value, `None` when the series is absent.
        found: Option<f64>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::MissingManifest { key } => write!(f, "missing run manifest {key}"),
            Violation::MissingPng { task } => write!(f, "missing png of task {task}"),
            Violation::MissingSidecar { task } => write!(f, "missing sidecar of task {task}"),
            Violation::Unexpected { key } => write!(f, "unexpected object {key}"),
            Violation::Unreadable { key } => write!(f, "listed object {key} could not be read"),
            Violation::BadSidecar { key, reason } => write!(f, "sidecar {key}: {reason}"),
            Violation::SidecarMismatch {
                key,
                field,
                expected,
                found,
            } => write!(f, "sidecar {key}: {field} is {found}, expected {expected}"),
            Violation::BadPng { key } => {
                write!(f, "png {key}: no PNG signature and IHDR chunk")
            }
            Violation::PngSize {
                key,
                expected,
                found,
            } => write!(
                f,
                "png {key}: {}x{} pixels, expected {expected}x{expected}",
                found.0, found.1
            ),
            Violation::PngDigest { key } => {
                write!(f, "png {key}: sha256 differs from its sidecar's png_sha256")
            }
            Violation::DeadLettered { task, reason } => {
                write!(
                    f,
                    "planned task {task} is in the dead-letter queue: {reason}"
                )
            }
            Violation::UnexpectedDeadLetter { id, reason } => {
                write!(f, "unexpected dead letter {id}: {reason}")
            }
            Violation::MissingDeadLetter { id } => {
                write!(
                    f,
                    "expected dead letter {id} is not in the dead-letter queue"
                )
            }
            Violation::DuplicateDeadLetter { id, copies } => {
                write!(
                    f,
                    "dead letter {id} is in the dead-letter queue {copies} times"
                )
            }
            Violation::DeadLettersTruncated { limit } => write!(
                f,
                "the dead-letter queue holds more than the {limit} messages read; not all were checked"
            ),
            Violation::MissingProbeIndex { key } => {
                write!(
                    f,
                    "missing probe set index {key} (the probe pass was never submitted)"
                )
            }
            Violation::MissingProbeShard { task } => {
                write!(f, "missing probe shard of task {task}")
            }
            Violation::UnmergedProbe { model, key } => write!(
                f,
                "every probe shard of model {model} is stored but not merged: no {key} (run `lucid-coordinator examples`)"
            ),
            Violation::MetricDisagrees {
                series,
                expected,
                found: Some(found),
            } => write!(f, "metric {series} is {found}, expected {expected}"),
            Violation::MetricDisagrees {
                series,
                expected,
                found: None,
            } => write!(f, "metric {series} is absent, expected {expected}"),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// The run.
    pub run_id: String,
    /// Planned tasks.
    pub expected: u64,
    /// Planned tasks with both objects present and every check passed.
    pub complete: u64,
    /// Objects listed.
    pub listed: u64,
    /// Every broken rule, in plan order, then unexpected keys, then dead-letter and metric checks.
    pub violations: Vec<Violation>,
    /// The run's dead letters, when the dead-letter queue was read ([`check_dead_letters`]).
    pub dead_letters: Option<Vec<RunDeadLetter>>,
    /// How far the probe pass is, for a spec with `[probe]` ([`check_probe`]).
    pub probe: Option<ProbeProgress>,
}

/// How far a run's probe pass is, as [`check_probe`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ProbeProgress {
    /// Probe tasks of the stored index: models × shards (0 without an index).
    pub expected_shards: u64,
    /// Of those, the shards stored.
    pub stored_shards: u64,
    /// Models probed.
    pub models: u64,
    /// Of those, the models whose merged pass is stored.
    pub merged_models: u64,
}

impl VerifyReport {
    /// Whether no rule was broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of {} tasks complete, {} objects listed, {} violations",
            self.complete,
            self.expected,
            self.listed,
            self.violations.len()
        )?;
        if let Some(p) = &self.probe {
            writeln!(
                f,
                "probe pass: {} of {} shards stored, {} of {} models merged",
                p.stored_shards, p.expected_shards, p.merged_models, p.models
            )?;
        }
        if let Some(dead) = &self.dead_letters {
            writeln!(f, "{} dead letters of this run", dead.len())?;
            for d in dead {
                writeln!(f, "  dead {}: {}", d.id, d.reason)?;
            }
        }
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        if self.ok() {
            writeln!(f, "ok")?;
        }
        Ok(())
    }
}

/// Checks `keys` (one listing of the run prefix) and `fetched` against `plan`. Pure.
pub fn check(plan: &Plan, prefix: &KeyPrefix, keys: &[String], fetched: &Fetched) -> VerifyReport {
    let run = &plan.run_id;
    let run_prefix = prefix.run_prefix(run);
    let stored = StoredRun::classify(&run_prefix, keys);
    let mut violations = Vec::new();
    if !stored.manifest {
        violations.push(Violation::MissingManifest {
            key: prefix.manifest_key(run),
        });
    }
    let mut complete = 0;
    for task in plan.tasks() {
        let before = violations.len();
        check_task(plan, &stored, fetched, &task, &mut violations);
        if violations.len() == before {
            complete += 1;
        }
    }
    violations.extend(unexpected_objects(plan, &stored));
    VerifyReport {
        run_id: run.to_string(),
        expected: plan.task_count(),
        complete,
        listed: keys.len() as u64,
        violations,
        dead_letters: None,
        probe: None,
    }
}

/// Checks the probe pass of `models` in `stored` (a listing of run `run`) against `index`, the
/// stored probe set index (`None`: not stored): every model has every shard, a model with every
/// shard has its merged report. Records the progress in the report. Pure.
pub fn check_probe(
    (run, models): (&RunId, &[ModelId]),
    prefix: &KeyPrefix,
    stored: &StoredRun,
    index: Option<&ProbeIndex>,
    report: &mut VerifyReport,
) {
    let mut progress = ProbeProgress {
        models: models.len() as u64,
        ..ProbeProgress::default()
    };
    let Some(index) = index else {
        report.violations.push(Violation::MissingProbeIndex {
            key: prefix.probe_index_key(run),
        });
        report.probe = Some(progress);
        return;
    };
    let shards = index.shard_count();
    for model in models {
        let missing: Vec<u32> = (0..shards)
            .filter(|s| !stored.probe_shards.contains(&(model.clone(), *s)))
            .collect();
        progress.expected_shards += u64::from(shards);
        progress.stored_shards += u64::from(shards) - missing.len() as u64;
        for shard in &missing {
            report.violations.push(Violation::MissingProbeShard {
                task: probe_task_id(run, model, *shard),
            });
        }
        if stored.probe_reports.contains(model) {
            progress.merged_models += 1;
        } else if missing.is_empty() {
            let key = prefix.probe_output_key(run, model, lucid_proto::keys::ProbeOutput::Report);
            report.violations.push(Violation::UnmergedProbe {
                model: model.to_string(),
                key,
            });
        }
    }
    report.probe = Some(progress);
}

/// The violations of one planned task: its PNGs (one per copy) and sidecar present, the sidecar
/// decoding and matching the task, each PNG valid, of the planned size and of the sidecar's digest
/// of its copy.
fn check_task(
    plan: &Plan,
    stored: &StoredRun,
    fetched: &Fetched,
    task: &lucid_proto::TaskMessage,
    violations: &mut Vec<Violation>,
) {
    let id = &task.task_id;
    let result = task.result_id();
    let png_keys: Vec<Option<&String>> = (0..task.view.images())
        .map(|copy| stored.pngs.get(&(result.clone(), copy)))
        .collect();
    if png_keys.iter().any(Option::is_none) {
        violations.push(Violation::MissingPng { task: id.clone() });
    }
    let mut sidecar = None;
    match stored.sidecars.get(&result) {
        None => violations.push(Violation::MissingSidecar { task: id.clone() }),
        Some(key) => match fetched.sidecars.get(key) {
            None => violations.push(Violation::Unreadable { key: key.clone() }),
            Some(body) => match ResultSidecar::decode(body) {
                Err(e) => violations.push(Violation::BadSidecar {
                    key: key.clone(),
                    reason: e.to_string(),
                }),
                Ok(s) => {
                    check_sidecar(task, key, &s, violations);
                    sidecar = Some(s);
                }
            },
        },
    }
    let digests: Vec<&str> = sidecar.iter().flat_map(|s| s.png_digests()).collect();
    for (copy, key) in png_keys.iter().enumerate() {
        if let Some(key) = key {
            let digest = sidecar.as_ref().map(|_| digests.get(copy).copied());
            check_png(plan, key, fetched, digest, violations);
        }
    }
}

/// The PNG at `key`: fetched, a PNG, of the planned size, and hashing to `digest`, its sidecar's
/// digest of it (`None` without a readable sidecar, `Some(None)` when the sidecar has none).
fn check_png(
    plan: &Plan,
    key: &str,
    fetched: &Fetched,
    digest: Option<Option<&str>>,
    violations: &mut Vec<Violation>,
) {
    let Some(facts) = fetched.pngs.get(key) else {
        violations.push(Violation::Unreadable {
            key: key.to_owned(),
        });
        return;
    };
    let Some(dims) = facts.dimensions() else {
        violations.push(Violation::BadPng {
            key: key.to_owned(),
        });
        return;
    };
    let side = plan.settings.size;
    if dims != (side, side) {
        violations.push(Violation::PngSize {
            key: key.to_owned(),
            expected: side,
            found: dims,
        });
    }
    if digest.is_some_and(|d| d != Some(facts.sha256.as_str())) {
        violations.push(Violation::PngDigest {
            key: key.to_owned(),
        });
    }
}

/// Objects under the run that no planned task, manifest, gallery or dead-letter report explains,
/// sorted by key.
fn unexpected_objects(plan: &Plan, stored: &StoredRun) -> Vec<Violation> {
    let planned = planned_results(plan);
    let mut unexpected: Vec<String> = stored
        .sidecars
        .iter()
        .filter(|(id, _)| !planned.contains(*id))
        .chain(
            stored
                .pngs
                .iter()
                .filter(|((id, _), _)| !planned.contains(id))
                .map(|((id, _), key)| (id, key)),
        )
        .map(|(_, key)| key.clone())
        .chain(stored.other.iter().cloned())
        .collect();
    unexpected.sort();
    unexpected
        .into_iter()
        .map(|key| Violation::Unexpected { key })
        .collect()
}

/// A dead letter that belongs to the run: its id (the message id) and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDeadLetter {
    /// The message id (a task id for tasks the coordinator published).
    pub id: String,
    /// `x-lucid-reason`, or the broker's `x-death` reason, or `(no reason)`.
    pub reason: String,
}

impl RunDeadLetter {
    /// The dead letters of `letters` that belong to run `run`: those whose message id starts with
    /// `{run}/`, and those without one whose body names the run in `run_id`.
    pub fn of_run(run: &str, letters: &[lucid_queue::DeadLetter]) -> Vec<Self> {
        let prefix = format!("{run}/");
        letters
            .iter()
            .filter_map(|letter| {
                let id = match &letter.message_id {
                    Some(id) if id.starts_with(&prefix) => id.clone(),
                    Some(_) => return None,
                    None => {
                        let body: serde_json::Value = serde_json::from_slice(&letter.body).ok()?;
                        if body.get("run_id")?.as_str()? != run {
                            return None;
                        }
                        body.get("task_id")
                            .and_then(|t| t.as_str())
                            .unwrap_or("(no message id)")
                            .to_owned()
                    }
                };
                let reason = letter
                    .reason
                    .clone()
                    .unwrap_or_else(|| "(no reason)".to_owned());
                Some(Self { id, reason })
            })
            .collect()
    }
}

/// Checks the run's dead letters: no planned task may be among them, no id twice, and with
/// `expected` they must be exactly that set. `truncated` says the queue held more than was read.
/// Records the letters in the report. Pure.
pub fn check_dead_letters(
    plan: &Plan,
    report: &mut VerifyReport,
    dead: Vec<RunDeadLetter>,
    expected: Option<&BTreeSet<String>>,
    truncated: Option<usize>,
) {
    let planned: BTreeSet<String> = plan.tasks().map(|t| t.task_id).collect();
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &dead {
        *copies.entry(d.id.as_str()).or_default() += 1;
    }
    let violations = &mut report.violations;
    for (id, n) in &copies {
        if *n > 1 {
            violations.push(Violation::DuplicateDeadLetter {
                id: (*id).to_owned(),
                copies: *n,
            });
        }
    }
    for d in &dead {
        if planned.contains(&d.id) {
            violations.push(Violation::DeadLettered {
                task: d.id.clone(),
                reason: d.reason.clone(),
            });
        } else if expected.is_some_and(|e| !e.contains(&d.id)) {
            violations.push(Violation::UnexpectedDeadLetter {
                id: d.id.clone(),
                reason: d.reason.clone(),
            });
        }
    }
    for id in expected.into_iter().flatten() {
        if !copies.contains_key(id.as_str()) {
            violations.push(Violation::MissingDeadLetter { id: id.clone() });
        }
    }
    if let Some(limit) = truncated {
        violations.push(Violation::DeadLettersTruncated { limit });
    }
    report.dead_letters = Some(dead);
}

/// Checks a `lucid-coordinator watch` exposition against the report: `lucid_run_tasks_expected`
/// and `lucid_run_tasks_completed` of the run must equal the planned and complete counts, and
/// (when the dead-letter queue was read) `lucid_queue_dead_messages` of `dead_letter_queue` must
/// equal `dead_in_queue`, the queue's whole depth. Pure.
pub fn check_metrics(
    plan: &Plan,
    report: &mut VerifyReport,
    exposition: &str,
    dead_letter_queue: &str,
    dead_in_queue: Option<usize>,
) {
    let run = plan.run_id.as_str();
    let mut expect = |name: &str, label: (&str, &str), expected: f64| {
        let found = lucid_telemetry::sample_value(exposition, name, &[label]);
        if found != Some(expected) {
            report.violations.push(Violation::MetricDisagrees {
                series: format!("{name}{{{}=\"{}\"}}", label.0, label.1),
                expected,
                found,
            });
        }
    };
    expect(
        "lucid_run_tasks_expected",
        ("run", run),
        report.expected as f64,
    );
    expect(
        "lucid_run_tasks_completed",
        ("run", run),
        report.complete as f64,
    );
    if let Some(depth) = dead_in_queue {
        expect(
            "lucid_queue_dead_messages",
            ("queue", dead_letter_queue),
            depth as f64,
        );
    }
}

fn check_sidecar(
    task: &lucid_proto::TaskMessage,
    key: &str,
    s: &ResultSidecar,
    out: &mut Vec<Violation>,
) {
    let mut field = |field: &'static str, expected: String, found: String| {
        if expected != found {
            out.push(Violation::SidecarMismatch {
                key: key.to_owned(),
                field: field.to_owned(),
                expected,
                found,
            });
        }
    };
    field("run_id", task.run_id.to_string(), s.run_id.to_string());
    field("seed", task.model_id.to_string(), s.model_id.to_string());
    field("layer", task.layer.to_string(), s.layer.to_string());
    field("channel", task.channel.to_string(), s.channel.to_string());
    field("view", task.view.to_string(), s.view.to_string());
    field("task_id", task.task_id.clone(), s.task_id.clone());
    field(
        "settings",
        task.settings.fingerprint(),
        s.settings.fingerprint(),
    );
}

/// How many objects [`fetch_and_check`] downloads at once.
pub const FETCH_CONCURRENCY: usize = 16;

/// Lists the run once, downloads every sidecar and PNG of the listing (PNGs reduced to [`PngFacts`]),
/// and runs [`check`]; also returns the run's stored dead letters, when it has a
/// `dead-letters.json` (a run without a broker), for [`check_dead_letters`].
pub async fn fetch_and_check(
    store: &Store,
    plan: &Plan,
    prefix: &KeyPrefix,
    probe: Option<&lucid_proto::spec::ProbeSection>,
) -> Result<(VerifyReport, Option<Vec<RunDeadLetter>>)> {
    let run_prefix = prefix.run_prefix(&plan.run_id);
    let (keys, stored) = StoredRun::list(store, &run_prefix).await?;
    let wanted: Vec<(String, bool)> = stored
        .sidecars
        .values()
        .map(|k| (k.clone(), false))
        .chain(stored.pngs.values().map(|k| (k.clone(), true)))
        .collect();
    let mut downloads = futures::stream::iter(wanted)
        .map(|(key, is_png)| async move {
            let got = store.get(&key).await;
            (key, is_png, got)
        })
        .buffer_unordered(FETCH_CONCURRENCY);
    let mut fetched = Fetched::default();
    while let Some((key, is_png, got)) = downloads.next().await {
        match got {
            Ok(Some(bytes)) if is_png => {
                fetched.pngs.insert(key, PngFacts::of(&bytes));
            }
            Ok(Some(bytes)) => {
                fetched.sidecars.insert(key, bytes);
            }
            Ok(None) => tracing::warn!(key = %key, "listed object vanished"),
            Err(error) => return Err(Error::storage(format!("get {key}"), error)),
        }
    }
    let mut report = check(plan, prefix, &keys, &fetched);
    if probe.is_some() {
        let index = read_probe_index(store, prefix, &plan.run_id, &stored).await?;
        let models: Vec<ModelId> = plan.models.iter().map(|m| m.model_id.clone()).collect();
        let run = (&plan.run_id, models.as_slice());
        check_probe(run, prefix, &stored, index.as_ref(), &mut report);
    }
    let local_dead = if stored.dead_letters {
        Some(read_local_dead_letters(store, prefix, &plan.run_id).await?)
    } else {
        None
    };
    Ok((report, local_dead))
}

/// The run's stored probe set index, when the listing has one.
async fn read_probe_index(
    store: &Store,
    prefix: &KeyPrefix,
    run: &RunId,
    stored: &StoredRun,
) -> Result<Option<ProbeIndex>> {
    if !stored.probe_index {
        return Ok(None);
    }
    let key = prefix.probe_index_key(run);
    let bytes = crate::progress::get_listed(store, &key).await?;
    let index = ProbeIndex::decode(&bytes).map_err(|e| Error::Decode {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    Ok(Some(index))
}

/// The dead letters of a run without a broker (`lucid-worker local`, `render`), from its stored
/// `dead-letters.json`: there they stand in for the dead-letter queue.
async fn read_local_dead_letters(
    store: &Store,
    prefix: &KeyPrefix,
    run: &lucid_proto::RunId,
) -> Result<Vec<RunDeadLetter>> {
    let key = prefix.dead_letters_key(run);
    let bytes = crate::progress::get_listed(store, &key).await?;
    let report = DeadLetterReport::decode(&bytes).map_err(|e| Error::Decode {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    Ok(report
        .reasons()
        .map(|(id, reason)| RunDeadLetter {
            id: id.to_owned(),
            reason: reason.to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text report, as people read it: counts, the run's dead letters, each violation, `ok`.
    #[test]
    fn report_prose() {
        let mut report = VerifyReport {
            run_id: "r1".into(),
            expected: 16,
            complete: 14,
            listed: 31,
            violations: vec![
                Violation::MissingSidecar {
                    task: "r1/s1/conv1/0000".into(),
                },
                Violation::SidecarMismatch {
                    key: "p/r1/s1/conv1/0001.json".into(),
                    field: "layer".into(),
                    expected: "conv1".into(),
                    found: "conv2".into(),
                },
            ],
            dead_letters: Some(vec![RunDeadLetter {
                id: "r1/s1/conv1/0002".into(),
                reason: "test gave up".into(),
            }]),
            probe: None,
        };
        assert_eq!(
            report.to_string(),
            "14 of 16 tasks complete, 31 objects listed, 2 violations\n\
             1 dead letters of this run\n  dead r1/s1/conv1/0002: test gave up\n\
             \x20 missing sidecar of task r1/s1/conv1/0000\n\
             \x20 sidecar p/r1/s1/conv1/0001.json: layer is conv2, expected conv1\n"
        );
        report.violations.clear();
        report.dead_letters = None;
        assert!(report.to_string().ends_with("0 violations\nok\n"));
    }

    /// Seven files in shards of three (shards 0, 1, 2); s1 has shards 0 and 2, s2 all three and its
    /// merged report, s3 all three without one.
    #[test]
    fn probe_check_names_each_missing_shard_and_each_unmerged_model() {
        let prefix = KeyPrefix::parse("p").unwrap();
        let run: RunId = "r1".parse().unwrap();
        let models: Vec<ModelId> = ["s1", "s2", "s3"].map(|m| m.parse().unwrap()).to_vec();
        let index = ProbeIndex {
            schema_version: lucid_proto::probe::PROBE_INDEX_SCHEMA_VERSION,
            probe_set: lucid_proto::ModelLocation::parse("/data/set").unwrap(),
            shard: 3,
            files: (0..7).map(|i| format!("{i}.png")).collect(),
            skipped: Vec::new(),
        };
        let shard = |m: &str, s: u32| {
            let model: ModelId = m.parse().unwrap();
            prefix.probe_shard_key(&run, &model, s, lucid_proto::keys::ShardPart::Sidecar)
        };
        let s2: ModelId = "s2".parse().unwrap();
        let mut keys = vec![
            prefix.probe_index_key(&run),
            shard("s1", 0),
            shard("s1", 2),
            prefix.probe_output_key(&run, &s2, lucid_proto::keys::ProbeOutput::Report),
        ];
        keys.extend((0..3).flat_map(|s| [shard("s2", s), shard("s3", s)]));
        let stored = StoredRun::classify(&prefix.run_prefix(&run), &keys);
        let mut report = VerifyReport {
            run_id: run.to_string(),
            expected: 0,
            complete: 0,
            listed: keys.len() as u64,
            violations: Vec::new(),
            dead_letters: None,
            probe: None,
        };
        check_probe((&run, &models), &prefix, &stored, Some(&index), &mut report);
        assert_eq!(
            report.violations,
            vec![
                Violation::MissingProbeShard {
                    task: "r1/probe/s1/00001".into()
                },
                Violation::UnmergedProbe {
                    model: "s3".into(),
                    key: "p/r1/probe/s3/probe.json".into()
                },
            ]
        );
        let progress = report.probe.expect("progress");
        assert_eq!((progress.stored_shards, progress.expected_shards), (8, 9));
        assert_eq!((progress.merged_models, progress.models), (1, 3));
        assert!(
            report
                .to_string()
                .contains("probe pass: 8 of 9 shards stored, 1 of 3 models merged"),
            "{report}"
        );

        let mut report = VerifyReport {
            violations: Vec::new(),
            probe: None,
            ..report
        };
        check_probe(
            (&run, &models),
            &prefix,
            &StoredRun::default(),
            None,
            &mut report,
        );
        assert_eq!(
            report.violations,
            vec![Violation::MissingProbeIndex {
                key: "p/r1/probe/images.json".into()
            }]
        );
    }
}
