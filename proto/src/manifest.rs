//! The run manifest, `{prefix}/{run}/run.json`: what a run is, written once by the coordinator before
//! the first task is published. A rerun with the same run id compares against it so that one key space
//! never mixes images made from different settings or checkpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ModelId, RunId};
use crate::plan::{ModelCounts, Plan};
use crate::spec::{ModelLocation, RenderSettings, SweepSpec};
use crate::versioned::{self, DecodeError, Document};
use crate::view::View;

/// The manifest schema this crate writes: version 2 added the views.
pub const MANIFEST_SCHEMA_VERSION: u32 = 2;

/// The oldest manifest schema this crate reads: a version-1 run rendered the one view of its
/// objective.
pub const OLDEST_MANIFEST_SCHEMA_VERSION: u32 = 1;

/// The largest manifest read, in bytes: one holds the spec and a count per model and layer, tens of
/// KiB for ten models, so this leaves room for thousands of models and long channel lists.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// Which checkpoint a model was rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// Where it was read from.
    pub location: ModelLocation,
    /// Content digest of the checkpoint, as computed by the checkpoint reader.
    pub digest: String,
    /// SHA-256 of the network description the model was planned with (a built-in one's text
    /// included); left out when not computed, as in manifests from before descriptions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_digest: String,
}

/// The manifest object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunManifest {
    /// Always [`MANIFEST_SCHEMA_VERSION`] for manifests built by this crate.
    pub schema_version: u32,
    /// The run.
    pub run_id: RunId,
    /// The spec, redacted (no credentials ever; see [`SweepSpec::redacted`]).
    pub spec: SweepSpec,
    /// The render settings of every task (each with its view's objective), with their fingerprint
    /// implied.
    pub settings: RenderSettings,
    /// The views rendered of every planned channel; a rerun may add views (each has its own keys).
    #[serde(default)]
    pub views: Vec<View>,
    /// Version of the coordinator that planned the run.
    pub code_version: String,
    /// The checkpoint of each model.
    pub checkpoints: BTreeMap<ModelId, CheckpointRef>,
    /// Total tasks of the run.
    pub task_count: u64,
    /// Tasks per model and layer.
    pub layer_counts: Vec<ModelCounts>,
    /// How the probe pass prepares its images (centre square, bilinear, the side), for a run with
    /// `[probe]`: what every dataset example and activation row was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_preprocessing: Option<crate::probe::Preprocessing>,
}

impl RunManifest {
    /// The manifest of `plan`, made from `spec` (stored redacted).
    pub fn new(
        spec: &SweepSpec,
        plan: &Plan,
        code_version: impl Into<String>,
        checkpoints: BTreeMap<ModelId, CheckpointRef>,
    ) -> Self {
        Self {
            schema_version: MANIFEST_SCHEMA_VERSION,
            run_id: plan.run_id.clone(),
            spec: spec.redacted(),
            settings: plan.settings,
            views: plan.views.clone(),
            code_version: code_version.into(),
            checkpoints,
            task_count: plan.task_count(),
            layer_counts: plan.counts(),
            probe_preprocessing: spec
                .probe
                .as_ref()
                .map(|probe| crate::probe::Preprocessing::for_side(probe.side)),
        }
    }

    /// Pretty-printed JSON, as stored.
    pub fn encode(&self) -> Vec<u8> {
        // serialising plain strings and numbers into a Vec cannot fail
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a stored manifest of at most [`MAX_MANIFEST_BYTES`] bytes, checking the schema version first.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let versions = OLDEST_MANIFEST_SCHEMA_VERSION..=MANIFEST_SCHEMA_VERSION;
        let document = Document::RunManifest;
        let (version, mut manifest): (u32, Self) =
            versioned::decode_versions(bytes, document, versions, MAX_MANIFEST_BYTES)?;
        match (version, manifest.views.is_empty()) {
            (1, true) => manifest.views = vec![View::of_objective(manifest.settings.objective)],
            (1, false) => {
                return Err(DecodeError::InvalidField {
                    document,
                    source: crate::spec::InvalidField::new("views", "is not a version-1 field"),
                });
            }
            (_, true) => {
                return Err(DecodeError::InvalidField {
                    document,
                    source: crate::spec::InvalidField::new("views", "is missing or empty"),
                });
            }
            (_, false) => {}
        }
        Ok(manifest)
    }

    /// Why `self` (stored) and `new` (about to run) cannot share one run's key space, or `None` when they
    /// can: they must agree on the render settings and on each common model's checkpoint digest. Channel
    /// and layer selections may differ (a rerun may extend a run).
    pub fn conflict_with(&self, new: &RunManifest) -> Option<String> {
        if self.run_id != new.run_id {
            return Some(format!(
                "run id {} differs from {}",
                new.run_id, self.run_id
            ));
        }
        if self.settings != new.settings {
            return Some(format!(
                "render settings differ: stored fingerprint {}, new {}",
                self.settings.fingerprint(),
                new.settings.fingerprint()
            ));
        }
        // a probe pass's shards are only merged with shards prepared the same way
        if let (Some(stored), Some(now)) = (self.probe_preprocessing, new.probe_preprocessing)
            && stored != now
        {
            return Some(format!(
                "probe preprocessing differs: stored side {}, new side {}",
                stored.side, now.side
            ));
        }
        for (model, stored) in &self.checkpoints {
            if let Some(now) = new.checkpoints.get(model)
                && now.digest != stored.digest
            {
                return Some(format!(
                    "checkpoint of model {model} differs: stored digest {}, new {}",
                    stored.digest, now.digest
                ));
            }
            if let Some(now) = new.checkpoints.get(model)
                && !stored.network_digest.is_empty()
                && now.network_digest != stored.network_digest
            {
                return Some(format!(
                    "network description of model {model} differs: stored digest {}, new {}",
                    stored.network_digest, now.network_digest
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, tests as plan_tests};

    fn manifest() -> RunManifest {
        let mut spec = plan_tests::spec(&["a", "b"]);
        spec.queue.uri = "amqp://user:secret@host/%2f".into();
        let mut clean = spec.clone();
        clean.queue.uri = "amqp://host/%2f".into();
        let p = plan(&clean, &plan_tests::widths_for(&clean)).unwrap();
        let checkpoints = spec
            .models
            .iter()
            .map(|(s, loc)| {
                (
                    s.clone(),
                    CheckpointRef {
                        location: loc.location.clone(),
                        digest: format!("sha256:{s}"),
                        network_digest: String::new(),
                    },
                )
            })
            .collect();
        RunManifest::new(&spec, &p, "0.1.0", checkpoints)
    }

    #[test]
    fn round_trip_and_counts() {
        let m = manifest();
        assert_eq!(m.task_count, 2 * 10037);
        assert_eq!(m.layer_counts[1].model_id.as_str(), "b");
        let bytes = m.encode();
        assert_eq!(RunManifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn credentials_are_never_stored() {
        let text = String::from_utf8(manifest().encode()).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("amqp://host/%2f"));
    }

    #[test]
    fn decode_errors() {
        let mut v: serde_json::Value = serde_json::from_slice(&manifest().encode()).unwrap();
        v["schema_version"] = 3.into();
        assert!(matches!(
            RunManifest::decode(&serde_json::to_vec(&v).unwrap()),
            Err(DecodeError::UnsupportedVersion {
                document: Document::RunManifest,
                found: 3,
                ..
            })
        ));
        // version 1 had no views: the run's one view is its objective's
        v["schema_version"] = 1.into();
        v.as_object_mut().unwrap().remove("views");
        let old = RunManifest::decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(old.views, vec![View::Channel]);
        v["schema_version"] = 2.into();
        assert_eq!(
            RunManifest::decode(&serde_json::to_vec(&v).unwrap())
                .unwrap_err()
                .to_string(),
            "run manifest field views: is missing or empty"
        );
        assert!(matches!(
            RunManifest::decode(&vec![b' '; MAX_MANIFEST_BYTES + 1]),
            Err(DecodeError::TooLarge {
                document: Document::RunManifest,
                ..
            })
        ));
        assert!(matches!(
            RunManifest::decode(b"[]"),
            Err(DecodeError::Malformed {
                document: Document::RunManifest,
                ..
            })
        ));
    }

    #[test]
    fn conflicts() {
        let a = manifest();
        assert_eq!(a.conflict_with(&a.clone()), None);
        let mut b = a.clone();
        b.settings.steps = 1;
        assert!(
            a.conflict_with(&b)
                .unwrap()
                .starts_with("render settings differ")
        );
        let mut c = a.clone();
        c.checkpoints
            .values_mut()
            .for_each(|r| r.digest = "other".into());
        assert!(
            a.conflict_with(&c)
                .unwrap()
                .starts_with("checkpoint of model a differs")
        );
        let mut d = a.clone();
        d.layer_counts.truncate(1);
        assert_eq!(a.conflict_with(&d), None);
        // a probe pass records its preparation; another side under the same run is refused, a
        // probe pass added to a run without one is not
        let mut probed = a.clone();
        probed.probe_preprocessing = Some(crate::probe::Preprocessing::for_side(224));
        assert_eq!(a.conflict_with(&probed), None);
        let json = String::from_utf8(probed.encode()).unwrap();
        assert!(
            json.contains(r#""probe_preprocessing": {"#)
                && json.contains(r#""crop": "centre_square""#),
            "{json}"
        );
        assert_eq!(
            RunManifest::decode(probed.encode().as_slice()).unwrap(),
            probed
        );
        let mut other = probed.clone();
        other.probe_preprocessing = Some(crate::probe::Preprocessing::for_side(160));
        assert_eq!(
            probed.conflict_with(&other).unwrap(),
            "probe preprocessing differs: stored side 224, new side 160"
        );
        assert!(
            !String::from_utf8(a.encode())
                .unwrap()
                .contains("probe_preprocessing")
        );
    }
}
