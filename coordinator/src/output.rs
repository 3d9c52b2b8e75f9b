//! The machine-readable output of the commands: with `--json`, `plan`, `submit`, `status`, `verify`,
//! `retry-dead`, `cancel`, `gallery` and `examples` print one [`Document`] on stdout instead of their text report
//! (logs stay on stderr). These types are that schema; scripts and tests parse them.
//!
//! # Schema (version 1)
//!
//! Every document is a JSON object with `schema_version` ([`OUTPUT_SCHEMA_VERSION`]) and `command`
//! (the subcommand's name); the other fields are the command's own, one struct each:
//!
//! | `command` | fields |
//! |---|---|
//! | `plan` | [`PlanOutput`]: settings, task counts per model and layer, the GPU time estimate and the rates it used |
//! | `submit` | [`SubmitOutput`]: published, expected, already stored, the manifest |
//! | `status` | [`StatusOutput`]: done / expected per model and layer, queue depths (or why not), rate and ETA |
//! | `verify` | [`VerifyOutput`]: counts, every violation (`kind`, its fields, `message`), the run's dead letters |
//! | `retry-dead` | [`RetryDeadOutput`]: dead letters moved back |
//! | `cancel` | [`CancelOutput`]: ready tasks dropped |
//! | `gallery` | [`GalleryOutput`]: the index key, its URL and the gallery's counts (`summary`) |
//! | `examples` | [`ExamplesOutput`]: per model the images merged, the files set aside, the report's key |
//! | `match` | [`MatchRunOutput`]: per layer the mean matched correlation, universal and unique channels, consistency, timing |
//!
//! Optional values are `null` when unknown (a queue depth without the management API, an ETA
//! without a rate). Adding a field keeps the version; removing or renaming one bumps it.

use std::fmt;

use lucid_gallery::GallerySummary;
use lucid_proto::plan::ModelCounts;
use lucid_proto::spec::Precision;
use serde::{Deserialize, Serialize};

use crate::estimate::{Estimate, RatesOrigin};
use crate::gallery::GalleryReport;
use crate::matching::MatchRunOutput;
use crate::plan::PlanReport;
use crate::status::StatusReport;
use crate::submit::SubmitReport;
use crate::verify::{VerifyReport, Violation};

/// The version of the documents this build prints.
pub const OUTPUT_SCHEMA_VERSION: u32 = 1;

/// One command's machine-readable output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Always [`OUTPUT_SCHEMA_VERSION`] for documents printed by this build.
    pub schema_version: u32,
    /// The command's output, tagged with `command`.
    #[serde(flatten)]
    pub output: Output,
}

impl Document {
    /// `output` as a document of this build's version.
    pub fn new(output: Output) -> Self {
        Self {
            schema_version: OUTPUT_SCHEMA_VERSION,
            output,
        }
    }

    /// The document as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Why a printed document could not be read back as the output of a command.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not of this schema.
    #[error("not a lucid-coordinator --json document: {0}")]
    Json(#[from] serde_json::Error),
    /// A schema version this build does not read.
    #[error("document schema_version {found}, this build reads {OUTPUT_SCHEMA_VERSION}")]
    Version {
        /// The document's version.
        found: u32,
    },
    /// The output of another command.
    #[error("expected the output of `{expected}`, found that of `{found}`")]
    Command {
        /// The command asked for.
        expected: &'static str,
        /// The command the document is from.
        found: &'static str,
    },
}

/// The output struct of one command, as [`parse`] returns it.
pub trait CommandOutput: Sized {
    /// The command's name, as `command` spells it.
    const COMMAND: &'static str;
    /// `output` when it is this command's, else the name of the command it is from.
    fn from_output(output: Output) -> Result<Self, &'static str>;
}

/// Reads a document printed by `lucid-coordinator COMMAND --json` as `T`, the output of `COMMAND`,
/// checking its schema version and command.
pub fn parse<T: CommandOutput>(text: &str) -> Result<T, ParseError> {
    let document: Document = serde_json::from_str(text)?;
    if document.schema_version != OUTPUT_SCHEMA_VERSION {
        return Err(ParseError::Version {
            found: document.schema_version,
        });
    }
    T::from_output(document.output).map_err(|found| ParseError::Command {
        expected: T::COMMAND,
        found,
    })
}

macro_rules! command_outputs {
    ($($variant:ident($ty:ident) = $name:literal,)*) => {
        $(
            impl From<$ty> for Output {
                fn from(out: $ty) -> Self {
                    Output::$variant(out)
                }
            }

            impl CommandOutput for $ty {
                const COMMAND: &'static str = $name;
                fn from_output(output: Output) -> Result<Self, &'static str> {
                    match output {
                        Output::$variant(out) => Ok(out),
                        other => Err(other.command()),
                    }
                }
            }
        )*
        impl Output {
            /// The command this is the output of, as `command` spells it.
            pub fn command(&self) -> &'static str {
                match self {
                    $(Output::$variant(_) => $name,)*
                }
            }
        }
    };
}

command_outputs! {
    Plan(PlanOutput) = "plan",
    Submit(SubmitOutput) = "submit",
    Status(StatusOutput) = "status",
    Verify(VerifyOutput) = "verify",
    RetryDead(RetryDeadOutput) = "retry-dead",
    Cancel(CancelOutput) = "cancel",
    Gallery(GalleryOutput) = "gallery",
    Examples(ExamplesOutput) = "examples",
    Match(MatchRunOutput) = "match",
}

/// The output of each command, tagged by `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Output {
    /// `plan`.
    Plan(PlanOutput),
    /// `submit`.
    Submit(SubmitOutput),
    /// `status`.
    Status(StatusOutput),
    /// `verify`.
    Verify(VerifyOutput),
    /// `retry-dead`.
    RetryDead(RetryDeadOutput),
    /// `cancel`.
    Cancel(CancelOutput),
    /// `gallery`.
    Gallery(GalleryOutput),
    /// `examples`.
    Examples(ExamplesOutput),
    /// `match`.
    Match(MatchRunOutput),
}

/// A command's result: a text report for people ([`fmt::Display`]) and a document for programs.
pub trait Report: fmt::Display {
    /// The machine-readable form of the same result.
    fn output(&self) -> Output;
}

/// An output struct that prints its own text (`retry-dead`, `cancel`) is its own report.
impl<T: fmt::Display + Clone + Into<Output>> Report for T {
    fn output(&self) -> Output {
        self.clone().into()
    }
}

/// `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanOutput {
    /// The run.
    pub run_id: String,
    /// The render settings' fingerprint.
    pub settings_fingerprint: String,
    /// Optimisation steps per image.
    pub steps: u32,
    /// Image side in pixels.
    pub size: u32,
    /// The run's arithmetic precision.
    pub precision: Precision,
    /// Tasks per model and layer, in model id and network order. JSON `seeds`, each with `seed`:
    /// the wire name of the model id in tasks, sidecars and manifests.
    #[serde(rename = "seeds")]
    pub models: Vec<ModelCounts>,
    /// Tasks in the run.
    pub total_tasks: u64,
    /// The views rendered of every unit, in the spec's order.
    pub views: Vec<lucid_proto::View>,
    /// Images the run makes (a view with copies makes several per task).
    pub total_images: u64,
    /// The single-GPU time estimate.
    pub estimate: EstimateOutput,
}

/// The GPU time estimate of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateOutput {
    /// The rates used.
    pub rates: RatesOutput,
    /// Per layer over all models, in network order.
    pub layers: Vec<LayerEstimateOutput>,
    /// Sum of the layers' seconds.
    pub total_seconds: f64,
}

/// Which measurement an estimate used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatesOutput {
    /// Whether these are the shipped default rates.
    pub built_in: bool,
    /// The rates file (its repository path when built in).
    pub path: String,
    /// The measured device.
    pub device: String,
    /// The measurement's precision.
    pub precision: Precision,
    /// Images per optimisation, as `B=512` (or a range when layers differ).
    pub batch: String,
    /// Steps of the measurement.
    pub steps: u32,
    /// Image side of the measurement.
    pub size: u32,
    /// UTC day of the measurement.
    pub date: String,
    /// The worker build that measured.
    pub code_version: String,
}

/// One layer's estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerEstimateOutput {
    /// The layer.
    pub layer: String,
    /// Its tasks over all models.
    pub tasks: u64,
    /// The images those tasks make (a view with copies makes several per task).
    pub images: u64,
    /// The rate used, scaled to the run's steps and size.
    pub images_per_second: f64,
    /// Whether the rate was measured for this layer (`false`: the mean of the measured layers).
    pub measured: bool,
    /// `images / images_per_second`.
    pub seconds: f64,
}

/// `submit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOutput {
    /// Tasks published now.
    pub published: u64,
    /// Tasks in the plan.
    pub expected: u64,
    /// Tasks whose sidecar was already stored.
    pub already_stored: u64,
    /// Whether this submit wrote the manifest (false: it was there and agreed).
    pub wrote_manifest: bool,
    /// The manifest's key.
    pub manifest_key: String,
    /// The probe pass's tasks, for a spec with `[probe]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<crate::submit::ProbeSubmitted>,
}

/// `examples`: each model's probe shards merged into its dataset examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExamplesOutput {
    /// The run.
    pub run_id: String,
    /// What was written per model, and the prepared images the examples show.
    #[serde(flatten)]
    pub merged: crate::probe::Merged,
}

impl fmt::Display for ExamplesOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.merged.fmt(f)
    }
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusOutput {
    /// The run.
    pub run_id: String,
    /// Planned tasks with a sidecar.
    pub done: u64,
    /// Planned tasks.
    pub expected: u64,
    /// Done / expected per model and layer, in plan order.
    pub layers: Vec<LayerProgressOutput>,
    /// Queue depths, or `null` when they could not be read (see `queue_error`).
    pub queue: Option<QueueOutput>,
    /// Why the queue could not be read.
    pub queue_error: Option<String>,
    /// Throughput from the sampled sidecars, when measurable.
    pub rate: Option<RateOutput>,
    /// Seconds until done at that rate.
    pub eta_seconds: Option<f64>,
}

/// Progress of one model and layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerProgressOutput {
    /// The model (JSON `seed`, as in the sidecars).
    #[serde(rename = "seed")]
    pub model_id: String,
    /// The layer.
    pub layer: String,
    /// Planned channels with a sidecar.
    pub done: u64,
    /// Planned channels.
    pub expected: u64,
}

/// Queue depths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOutput {
    /// Tasks ready for delivery.
    pub ready: u64,
    /// Tasks delivered and not acknowledged (`null` without the management API).
    pub unacked: Option<u64>,
    /// Consumers of the task queue (`null` without the management API).
    pub consumers: Option<u64>,
    /// Messages in the dead-letter queue.
    pub dead: u64,
}

/// Throughput measured from sidecar timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateOutput {
    /// Results per second.
    pub per_second: f64,
    /// Sidecars in the sample.
    pub sample: usize,
    /// The newest `created_at` in the sample.
    pub newest: String,
}

/// `verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyOutput {
    /// The run.
    pub run_id: String,
    /// Whether no rule was broken (the command exits 2 otherwise).
    pub ok: bool,
    /// Planned tasks.
    pub expected: u64,
    /// Planned tasks with both objects present and every check passed.
    pub complete: u64,
    /// Objects listed under the run.
    pub listed: u64,
    /// Every broken rule.
    pub violations: Vec<ViolationOutput>,
    /// The run's dead letters, when the dead-letter queue was read (`null` otherwise).
    pub dead_letters: Option<Vec<DeadLetterOutput>>,
    /// How far the probe pass is, for a spec with `[probe]` (`null` otherwise).
    #[serde(default)]
    pub probe: Option<crate::verify::ProbeProgress>,
}

/// One broken rule: its `kind` and fields ([`Violation`]) and the sentence the text report prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationOutput {
    /// The rule and its fields.
    #[serde(flatten)]
    pub violation: Violation,
    /// The sentence of the text report.
    pub message: String,
}

/// A dead letter of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterOutput {
    /// Its message id.
    pub id: String,
    /// Why it was dead-lettered.
    pub reason: String,
}

/// `retry-dead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryDeadOutput {
    /// Dead letters moved back.
    pub moved: u64,
    /// The task queue they went to.
    pub queue: String,
}

impl fmt::Display for RetryDeadOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "moved {} dead-lettered tasks back to {}",
            self.moved, self.queue
        )
    }
}

/// `cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOutput {
    /// The run.
    pub run_id: String,
    /// Ready tasks of the run dropped.
    pub cancelled: u64,
    /// The task queue.
    pub queue: String,
}

impl fmt::Display for CancelOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cancelled {} queued tasks of run {} (tasks held by workers finish as usual)",
            self.cancelled, self.run_id
        )
    }
}

/// `gallery`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GalleryOutput {
    /// The run.
    pub run_id: String,
    /// The index page's full key.
    pub index_key: String,
    /// Where a browser may find the index.
    pub url: String,
    /// What was written and what was wrong.
    pub summary: GallerySummary,
}

impl Report for PlanReport {
    fn output(&self) -> Output {
        let plan = &self.plan;
        Output::Plan(PlanOutput {
            run_id: plan.run_id.to_string(),
            settings_fingerprint: plan.settings.fingerprint(),
            steps: plan.settings.steps,
            size: plan.settings.size,
            precision: plan.settings.precision,
            models: plan.counts(),
            total_tasks: plan.task_count(),
            views: plan.views.clone(),
            total_images: plan.image_count(),
            estimate: estimate_output(&self.estimate),
        })
    }
}

fn estimate_output(estimate: &Estimate) -> EstimateOutput {
    let table = &estimate.rates;
    let file = &table.file;
    EstimateOutput {
        rates: RatesOutput {
            built_in: table.origin == RatesOrigin::BuiltIn,
            path: match &table.origin {
                RatesOrigin::BuiltIn => crate::estimate::DEFAULT_RATES_PATH.to_owned(),
                RatesOrigin::File(path) => path.display().to_string(),
            },
            device: file.device.clone(),
            precision: file.precision,
            batch: file.batch_label(),
            steps: file.steps,
            size: file.size,
            date: file.date.clone(),
            code_version: file.code_version.clone(),
        },
        layers: estimate
            .layers
            .iter()
            .map(|l| LayerEstimateOutput {
                layer: l.layer.to_string(),
                tasks: l.tasks,
                images: l.images,
                images_per_second: l.images_per_second,
                measured: l.measured,
                seconds: l.seconds,
            })
            .collect(),
        total_seconds: estimate.total_seconds,
    }
}

impl Report for SubmitReport {
    fn output(&self) -> Output {
        Output::Submit(SubmitOutput {
            published: self.published,
            expected: self.expected,
            already_stored: self.already_stored,
            wrote_manifest: self.wrote_manifest,
            manifest_key: self.manifest_key.clone(),
            probe: self.probe.clone(),
        })
    }
}

impl Report for StatusReport {
    fn output(&self) -> Output {
        let (queue, queue_error) = match &self.queue {
            Ok(q) => (
                Some(QueueOutput {
                    ready: q.ready,
                    unacked: q.unacked,
                    consumers: q.consumers,
                    dead: q.dead,
                }),
                None,
            ),
            Err(e) => (None, Some(e.clone())),
        };
        Output::Status(StatusOutput {
            run_id: self.run.clone(),
            done: self.done,
            expected: self.expected,
            layers: self
                .rows
                .iter()
                .map(|r| LayerProgressOutput {
                    model_id: r.model_id.to_string(),
                    layer: r.layer.to_string(),
                    done: r.done,
                    expected: r.expected,
                })
                .collect(),
            queue,
            queue_error,
            rate: self.rate.as_ref().map(|r| RateOutput {
                per_second: r.per_second,
                sample: r.sample,
                newest: r.newest.clone(),
            }),
            eta_seconds: self.eta_seconds(),
        })
    }
}

impl Report for VerifyReport {
    fn output(&self) -> Output {
        Output::Verify(VerifyOutput {
            run_id: self.run_id.clone(),
            ok: self.ok(),
            expected: self.expected,
            complete: self.complete,
            listed: self.listed,
            violations: self
                .violations
                .iter()
                .map(|v| ViolationOutput {
                    violation: v.clone(),
                    message: v.to_string(),
                })
                .collect(),
            dead_letters: self.dead_letters.as_ref().map(|dead| {
                dead.iter()
                    .map(|d| DeadLetterOutput {
                        id: d.id.clone(),
                        reason: d.reason.clone(),
                    })
                    .collect()
            }),
            probe: self.probe,
        })
    }
}

impl Report for GalleryReport {
    fn output(&self) -> Output {
        Output::Gallery(GalleryOutput {
            run_id: self.run_id.clone(),
            index_key: self.index_key.clone(),
            url: self.url.clone(),
            summary: self.summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document names its command and version, and parses back into the same value.
    #[test]
    fn documents_are_tagged_and_round_trip() {
        let doc = Document::new(Output::Cancel(CancelOutput {
            run_id: "r1".into(),
            cancelled: 3,
            queue: "lucid.tasks".into(),
        }));
        let value: serde_json::Value = serde_json::from_str(&doc.to_json()).expect("json");
        assert_eq!(value["schema_version"], 1);
        assert_eq!(value["command"], "cancel");
        assert_eq!(value["cancelled"], 3);
        let back: Document = serde_json::from_str(&doc.to_json()).expect("parse back");
        assert_eq!(back, doc);
        let cancelled: CancelOutput = parse(&doc.to_json()).expect("parse as cancel");
        assert_eq!(cancelled.cancelled, 3);
        let wrong = parse::<SubmitOutput>(&doc.to_json()).expect_err("not a submit");
        assert_eq!(
            wrong.to_string(),
            "expected the output of `submit`, found that of `cancel`"
        );
        let newer = doc
            .to_json()
            .replace("\"schema_version\": 1", "\"schema_version\": 2");
        assert!(matches!(
            parse::<CancelOutput>(&newer),
            Err(ParseError::Version { found: 2 })
        ));

        let violation = ViolationOutput {
            violation: Violation::PngSize {
                key: "k".into(),
                expected: 224,
                found: (8, 8),
            },
            message: "m".into(),
        };
        let text = serde_json::to_string(&violation).expect("json");
        assert_eq!(
            text,
            r#"{"kind":"png_size","key":"k","expected":224,"found":[8,8],"message":"m"}"#
        );
        assert_eq!(
            serde_json::from_str::<ViolationOutput>(&text).expect("parse"),
            violation
        );
    }

    /// The text reports of `submit`, `retry-dead` and `cancel`, as people read them.
    #[test]
    fn submit_and_queue_command_prose() {
        let submitted = SubmitReport {
            published: 54,
            expected: 64,
            already_stored: 10,
            wrote_manifest: false,
            manifest_key: "p/r/run.json".into(),
            probe: None,
        };
        assert_eq!(
            submitted.to_string(),
            "published 54 of 64 tasks (10 already stored)"
        );
        let with_probe = SubmitReport {
            probe: Some(crate::submit::ProbeSubmitted {
                published: 3,
                expected: 4,
                already_stored: 1,
                files: 500,
                wrote_index: false,
            }),
            ..submitted
        };
        assert_eq!(
            with_probe.to_string(),
            "published 54 of 64 tasks (10 already stored); probe: published 3 of 4 shard tasks (1 already stored) over 500 files"
        );
        let moved = RetryDeadOutput {
            moved: 1,
            queue: "q".into(),
        };
        assert_eq!(moved.to_string(), "moved 1 dead-lettered tasks back to q");
        let cancelled = CancelOutput {
            run_id: "r".into(),
            cancelled: 16,
            queue: "q".into(),
        };
        assert_eq!(
            cancelled.to_string(),
            "cancelled 16 queued tasks of run r (tasks held by workers finish as usual)"
        );
    }
}
