//! The dead-letter report of a run without a broker (`lucid-worker local` and `render`):
//! `{run}/dead-letters.json`, every task given up with its reason. A sweep's dead letters live in
//! the broker's dead-letter queue instead; this file is that queue's counterpart for the embedded
//! default, so it is a versioned document of the wire contract like the manifest.

use serde::{Deserialize, Serialize};

use crate::ids::{LayerName, ModelId, RunId};
use crate::versioned::{self, DecodeError, Document};

/// A task given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadTask {
    /// The task's id.
    pub task_id: String,
    /// The model's label (field `seed`, as in the task and the sidecar).
    #[serde(rename = "seed")]
    pub model_id: ModelId,
    /// The layer.
    pub layer: LayerName,
    /// The channel.
    pub channel: u32,
    /// Why it was given up.
    pub reason: String,
    /// Deliveries it had, the last included.
    pub attempts: u32,
}

/// The body of `{run}/dead-letters.json` ([`crate::KeyPrefix::dead_letters_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterReport {
    /// Always [`DEAD_LETTERS_SCHEMA_VERSION`] for reports built by this crate.
    pub schema_version: u32,
    /// The run.
    pub run_id: RunId,
    /// Every task given up, in the order they were.
    pub dead_letters: Vec<DeadTask>,
}

impl DeadLetterReport {
    /// The report of `run`'s dead tasks.
    pub fn new(run_id: RunId, dead_letters: Vec<DeadTask>) -> Self {
        Self {
            schema_version: DEAD_LETTERS_SCHEMA_VERSION,
            run_id,
            dead_letters,
        }
    }

    /// Pretty-printed JSON, as stored.
    pub fn encode(&self) -> Vec<u8> {
        // serialising plain strings and numbers into a Vec cannot fail
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a stored report, checking the size and the schema version first.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        versioned::decode(
            bytes,
            Document::DeadLetters,
            DEAD_LETTERS_SCHEMA_VERSION,
            MAX_DEAD_LETTERS_BYTES,
        )
    }
}

/// The schema version of [`DeadLetterReport`].
pub const DEAD_LETTERS_SCHEMA_VERSION: u32 = 1;
/// Largest report [`DeadLetterReport::decode`] reads (a run of 100,370 failed tasks with their
/// reasons fits).
pub const MAX_DEAD_LETTERS_BYTES: usize = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DeadLetterReport {
        DeadLetterReport::new(
            "r1".parse().unwrap(),
            vec![DeadTask {
                task_id: "r1/s1/conv1/0003".into(),
                model_id: "s1".parse().unwrap(),
                layer: "conv1".parse().unwrap(),
                channel: 3,
                reason: "cannot load model s1".into(),
                attempts: 3,
            }],
        )
    }

    #[test]
    fn round_trips_and_carries_its_version() {
        let bytes = report().encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""schema_version": 1"#), "{text}");
        assert_eq!(DeadLetterReport::decode(&bytes), Ok(report()));
    }

    #[test]
    fn refuses_other_versions_unknown_fields_and_bad_identifiers_naming_the_document() {
        let newer = br#"{"schema_version": 2, "anything": []}"#;
        let err = DeadLetterReport::decode(newer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported dead-letter report schema_version 2, this build reads 1"
        );
        let extra = br#"{"schema_version": 1, "run_id": "r", "dead_letters": [], "x": 1}"#;
        let err = DeadLetterReport::decode(extra).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("malformed dead-letter report: unknown field `x`"),
            "{err}"
        );
        let bad_run = br#"{"schema_version": 1, "run_id": "a/b", "dead_letters": []}"#;
        let err = DeadLetterReport::decode(bad_run).unwrap_err();
        assert_eq!(err.document(), Document::DeadLetters, "{err}");
    }
}
