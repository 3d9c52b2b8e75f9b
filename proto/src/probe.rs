//! The probe pass's documents (issue 15, docs/dataset-examples.md): the task that probes one shard of
//! the probe set with one model, the sidecar a worker stores beside the shard's data when it is done,
//! and the run's index of the probe set, which fixes the files and their order for every shard and
//! every resume.
//!
//! A probe task travels on the render tasks' queue; [`crate::work::Work`] tells the two apart by the
//! `kind` field, which only a probe task has. Like a render task's, its id is deterministic
//! (`{run}/probe/{model}/{shard:05}`) and its result keys too ([`crate::keys`]), so a redelivered
//! shard overwrites instead of duplicating, and a stored sidecar makes it a no-op.

use serde::{Deserialize, Serialize};

use crate::ids::{IdError, LayerName, ModelId, RunId};
use crate::result::Provenance;
use crate::spec::{InvalidField, ModelLocation, NetworkRef, ProbeSection};
use crate::versioned::{self, DecodeError, Document};

/// The probe task schema this crate writes and reads.
pub const PROBE_TASK_SCHEMA_VERSION: u32 = 1;
/// The probe shard sidecar schema.
pub const PROBE_SHARD_SCHEMA_VERSION: u32 = 1;
/// The probe set index schema.
pub const PROBE_INDEX_SCHEMA_VERSION: u32 = 1;
/// Longest probe file name accepted (S3 keys are at most 1,024 bytes).
pub const MAX_FILE_NAME: usize = 1024;

/// The `kind` of a probe task's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A forward-only pass over one shard of the probe set.
    Probe,
}

/// `"{run}/probe/{model}/{shard:05}"`: the probe task's id, also the AMQP message id.
pub fn probe_task_id(run: &RunId, model: &ModelId, shard: u32) -> String {
    format!("{run}/probe/{model}/{shard:05}")
}

/// A probe file set aside, and why: at listing (a name no key may have) or by the worker (not a
/// usable image). It never stops the pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    /// The file, relative to the probe set's root.
    pub file: String,
    /// Why, naming the file.
    pub reason: String,
}

/// Checks a probe file's name relative to its set's root: it must stay below the root (no empty,
/// `.` or `..` segment, no leading `/`, no `\`) and carry no control character, since a worker joins
/// it to a local folder and logs it.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_FILE_NAME {
        return Err(format!(
            "a probe file name must have 1 to {MAX_FILE_NAME} bytes, got {}",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "probe file name {name:?} has a control character or a backslash"
        ));
    }
    if name
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!(
            "probe file name {name:?} has an empty, . or .. segment"
        ));
    }
    Ok(())
}

/// How probe images were prepared, recorded in the run manifest so a result says what it was
/// computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// The side of the square the network saw, in pixels.
    pub side: u32,
    /// Always `"centre_square"`: the largest square at the image's centre.
    pub crop: Crop,
    /// Always `"bilinear"` (a triangle filter scaled to the reduction when shrinking).
    pub resize: Resize,
}

/// The crop rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    /// The largest square at the centre (torchvision's `CenterCrop(min(h, w))`).
    CentreSquare,
}

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Bilinear.
    Bilinear,
}

impl Preprocessing {
    /// The one preparation lucid-sweep applies, for a network whose input side is `side`.
    pub fn for_side(side: u32) -> Self {
        Preprocessing {
            side,
            crop: Crop::CentreSquare,
            resize: Resize::Bilinear,
        }
    }
}

/// One model over one shard of the probe set, forward only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeTask {
    /// [`PROBE_TASK_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always [`TaskKind::Probe`]: what tells it from a render task.
    pub kind: TaskKind,
    /// [`probe_task_id`].
    pub task_id: String,
    /// The run.
    pub run_id: RunId,
    /// The model's label.
    #[serde(rename = "seed")]
    pub model_id: ModelId,
    /// Where its checkpoint lives.
    #[serde(rename = "model")]
    pub model_location: ModelLocation,
    /// Which network it is; left out for `alexnet_v2`, as in a render task.
    #[serde(default, skip_serializing_if = "NetworkRef::is_default")]
    pub network: NetworkRef,
    /// The layers probed, in network order.
    pub layers: Vec<LayerName>,
    /// The shard's number: its files are `files` of the index from `shard × probe.shard` on.
    pub shard: u32,
    /// The probe set's root.
    pub probe_set: ModelLocation,
    /// The shard's files, relative to the root, in index order.
    pub files: Vec<String>,
    /// Examples per list.
    pub k: u32,
    /// The side images are prepared at.
    pub side: u32,
    /// Images per forward pass.
    pub batch: u32,
}

/// The strict shape of a probe task, identifiers unvalidated.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbeTask {
    #[allow(dead_code)]
    schema_version: u32,
    #[allow(dead_code)]
    kind: TaskKind,
    task_id: String,
    run_id: String,
    seed: String,
    model: ModelLocation,
    #[serde(default)]
    network: NetworkRef,
    layers: Vec<String>,
    shard: u32,
    probe_set: ModelLocation,
    files: Vec<String>,
    k: u32,
    side: u32,
    batch: u32,
}

/// What a model's probe tasks share.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeModel {
    /// The model's label.
    pub model_id: ModelId,
    /// Its checkpoint.
    pub location: ModelLocation,
    /// Its network.
    pub network: NetworkRef,
    /// The layers probed, in network order.
    pub layers: Vec<LayerName>,
}

impl ProbeTask {
    /// The task of shard `shard` (its `files`) for `model`, with `section`'s settings.
    pub fn new(
        run_id: RunId,
        model: &ProbeModel,
        section: &ProbeSection,
        shard: u32,
        files: Vec<String>,
    ) -> Self {
        ProbeTask {
            schema_version: PROBE_TASK_SCHEMA_VERSION,
            kind: TaskKind::Probe,
            task_id: probe_task_id(&run_id, &model.model_id, shard),
            run_id,
            model_id: model.model_id.clone(),
            model_location: model.location.clone(),
            network: model.network.clone(),
            layers: model.layers.clone(),
            shard,
            probe_set: section.images.clone(),
            files,
            k: section.k,
            side: section.side,
            batch: section.batch,
        }
    }

    /// The JSON body.
    pub fn encode(&self) -> Vec<u8> {
        // plain strings and numbers: serialising into a Vec cannot fail
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a body of at most `max_bytes` bytes: identifiers, the id against the other
    /// fields, every file name ([`check_file_name`]) and the settings' ranges.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self, DecodeError> {
        let versions = PROBE_TASK_SCHEMA_VERSION..=PROBE_TASK_SCHEMA_VERSION;
        let (_, raw): (u32, RawProbeTask) =
            versioned::decode_versions(bytes, Document::ProbeTask, versions, max_bytes)?;
        let identifier = |source: IdError| DecodeError::InvalidIdentifier {
            document: Document::ProbeTask,
            source,
        };
        let field = |source: InvalidField| DecodeError::InvalidField {
            document: Document::ProbeTask,
            source,
        };
        let model = ProbeModel {
            model_id: ModelId::new(raw.seed).map_err(identifier)?,
            location: raw.model,
            network: raw.network,
            layers: raw
                .layers
                .into_iter()
                .map(LayerName::new)
                .collect::<Result<_, _>>()
                .map_err(identifier)?,
        };
        if model.layers.is_empty() {
            return Err(field(InvalidField::new("layers", "names no layer")));
        }
        if raw.files.is_empty() {
            return Err(field(InvalidField::new("files", "names no file")));
        }
        for (i, name) in raw.files.iter().enumerate() {
            check_file_name(name)
                .map_err(|reason| field(InvalidField::new(format!("files[{i}]"), reason)))?;
        }
        let section = ProbeSection {
            images: raw.probe_set,
            k: raw.k,
            side: raw.side,
            shard: u32::try_from(raw.files.len()).unwrap_or(u32::MAX),
            batch: raw.batch,
        };
        section.validate().map_err(field)?;
        let task = ProbeTask::new(
            RunId::new(raw.run_id).map_err(identifier)?,
            &model,
            &section,
            raw.shard,
            raw.files,
        );
        if task.task_id != raw.task_id {
            return Err(field(InvalidField::new(
                "task_id",
                format!(
                    "{:?} does not match the other fields, expected {:?}",
                    raw.task_id, task.task_id
                ),
            )));
        }
        Ok(task)
    }
}

/// One layer of a shard's result: its name and width (the data's shapes follow from them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardLayer {
    /// The layer.
    pub layer: LayerName,
    /// Its width.
    pub channels: u32,
}

/// `{run}/probe/{model}/shards/{shard:05}.json`: a probe task is done. Stored after its data
/// (`….safetensors`, `lucid_probe::shard`), so a stored sidecar always has its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSidecar {
    /// [`PROBE_SHARD_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The task's id.
    pub task_id: String,
    /// The run.
    pub run_id: RunId,
    /// The model.
    #[serde(rename = "seed")]
    pub model_id: ModelId,
    /// The shard.
    pub shard: u32,
    /// The shard's usable images in index order: an example's `image` in the data indexes this
    /// list, and row `i` of each means tensor is image `i`.
    pub images: Vec<String>,
    /// The shard's files that were set aside.
    pub skipped: Vec<Skipped>,
    /// The layers, in the task's order.
    pub layers: Vec<ShardLayer>,
    /// Examples per list.
    pub k: u32,
    /// The side images were prepared at.
    pub side: u32,
    /// Seconds fetching, decoding and preparing the shard's files.
    pub read_seconds: f64,
    /// Seconds in the forward passes.
    pub forward_seconds: f64,
    /// Who made it.
    pub provenance: Provenance,
}

impl ShardSidecar {
    /// The JSON body.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks a stored sidecar.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let versions = PROBE_SHARD_SCHEMA_VERSION..=PROBE_SHARD_SCHEMA_VERSION;
        let (_, sidecar): (u32, ShardSidecar) = versioned::decode_versions(
            bytes,
            Document::ProbeShard,
            versions,
            versioned::MAX_STORED_DOCUMENT,
        )?;
        Ok(sidecar)
    }
}

/// `{run}/probe/images.json`: the probe set as the run first listed it. Every shard and every resume
/// read their files from it, so a set changed under a run is noticed instead of mixing two sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeIndex {
    /// [`PROBE_INDEX_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The set's root.
    pub probe_set: ModelLocation,
    /// Files per shard.
    pub shard: u32,
    /// Every file with a valid name, in key order.
    pub files: Vec<String>,
    /// Names set aside at listing.
    pub skipped: Vec<Skipped>,
}

impl ProbeIndex {
    /// The index of `files` (key order) under `section`, names a key cannot have set aside.
    pub fn new(section: &ProbeSection, listed: Vec<String>) -> Self {
        let (mut files, mut skipped) = (Vec::new(), Vec::new());
        for name in listed {
            match check_file_name(&name) {
                Ok(()) => files.push(name),
                Err(reason) => skipped.push(Skipped {
                    file: name.escape_debug().to_string(),
                    reason,
                }),
            }
        }
        files.sort();
        ProbeIndex {
            schema_version: PROBE_INDEX_SCHEMA_VERSION,
            probe_set: section.images.clone(),
            shard: section.shard,
            files,
            skipped,
        }
    }

    /// The shards: their numbers and files.
    pub fn shards(&self) -> impl Iterator<Item = (u32, &[String])> {
        self.files
            .chunks(self.shard.max(1) as usize)
            .enumerate()
            .map(|(i, files)| (i as u32, files))
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> u32 {
        self.files.len().div_ceil(self.shard.max(1) as usize) as u32
    }

    /// The JSON body.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks a stored index (every name checked again).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let versions = PROBE_INDEX_SCHEMA_VERSION..=PROBE_INDEX_SCHEMA_VERSION;
        let (_, index): (u32, ProbeIndex) = versioned::decode_versions(
            bytes,
            Document::ProbeIndex,
            versions,
            versioned::MAX_STORED_DOCUMENT,
        )?;
        for (i, name) in index.files.iter().enumerate() {
            check_file_name(name).map_err(|reason| DecodeError::InvalidField {
                document: Document::ProbeIndex,
                source: InvalidField::new(format!("files[{i}]"), reason),
            })?;
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> ProbeSection {
        ProbeSection {
            shard: 2,
            ..ProbeSection::at(ModelLocation::parse("s3://probe/ecoset-test").unwrap())
        }
    }

    fn task() -> ProbeTask {
        let model = ProbeModel {
            model_id: "training_seed_01".parse().unwrap(),
            location: ModelLocation::parse("s3://models/seed01").unwrap(),
            network: NetworkRef::default(),
            layers: vec!["conv1".parse().unwrap(), "fc6".parse().unwrap()],
        };
        ProbeTask::new(
            "run1".parse().unwrap(),
            &model,
            &section(),
            3,
            vec!["a/cat.jpg".into(), "b.png".into()],
        )
    }

    fn decode_value(v: &serde_json::Value) -> Result<ProbeTask, DecodeError> {
        ProbeTask::decode(&serde_json::to_vec(v).unwrap(), 65_536)
    }

    #[test]
    fn a_probe_task_round_trips_with_its_id_and_kind() {
        let task = task();
        assert_eq!(task.task_id, "run1/probe/training_seed_01/00003");
        let v: serde_json::Value = serde_json::from_slice(&task.encode()).unwrap();
        assert_eq!(v["kind"], "probe");
        assert!(v.get("network").is_none(), "alexnet_v2 is left out");
        assert_eq!(ProbeTask::decode(&task.encode(), 65_536).unwrap(), task);
    }

    #[test]
    fn a_probe_task_whose_file_leaves_the_root_or_id_lies_is_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&task().encode()).unwrap();
        v["files"][1] = "../../etc/passwd".into();
        let error = decode_value(&v).unwrap_err().to_string();
        assert!(
            error.contains("files[1]") && error.contains(".."),
            "{error}"
        );
        let mut v: serde_json::Value = serde_json::from_slice(&task().encode()).unwrap();
        v["shard"] = 4.into();
        let error = decode_value(&v).unwrap_err().to_string();
        assert!(
            error.contains("task_id") && error.contains("00004"),
            "{error}"
        );
        let mut v: serde_json::Value = serde_json::from_slice(&task().encode()).unwrap();
        v["k"] = 0.into();
        assert!(
            decode_value(&v)
                .unwrap_err()
                .to_string()
                .contains("probe.k")
        );
        let mut v: serde_json::Value = serde_json::from_slice(&task().encode()).unwrap();
        v["files"] = serde_json::json!([]);
        assert!(
            decode_value(&v)
                .unwrap_err()
                .to_string()
                .contains("names no file")
        );
    }

    #[test]
    fn file_names_that_could_escape_or_corrupt_logs_are_refused() {
        for good in ["a.jpg", "sub/dir/b c.png", "ünïcode.jpg"] {
            assert_eq!(check_file_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/abs.jpg",
            "a//b.jpg",
            "./a.jpg",
            "a/../b.jpg",
            "a\\b.jpg",
            "a\nb.jpg",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_index_sorts_its_files_sets_bad_names_aside_and_cuts_shards() {
        let listed = ["c.jpg", "a.jpg", "bad\u{7}.jpg", "b.jpg", "d.png"];
        let index = ProbeIndex::new(&section(), listed.iter().map(|s| s.to_string()).collect());
        assert_eq!(index.files, ["a.jpg", "b.jpg", "c.jpg", "d.png"]);
        assert_eq!(index.skipped.len(), 1);
        assert_eq!(index.skipped[0].file, "bad\\u{7}.jpg");
        let shards: Vec<(u32, Vec<String>)> =
            index.shards().map(|(i, f)| (i, f.to_vec())).collect();
        assert_eq!(shards.len() as u32, index.shard_count());
        assert_eq!(shards[1], (1, vec!["c.jpg".to_owned(), "d.png".to_owned()]));
        assert_eq!(ProbeIndex::decode(&index.encode()).unwrap(), index);
    }
}
