//! What a task queue carries: a render task or a probe task. They share one queue and one set of
//! workers; only a probe task has a `kind` field, so every render task written before probe tasks
//! existed is still read as one. (A worker older than probe tasks refuses one as malformed, with
//! its unknown fields named, and dead-letters it: never misreads it.)

use serde::Deserialize;

use crate::probe::ProbeTask;
use crate::task::TaskMessage;
use crate::versioned::{DecodeError, Document};

/// A message of the task queue, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Render one view of one channel.
    Render(TaskMessage),
    /// Probe one shard of the probe set with one model.
    Probe(ProbeTask),
}

/// What the publisher needs of a message: its id and its body.
pub trait Envelope {
    /// The deterministic task id, the AMQP message id.
    fn task_id(&self) -> &str;
    /// The JSON body.
    fn encode(&self) -> Vec<u8>;
}

impl Envelope for TaskMessage {
    fn task_id(&self) -> &str {
        &self.task_id
    }
    fn encode(&self) -> Vec<u8> {
        TaskMessage::encode(self)
    }
}

impl Envelope for ProbeTask {
    fn task_id(&self) -> &str {
        &self.task_id
    }
    fn encode(&self) -> Vec<u8> {
        ProbeTask::encode(self)
    }
}

impl Envelope for Work {
    fn task_id(&self) -> &str {
        match self {
            Work::Render(task) => &task.task_id,
            Work::Probe(task) => &task.task_id,
        }
    }
    fn encode(&self) -> Vec<u8> {
        match self {
            Work::Render(task) => task.encode(),
            Work::Probe(task) => task.encode(),
        }
    }
}

/// Reads only `kind`; every other field is skipped unparsed.
#[derive(Deserialize)]
struct KindProbe {
    #[serde(default)]
    kind: Option<serde::de::IgnoredAny>,
}

impl Work {
    /// Decodes a body of at most `max_bytes`: a probe task when it has a `kind` field, a render
    /// task otherwise; a `kind` other than `probe` is refused by the probe task's strict shape.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self, DecodeError> {
        if bytes.len() > max_bytes {
            return Err(DecodeError::TooLarge {
                document: Document::Task,
                len: bytes.len(),
                max: max_bytes,
            });
        }
        match serde_json::from_slice::<KindProbe>(bytes) {
            Ok(KindProbe { kind: Some(_) }) => ProbeTask::decode(bytes, max_bytes).map(Work::Probe),
            // no kind, or not even a JSON object: the render task's decoder says what is wrong
            _ => TaskMessage::decode(bytes, max_bytes).map(Work::Render),
        }
    }

    /// The task id.
    pub fn task_id(&self) -> &str {
        Envelope::task_id(self)
    }
}

impl From<TaskMessage> for Work {
    fn from(task: TaskMessage) -> Self {
        Work::Render(task)
    }
}

impl From<ProbeTask> for Work {
    fn from(task: ProbeTask) -> Self {
        Work::Probe(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelLocation;
    use crate::probe::ProbeModel;
    use crate::spec::{NetworkRef, ProbeSection, RenderSection};

    fn render() -> TaskMessage {
        TaskMessage::new(
            "run1".parse().unwrap(),
            "seed1".parse().unwrap(),
            "conv2".parse().unwrap(),
            7,
            RenderSection::default().settings(),
            ModelLocation::parse("/models/seed1").unwrap(),
        )
    }

    fn probe() -> ProbeTask {
        let model = ProbeModel {
            model_id: "seed1".parse().unwrap(),
            location: ModelLocation::parse("/models/seed1").unwrap(),
            network: NetworkRef::default(),
            layers: vec!["conv1".parse().unwrap()],
        };
        let section = ProbeSection::at(ModelLocation::parse("/probe").unwrap());
        ProbeTask::new(
            "run1".parse().unwrap(),
            &model,
            &section,
            0,
            vec!["a.jpg".into()],
        )
    }

    #[test]
    fn both_kinds_share_the_queue_and_decode_to_their_own_kind() {
        let render = render();
        let probe = probe();
        assert_eq!(
            Work::decode(&render.encode(), 65_536).unwrap(),
            Work::Render(render)
        );
        assert_eq!(
            Work::decode(&probe.encode(), 65_536).unwrap(),
            Work::Probe(probe)
        );
    }

    #[test]
    fn an_unknown_kind_or_a_render_task_with_a_kind_is_refused_as_a_probe_task() {
        let mut v: serde_json::Value = serde_json::from_slice(&probe().encode()).unwrap();
        v["kind"] = "train".into();
        let error = Work::decode(&serde_json::to_vec(&v).unwrap(), 65_536).unwrap_err();
        assert!(
            error.to_string().contains("malformed probe task message"),
            "{error}"
        );
        let mut v: serde_json::Value = serde_json::from_slice(&render().encode()).unwrap();
        v["kind"] = "probe".into();
        let error = Work::decode(&serde_json::to_vec(&v).unwrap(), 65_536).unwrap_err();
        assert!(
            error.to_string().contains("probe task schema_version 2"),
            "{error}"
        );
        let error = Work::decode(b"not json", 65_536).unwrap_err();
        assert!(
            error.to_string().contains("malformed task message"),
            "{error}"
        );
        let error = Work::decode(&[b' '; 100], 10).unwrap_err();
        assert!(matches!(error, DecodeError::TooLarge { .. }), "{error}");
    }
}
