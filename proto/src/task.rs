//! The task message: one channel of one layer of one model to render. The AMQP body is its JSON.
//!
//! Decoding is defensive because a queue can hold anything: [`crate::versioned::decode`] checks the
//! size, then the schema version, then the strict shape; then identifiers are validated, and the task
//! id must match the one derived from the other fields.

use serde::{Deserialize, Serialize};

use crate::ids::{IdError, LayerName, ModelId, RunId};
use crate::spec::{InvalidField, ModelLocation, NetworkRef, RenderSettings};
pub use crate::versioned::DecodeError;
use crate::versioned::{self, Document};
use crate::view::View;

/// The task message schema this crate writes: version 2 added the view.
pub const TASK_SCHEMA_VERSION: u32 = 2;

/// The oldest task schema this crate reads: a version-1 task is the one view of its objective.
pub const OLDEST_TASK_SCHEMA_VERSION: u32 = 1;

/// The deterministic task id `"{run}/{model}/{layer}/{channel:04}"`, with `.{view slug}` appended
/// for views other than `channel` (`…/0007.diversity-4`); also the AMQP message id.
pub fn task_id(
    run: &RunId,
    model: &ModelId,
    layer: &LayerName,
    channel: u32,
    view: View,
) -> String {
    match view.slug() {
        None => format!("{run}/{model}/{layer}/{channel:04}"),
        Some(slug) => format!("{run}/{model}/{layer}/{channel:04}.{slug}"),
    }
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMessage {
    /// Always [`TASK_SCHEMA_VERSION`] for messages built by this crate.
    pub schema_version: u32,
    /// `"{run}/{model}/{layer}/{channel:04}[.{view}]"`, see [`task_id`].
    pub task_id: String,
    /// The run this task belongs to.
    pub run_id: RunId,
    /// Which network: the model's label, which also keys the random streams.
    #[serde(rename = "seed")]
    pub model_id: ModelId,
    /// Which layer.
    pub layer: LayerName,
    /// Which channel of the layer.
    pub channel: u32,
    /// Which view of the unit; its objective is `settings.objective`.
    pub view: View,
    /// The render settings; tasks with equal [`RenderSettings::fingerprint`] and view may share a
    /// batch.
    pub settings: RenderSettings,
    /// Where the model's checkpoint lives.
    #[serde(rename = "model")]
    pub model_location: ModelLocation,
    /// Which network the model is; left out for the default `alexnet_v2`, so that every task of an
    /// ecoset run keeps its bytes. A reader older than this field refuses a task naming another
    /// network as malformed (unknown field), never misreads it.
    #[serde(default, skip_serializing_if = "NetworkRef::is_default")]
    pub network: NetworkRef,
}

/// The strict shape of a version-1 or -2 message (2 added `view`), with identifiers still
/// unvalidated strings so that an invalid one gets its own error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    #[allow(dead_code)]
    schema_version: u32,
    task_id: String,
    run_id: String,
    seed: String,
    layer: String,
    channel: u32,
    #[serde(default)]
    view: Option<View>,
    settings: RenderSettings,
    model: ModelLocation,
    #[serde(default)]
    network: NetworkRef,
}

impl TaskMessage {
    /// Builds a task of the one view of `settings.objective`, deriving its id.
    pub fn new(
        run_id: RunId,
        model_id: ModelId,
        layer: LayerName,
        channel: u32,
        settings: RenderSettings,
        model_location: ModelLocation,
    ) -> Self {
        let view = View::of_objective(settings.objective);
        Self {
            schema_version: TASK_SCHEMA_VERSION,
            task_id: task_id(&run_id, &model_id, &layer, channel, view),
            run_id,
            model_id,
            layer,
            channel,
            view,
            settings,
            model_location,
            network: NetworkRef::default(),
        }
    }

    /// The same unit's task of `view`: the view's objective and id.
    pub fn with_view(mut self, view: View) -> Self {
        self.view = view;
        self.settings = self.settings.for_view(view);
        self.task_id = task_id(
            &self.run_id,
            &self.model_id,
            &self.layer,
            self.channel,
            view,
        );
        self
    }

    /// Which result of the run this task makes.
    pub fn result_id(&self) -> crate::keys::ResultId {
        crate::keys::ResultId::of(&self.model_id, &self.layer, self.channel, self.view)
    }

    /// The same task for a model of `network`.
    pub fn with_network(mut self, network: NetworkRef) -> Self {
        self.network = network;
        self
    }

    /// The JSON body.
    pub fn encode(&self) -> Vec<u8> {
        // serialising plain strings and numbers into a Vec cannot fail
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a body of at most `max_bytes` bytes. A version-1 task (no view) is the one
    /// view of its objective, its id checked as version 1 wrote it.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self, DecodeError> {
        let versions = OLDEST_TASK_SCHEMA_VERSION..=TASK_SCHEMA_VERSION;
        let (version, raw): (u32, RawTask) =
            versioned::decode_versions(bytes, Document::Task, versions, max_bytes)?;
        let identifier = |source: IdError| DecodeError::InvalidIdentifier {
            document: Document::Task,
            source,
        };
        let field = |source: InvalidField| DecodeError::InvalidField {
            document: Document::Task,
            source,
        };
        let view = match (version, raw.view) {
            (1, None) => View::of_objective(raw.settings.objective),
            (1, Some(_)) => {
                return Err(field(InvalidField::new("view", "is not a version-1 field")));
            }
            (_, Some(view)) => view,
            (_, None) => return Err(field(InvalidField::new("view", "is missing"))),
        };
        if raw.settings.objective != view.objective() {
            return Err(field(InvalidField::new(
                "settings.objective",
                format!(
                    "{:?} is not the objective of view {view}",
                    raw.settings.objective
                ),
            )));
        }
        let task = TaskMessage::new(
            RunId::new(raw.run_id).map_err(identifier)?,
            ModelId::new(raw.seed).map_err(identifier)?,
            LayerName::new(raw.layer).map_err(identifier)?,
            raw.channel,
            raw.settings,
            raw.model,
        )
        .with_network(raw.network);
        // version 1 wrote every id without a view
        let written_as = match version {
            1 => task_id(
                &task.run_id,
                &task.model_id,
                &task.layer,
                task.channel,
                View::Channel,
            ),
            _ => task_id(
                &task.run_id,
                &task.model_id,
                &task.layer,
                task.channel,
                view,
            ),
        };
        let task = task.with_view(view);
        if written_as != raw.task_id {
            return Err(field(InvalidField::new(
                "task_id",
                format!(
                    "{:?} does not match the other fields, expected {:?}",
                    raw.task_id, written_as
                ),
            )));
        }
        task.settings.validate("settings").map_err(field)?;
        Ok(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RenderSection;

    fn sample() -> TaskMessage {
        TaskMessage::new(
            "run1".parse().unwrap(),
            "training_seed_01".parse().unwrap(),
            "conv2".parse().unwrap(),
            7,
            RenderSection::default().settings(),
            ModelLocation::parse("s3://models/seed01").unwrap(),
        )
    }

    fn json(task: &TaskMessage) -> serde_json::Value {
        serde_json::from_slice(&task.encode()).unwrap()
    }

    fn decode_value(v: &serde_json::Value) -> Result<TaskMessage, DecodeError> {
        TaskMessage::decode(&serde_json::to_vec(v).unwrap(), 65_536)
    }

    #[test]
    fn round_trip() {
        let task = sample();
        assert_eq!(task.task_id, "run1/training_seed_01/conv2/0007");
        let bytes = task.encode();
        assert_eq!(TaskMessage::decode(&bytes, 65_536).unwrap(), task);
        let v = json(&task);
        assert_eq!(v["model"], "s3://models/seed01");
        assert_eq!(v["settings"]["objective"], "channel");
        assert_eq!(v["schema_version"], 2);
        assert_eq!(v["view"], "channel");
    }

    #[test]
    fn too_large_is_checked_first() {
        let bytes = sample().encode();
        let err = TaskMessage::decode(&bytes, bytes.len() - 1).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                document: Document::Task,
                len: bytes.len(),
                max: bytes.len() - 1
            }
        );
        // even garbage is rejected for size before parsing
        assert!(matches!(
            TaskMessage::decode(&[b'x'; 100], 10),
            Err(DecodeError::TooLarge {
                document: Document::Task,
                len: 100,
                max: 10
            })
        ));
    }

    #[test]
    fn malformed() {
        for body in [
            &b"not json"[..],
            b"[1,2]",
            b"{}",
            b"{\"schema_version\": \"1\"}",
        ] {
            let err = TaskMessage::decode(body, 1000).unwrap_err();
            assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
        }
        let mut v = json(&sample());
        v.as_object_mut().unwrap().remove("channel");
        let err = decode_value(&v).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("malformed task message: missing field `channel`"),
            "{err}"
        );
        let mut v = json(&sample());
        v["extra"] = 1.into();
        assert!(
            matches!(decode_value(&v), Err(DecodeError::Malformed { reason, .. }) if reason.contains("extra"))
        );
        let mut v = json(&sample());
        v["settings"]["objective"] = "max".into();
        assert!(matches!(
            decode_value(&v),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn unsupported_version_is_read_from_loose_json() {
        // a v3 message may have any shape; only schema_version is read
        let body = br#"{"schema_version": 3, "whatever": [1, 2, 3]}"#;
        let err = TaskMessage::decode(body, 1000).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnsupportedVersion {
                document: Document::Task,
                found: 3,
                supported: 2,
                oldest: 1,
            }
        );
        assert_eq!(
            err.to_string(),
            "unsupported task schema_version 3, this build reads 1 to 2"
        );
    }

    #[test]
    fn invalid_identifiers() {
        for (field, bad) in [("run_id", ".."), ("seed", "a/b"), ("layer", "x\u{7}")] {
            let mut v = json(&sample());
            v[field] = bad.into();
            let err = decode_value(&v).unwrap_err();
            assert!(
                matches!(err, DecodeError::InvalidIdentifier { .. }),
                "{field}: {err}"
            );
        }
        let mut v = json(&sample());
        v["layer"] = "../../etc".into();
        let err = decode_value(&v).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("task message has an invalid layer name \"../../etc\"")
        );
    }

    #[test]
    fn inconsistent_fields() {
        let mut v = json(&sample());
        v["task_id"] = "run1/training_seed_01/conv2/0008".into();
        let err = decode_value(&v).unwrap_err();
        assert!(
            err.to_string().starts_with("task message field task_id: "),
            "{err}"
        );
        let mut v = json(&sample());
        v["settings"]["steps"] = 0.into();
        let err = decode_value(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task message field settings.steps: must be between 1 and 100000, got 0"
        );
    }

    #[test]
    fn a_task_names_its_network_unless_it_is_alexnet_v2() {
        let task = sample();
        assert!(!String::from_utf8_lossy(&task.encode()).contains("network"));
        let described = task
            .clone()
            .with_network(NetworkRef::parse("s3://models/resnet18.toml").expect("network"));
        let body = described.encode();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["network"], "s3://models/resnet18.toml");
        let back = TaskMessage::decode(&body, 1 << 20).expect("decodes");
        assert_eq!(back, described);
        assert_eq!(
            TaskMessage::decode(&task.encode(), 1 << 20).expect("v1"),
            task
        );
    }

    #[test]
    fn a_task_of_a_view_carries_it_in_its_id_and_objective() {
        let task = sample().with_view(View::Diversity { copies: 4 });
        assert_eq!(task.task_id, "run1/training_seed_01/conv2/0007.diversity-4");
        assert_eq!(task.settings.objective, crate::spec::Objective::Channel);
        let back = TaskMessage::decode(&task.encode(), 65_536).unwrap();
        assert_eq!(back, task);
        let neuron = sample().with_view(View::Neuron);
        assert_eq!(neuron.task_id, "run1/training_seed_01/conv2/0007.neuron");
        assert_eq!(neuron.settings.objective, crate::spec::Objective::Neuron);
        // a view whose objective the settings contradict is refused
        let mut v = json(&neuron);
        v["settings"]["objective"] = "channel".into();
        let err = decode_value(&v).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "task message field settings.objective: Channel is not the objective of view neuron"
            ),
            "{err}"
        );
        let mut v = json(&task);
        v.as_object_mut().unwrap().remove("view");
        assert_eq!(
            decode_value(&v).unwrap_err().to_string(),
            "task message field view: is missing"
        );
        let mut v = json(&task);
        v["view"] = "diversity:99".into();
        assert!(matches!(
            decode_value(&v),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn version_1_tasks_are_still_decoded_as_the_view_of_their_objective() {
        // a neuron task as version 1 wrote it: no view, an id without one
        let mut v = json(&sample().with_view(View::Neuron));
        v["schema_version"] = 1.into();
        v.as_object_mut().unwrap().remove("view");
        v["task_id"] = "run1/training_seed_01/conv2/0007".into();
        let task = decode_value(&v).unwrap();
        assert_eq!(task.view, View::Neuron);
        assert_eq!(task.task_id, "run1/training_seed_01/conv2/0007.neuron");
        // version 1 knew no view field
        v["view"] = "neuron".into();
        assert_eq!(
            decode_value(&v).unwrap_err().to_string(),
            "task message field view: is not a version-1 field"
        );
    }
}
