//! The result sidecar: the `.json` object written next to each result's PNG (or PNGs, for a view
//! with copies), recording how it was made.

use serde::{Deserialize, Serialize};

use crate::ids::{LayerName, ModelId, RunId};
use crate::spec::{NetworkRef, RenderSettings};
use crate::task::TaskMessage;
use crate::versioned::{self, DecodeError, Document};
use crate::view::View;

/// The sidecar schema this crate writes: version 2 added the view and its further copies.
pub const RESULT_SCHEMA_VERSION: u32 = 2;

/// The oldest sidecar schema this crate reads: a version-1 sidecar is of the one view of its
/// objective.
pub const OLDEST_RESULT_SCHEMA_VERSION: u32 = 1;

/// The largest sidecar read, in bytes: one is about 1 KiB (its strings are identifiers and short
/// labels), so anything near this is not a sidecar this crate wrote.
pub const MAX_SIDECAR_BYTES: usize = 1 << 20;

/// What the optimisation produced, measured by the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOutcome {
    /// Objective value before the first step.
    pub objective_start: f64,
    /// Objective value after the last step.
    pub objective_end: f64,
    /// Wall time of this result's share of its batch, in seconds: every image of it (each copy
    /// of a view with copies).
    pub render_seconds: f64,
    /// SHA-256 of the PNG bytes, 64 lowercase hex digits.
    pub png_sha256: String,
    /// Copies 1, 2, … of a view with copies (the fields above are copy 0's); empty otherwise.
    pub further_copies: Vec<CopyOutcome>,
}

/// One further copy of a view with copies ([`View::Diversity`]): its own objective and image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyOutcome {
    /// Objective value before the first step.
    pub objective_start: f64,
    /// Objective value after the last step.
    pub objective_end: f64,
    /// SHA-256 of the copy's PNG bytes, lowercase hex.
    pub png_sha256: String,
}

/// Who made the image and when; the caller reads the clock (this crate never does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Worker instance id (pod name, host:pid).
    pub worker_id: String,
    /// Version of the code that rendered (crate version plus git revision).
    pub code_version: String,
    /// RFC 3339 timestamp of completion.
    pub created_at: String,
}

/// The sidecar object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSidecar {
    /// Always [`RESULT_SCHEMA_VERSION`] for sidecars built by this crate.
    pub schema_version: u32,
    /// The task's id.
    pub task_id: String,
    /// The run.
    pub run_id: RunId,
    /// The network: the model's label.
    #[serde(rename = "seed")]
    pub model_id: ModelId,
    /// The layer.
    pub layer: LayerName,
    /// The channel.
    pub channel: u32,
    /// The view (a version-1 sidecar is of the view of its objective).
    #[serde(default)]
    pub view: View,
    /// The settings the image was rendered with.
    pub settings: RenderSettings,
    /// The network the model is; left out for the default `alexnet_v2` (as in the task).
    #[serde(default, skip_serializing_if = "NetworkRef::is_default")]
    pub network: NetworkRef,
    /// Objective value before the first step.
    pub objective_start: f64,
    /// Objective value after the last step.
    pub objective_end: f64,
    /// Optimisation steps run (equals `settings.steps` for a complete render).
    pub steps: u32,
    /// Image side in pixels.
    pub size: u32,
    /// Wall time of this result's share of its batch, in seconds: every image of it (each copy
    /// of a view with copies).
    pub render_seconds: f64,
    /// Worker instance id.
    pub worker_id: String,
    /// Version of the rendering code.
    pub code_version: String,
    /// RFC 3339 timestamp of completion, as given by the caller.
    pub created_at: String,
    /// SHA-256 of the PNG bytes, lowercase hex.
    pub png_sha256: String,
    /// Copies 1, 2, … of a view with copies, each stored as its own PNG (the fields above are copy
    /// 0's); left out for a view of one image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub further_copies: Vec<CopyOutcome>,
}

impl ResultSidecar {
    /// The sidecar of `task`'s render.
    pub fn from_task(task: &TaskMessage, outcome: RenderOutcome, provenance: Provenance) -> Self {
        Self {
            schema_version: RESULT_SCHEMA_VERSION,
            task_id: task.task_id.clone(),
            run_id: task.run_id.clone(),
            model_id: task.model_id.clone(),
            layer: task.layer.clone(),
            channel: task.channel,
            view: task.view,
            settings: task.settings,
            network: task.network.clone(),
            objective_start: outcome.objective_start,
            objective_end: outcome.objective_end,
            steps: task.settings.steps,
            size: task.settings.size,
            render_seconds: outcome.render_seconds,
            worker_id: provenance.worker_id,
            code_version: provenance.code_version,
            created_at: provenance.created_at,
            png_sha256: outcome.png_sha256,
            further_copies: outcome.further_copies,
        }
    }

    /// Which result of the run this sidecar records.
    pub fn result_id(&self) -> crate::keys::ResultId {
        crate::keys::ResultId::of(&self.model_id, &self.layer, self.channel, self.view)
    }

    /// The SHA-256 of each image, copy by copy.
    pub fn png_digests(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.png_sha256.as_str())
            .chain(self.further_copies.iter().map(|c| c.png_sha256.as_str()))
    }

    /// Pretty-printed JSON, as stored.
    pub fn encode(&self) -> Vec<u8> {
        // serialising plain strings and numbers into a Vec cannot fail
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a stored sidecar of at most [`MAX_SIDECAR_BYTES`] bytes, checking the schema version
    /// first; a version-1 sidecar is of the one view of its objective. The view must be the
    /// settings' objective's and account for every copy.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let versions = OLDEST_RESULT_SCHEMA_VERSION..=RESULT_SCHEMA_VERSION;
        let document = Document::ResultSidecar;
        let (version, mut sidecar): (u32, Self) =
            versioned::decode_versions(bytes, document, versions, MAX_SIDECAR_BYTES)?;
        let field = |name: &str, reason: String| DecodeError::InvalidField {
            document,
            source: crate::spec::InvalidField::new(name, reason),
        };
        // the strict parse above accepted the bytes, so this second look cannot fail on them
        let written: ViewProbe = serde_json::from_slice(bytes).unwrap_or_default();
        sidecar.view = match (version, written.view) {
            (1, None) => View::of_objective(sidecar.settings.objective),
            (1, Some(_)) => return Err(field("view", "is not a version-1 field".into())),
            (_, Some(view)) => view,
            (_, None) => return Err(field("view", "is missing".into())),
        };
        if sidecar.settings.objective != sidecar.view.objective() {
            return Err(field(
                "settings.objective",
                format!(
                    "{:?} is not the objective of view {}",
                    sidecar.settings.objective, sidecar.view
                ),
            ));
        }
        let images = sidecar.further_copies.len() + 1;
        if images != sidecar.view.images() as usize {
            return Err(field(
                "further_copies",
                format!(
                    "view {} has {} images, the sidecar records {images}",
                    sidecar.view,
                    sidecar.view.images()
                ),
            ));
        }
        Ok(sidecar)
    }
}

/// Whether a sidecar wrote its `view` (every other field skipped).
#[derive(Default, Deserialize)]
struct ViewProbe {
    view: Option<View>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ModelLocation, RenderSection};

    fn sidecar() -> ResultSidecar {
        let task = TaskMessage::new(
            "run1".parse().unwrap(),
            "s1".parse().unwrap(),
            "fc8".parse().unwrap(),
            564,
            RenderSection::default().settings(),
            ModelLocation::parse("/data/s1").unwrap(),
        );
        ResultSidecar::from_task(
            &task,
            RenderOutcome {
                objective_start: 0.1,
                objective_end: 12.5,
                render_seconds: 3.25,
                png_sha256: "ab".repeat(32),
                further_copies: Vec::new(),
            },
            Provenance {
                worker_id: "worker-0".into(),
                code_version: "0.1.0+abc".into(),
                created_at: "2025-01-02T03:04:05Z".into(),
            },
        )
    }

    #[test]
    fn round_trip() {
        let s = sidecar();
        assert_eq!(s.task_id, "run1/s1/fc8/0564");
        assert_eq!((s.steps, s.size), (512, 224));
        let bytes = s.encode();
        assert_eq!(ResultSidecar::decode(&bytes).unwrap(), s);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schema_version"], 2);
        assert_eq!(v["view"], "channel");
        assert_eq!(v["created_at"], "2025-01-02T03:04:05Z");
        assert!(v.get("further_copies").is_none(), "{v}");
    }

    #[test]
    fn a_diversity_sidecar_records_every_copy() {
        let mut s = sidecar();
        s.view = View::Diversity { copies: 3 };
        s.task_id = "run1/s1/fc8/0564.diversity-3".into();
        s.further_copies = (1..3)
            .map(|i| CopyOutcome {
                objective_start: 0.0,
                objective_end: f64::from(i),
                png_sha256: format!("{i:064}"),
            })
            .collect();
        let back = ResultSidecar::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.png_digests().count(), 3);
        // a copy missing is refused
        s.further_copies.pop();
        let err = ResultSidecar::decode(&s.encode()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "result sidecar field further_copies: view diversity:3 has 3 images, the sidecar records 2"
        );
    }

    #[test]
    fn version_1_sidecars_are_of_the_view_of_their_objective() {
        let mut v: serde_json::Value = serde_json::from_slice(&sidecar().encode()).unwrap();
        v["schema_version"] = 1.into();
        v["settings"]["objective"] = "neuron".into();
        v.as_object_mut().unwrap().remove("view");
        let old = ResultSidecar::decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(old.view, View::Neuron);
        v["schema_version"] = 2.into();
        let err = ResultSidecar::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "result sidecar field view: is missing");
    }

    #[test]
    fn decode_errors() {
        let mut v: serde_json::Value = serde_json::from_slice(&sidecar().encode()).unwrap();
        v["schema_version"] = 9.into();
        let err = ResultSidecar::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnsupportedVersion {
                document: Document::ResultSidecar,
                found: 9,
                ..
            }
        ));
        assert!(matches!(
            ResultSidecar::decode(b"{"),
            Err(DecodeError::Malformed {
                document: Document::ResultSidecar,
                ..
            })
        ));
        assert!(matches!(
            ResultSidecar::decode(&vec![b' '; MAX_SIDECAR_BYTES + 1]),
            Err(DecodeError::TooLarge {
                document: Document::ResultSidecar,
                ..
            })
        ));
        v["schema_version"] = 2.into();
        v["seed"] = "..".into();
        let err = ResultSidecar::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("invalid model id"), "{err}");
    }
}
