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

/// A probe task (one seed's shard of the probe images) given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadProbeTask {
    /// The task's id (`{run}/probe/{model}/{shard:05}`).
    pub task_id: String,
    /// The model's label (field `seed`, as in a render task's letter).
    #[serde(rename = "seed")]
    pub model_id: ModelId,
    /// The shard's number.
    pub shard: u32,
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
    /// Every render task given up, in the order they were.
    pub dead_letters: Vec<DeadTask>,
    /// Every probe task given up, in the order they were (schema 2; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_dead_letters: Vec<DeadProbeTask>,
}

impl DeadLetterReport {
    /// The report of `run`'s dead render and probe tasks.
    pub fn new(
        run_id: RunId,
        dead_letters: Vec<DeadTask>,
        probe_dead_letters: Vec<DeadProbeTask>,
    ) -> Self {
        Self {
            schema_version: DEAD_LETTERS_SCHEMA_VERSION,
            run_id,
            dead_letters,
            probe_dead_letters,
        }
    }

    /// Every letter as (task id, reason): render tasks first, then probe tasks.
    pub fn reasons(&self) -> impl Iterator<Item = (&str, &str)> {
        let renders = self
            .dead_letters
            .iter()
            .map(|d| (d.task_id.as_str(), d.reason.as_str()));
        let probes = self
            .probe_dead_letters
            .iter()
            .map(|d| (d.task_id.as_str(), d.reason.as_str()));
        renders.chain(probes)
    }

    /// Pretty-printed JSON, as stored.
    pub fn encode(&self) -> Vec<u8> {
        // serialising plain strings and numbers into a Vec cannot fail
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a stored report, checking the size and the schema version first; version 1 (render
    /// letters only) is read as a report without probe letters.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (_, report): (u32, Self) = versioned::decode_versions(
            bytes,
            Document::DeadLetters,
            1..=DEAD_LETTERS_SCHEMA_VERSION,
            MAX_DEAD_LETTERS_BYTES,
        )?;
        Ok(report)
    }
}

/// The schema version of [`DeadLetterReport`] (2 adds `probe_dead_letters`).
pub const DEAD_LETTERS_SCHEMA_VERSION: u32 = 2;
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
            vec![DeadProbeTask {
                task_id: "r1/probe/s1/0002".into(),
                model_id: "s1".parse().unwrap(),
                shard: 2,
                reason: "cannot load model s1".into(),
                attempts: 3,
            }],
        )
    }

    #[test]
    fn round_trips_and_carries_its_version() {
        let bytes = report().encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""schema_version": 2"#), "{text}");
        assert_eq!(DeadLetterReport::decode(&bytes), Ok(report()));
        let ids: Vec<String> = report().reasons().map(|(id, _)| id.to_owned()).collect();
        assert_eq!(ids, ["r1/s1/conv1/0003", "r1/probe/s1/0002"]);
    }

    #[test]
    fn a_version_1_report_reads_as_one_without_probe_letters() {
        let v1 = br#"{"schema_version": 1, "run_id": "r1", "dead_letters": [{"task_id": "r1/s1/conv1/0003",
            "seed": "s1", "layer": "conv1", "channel": 3, "reason": "cannot load model s1", "attempts": 3}]}"#;
        let report = DeadLetterReport::decode(v1).expect("version 1 is read");
        assert_eq!(report.dead_letters, self::report().dead_letters);
        assert!(report.probe_dead_letters.is_empty());
    }

    #[test]
    fn refuses_other_versions_unknown_fields_and_bad_identifiers_naming_the_document() {
        let newer = br#"{"schema_version": 3, "anything": []}"#;
        let err = DeadLetterReport::decode(newer).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unsupported dead-letter report schema_version 3"),
            "{err}"
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
