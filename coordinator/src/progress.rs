//! What a run's listing says: which results (a view of a channel) have a sidecar (done), which have
//! their PNGs, and what else is stored. Built from one `list` of `{prefix}/{run}/`; a task counts as
//! done when its `.json` sidecar exists, because workers upload the PNGs first and the sidecar last.

use std::collections::{BTreeMap, BTreeSet};

use lucid_proto::keys::{ProbeKey, ProbeOutput, ShardPart, parse_probe_key};
use lucid_proto::{Kind, LayerName, ModelId, Plan, ResultId, StoredKey, parse_key};

/// A run's listing, sorted into channel objects and the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRun {
    /// Results with a sidecar, with the sidecar's key.
    pub sidecars: BTreeMap<ResultId, String>,
    /// Results' PNGs by copy (0 for a view of one image), with the PNG's key.
    pub pngs: BTreeMap<(ResultId, u32), String>,
    /// Whether `run.json` is stored.
    pub manifest: bool,
    /// Whether a `local` run's `dead-letters.json` is stored.
    pub dead_letters: bool,
    /// Whether the probe set index (`probe/images.json`) is stored.
    pub probe_index: bool,
    /// Probe shards with a sidecar (done), by model and shard.
    pub probe_shards: BTreeSet<(ModelId, u32)>,
    /// Models whose merged probe report (`probe/{model}/probe.json`, written last) is stored.
    pub probe_reports: BTreeSet<ModelId>,
    /// Prepared probe images stored for the gallery, by their position in the index.
    pub probe_images: BTreeSet<u32>,
    /// Keys that are none of the above, nor an object of the run's gallery (`gallery/…`, which the
    /// coordinator and `local` write).
    pub other: Vec<String>,
}

impl StoredRun {
    /// Lists `run_prefix` in one pass and sorts the keys; returns the raw listing too.
    pub async fn list(
        store: &lucid_storage::Store,
        run_prefix: &str,
    ) -> crate::error::Result<(Vec<String>, Self)> {
        let keys = store
            .list(run_prefix)
            .await
            .map_err(|e| crate::error::Error::storage(format!("list {run_prefix}"), e))?;
        let stored = Self::classify(run_prefix, &keys);
        Ok((keys, stored))
    }

    /// Sorts `keys` (a listing of `run_prefix`, which ends in `/`).
    pub fn classify(run_prefix: &str, keys: &[String]) -> Self {
        let mut stored = StoredRun::default();
        for key in keys {
            let Some(relative) = key.strip_prefix(run_prefix) else {
                stored.other.push(key.clone());
                continue;
            };
            if relative == lucid_proto::keys::MANIFEST_NAME {
                stored.manifest = true;
                continue;
            }
            if relative == lucid_proto::keys::DEAD_LETTERS_NAME {
                stored.dead_letters = true;
                continue;
            }
            // exactly model/layer/file below the run prefix
            let parsed = (relative.split('/').count() == 3)
                .then(|| parse_key(relative))
                .flatten();
            match parsed {
                Some(StoredKey {
                    id,
                    kind: Kind::Sidecar,
                    ..
                }) => {
                    stored.sidecars.insert(id, key.clone());
                }
                Some(StoredKey {
                    id,
                    kind: Kind::Png,
                    copy,
                }) => {
                    stored.pngs.insert((id, copy), key.clone());
                }
                // after the channel keys: no gallery object parses as one, so a model labelled
                // `gallery` keeps its results
                None if relative
                    .strip_prefix(lucid_proto::keys::GALLERY_DIR)
                    .is_some_and(|rest| rest.starts_with('/')) =>
                {
                    // the gallery's own objects: expected, and not results
                }
                // the cross-seed matching's outputs: expected, and not results
                None if lucid_proto::keys::is_match_key(relative) => {}
                None => match parse_probe_key(relative) {
                    Some(ProbeKey::Index) => stored.probe_index = true,
                    Some(ProbeKey::Image { file }) => {
                        stored.probe_images.insert(file);
                    }
                    Some(ProbeKey::Shard {
                        model,
                        shard,
                        part: ShardPart::Sidecar,
                    }) => {
                        stored.probe_shards.insert((model, shard));
                    }
                    Some(ProbeKey::Output { model })
                        if relative.rsplit('/').next()
                            == Some(ProbeOutput::Report.file_name().as_str()) =>
                    {
                        stored.probe_reports.insert(model);
                    }
                    // a shard's data, a merged output: the probe pass's own objects
                    Some(_) => {}
                    None => stored.other.push(key.clone()),
                },
            }
        }
        stored
    }

    /// Whether result `id` has its sidecar (its task is done).
    pub fn is_done(&self, id: &ResultId) -> bool {
        self.sidecars.contains_key(id)
    }
}

/// The body of `key`, which the run's listing showed: gone since is an error, not an absence.
pub async fn get_listed(store: &lucid_storage::Store, key: &str) -> crate::error::Result<Vec<u8>> {
    store
        .get(key)
        .await
        .map_err(|e| crate::error::Error::storage(format!("get {key}"), e))?
        .ok_or_else(|| crate::error::Error::Decode {
            key: key.to_owned(),
            reason: "listed but gone".into(),
        })
}

/// Done and expected counts of one model × layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    /// The model.
    pub model_id: ModelId,
    /// The layer.
    pub layer: LayerName,
    /// Planned results (views of channels) with a sidecar.
    pub done: u64,
    /// Planned results: channels times views.
    pub expected: u64,
}

/// Done / expected per model and layer of `plan`, in plan order. Sidecars outside the plan are not
/// counted.
pub fn layer_progress(plan: &Plan, stored: &StoredRun) -> Vec<LayerProgress> {
    let mut rows = Vec::new();
    for model in &plan.models {
        for layer in &model.layers {
            let results = plan.views.iter().flat_map(|&view| {
                layer
                    .channels
                    .iter()
                    .map(move |&channel| ResultId::of(&model.model_id, &layer.layer, channel, view))
            });
            let done = results.filter(|id| stored.is_done(id)).count() as u64;
            rows.push(LayerProgress {
                model_id: model.model_id.clone(),
                layer: layer.layer.clone(),
                done,
                expected: (layer.channels.len() * plan.views.len()) as u64,
            });
        }
    }
    rows
}

/// Total (done, expected) over `rows`.
pub fn totals(rows: &[LayerProgress]) -> (u64, u64) {
    rows.iter()
        .fold((0, 0), |(d, e), r| (d + r.done, e + r.expected))
}

/// The planned results, as a set, for membership tests.
pub fn planned_results(plan: &Plan) -> BTreeSet<ResultId> {
    plan.results().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_sorts_keys() {
        let keys: Vec<String> = [
            "p/r/run.json",
            "p/r/s1/conv1/0000.png",
            "p/r/s1/conv1/0000.json",
            "p/r/s1/conv1/0001.png",
            "p/r/s1/conv1/0001.neuron.json",
            "p/r/s1/conv1/0001.diversity-2.0.png",
            "p/r/s1/conv1/0001.diversity-2.1.png",
            "p/r/s1/conv1/7.png",
            "p/r/extra/s1/conv1/0002.json",
            "p/r/notes.txt",
            "p/r/dead-letters.json",
            "p/r/gallery/index.html",
            "p/r/gallery/s1/conv1-0.png",
            "p/r/gallery/s1/conv1/0000.html",
            "p/r/gallery/conv1/0003.json",
            "p/r/galleryx/a.html",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let stored = StoredRun::classify("p/r/", &keys);
        assert!(stored.manifest && stored.dead_letters);
        // the three gallery objects are neither results nor `other` (asserted below)
        // a model labelled `gallery` is a model like any other
        assert_eq!(stored.sidecars.len(), 3);
        assert_eq!(stored.pngs.len(), 4);
        assert_eq!(
            stored.other,
            vec![
                "p/r/s1/conv1/7.png".to_owned(),
                "p/r/extra/s1/conv1/0002.json".to_owned(),
                "p/r/notes.txt".to_owned(),
                "p/r/galleryx/a.html".to_owned()
            ]
        );
        let s1: ModelId = "s1".parse().expect("model");
        let conv1: LayerName = "conv1".parse().expect("layer");
        assert!(stored.is_done(&ResultId::channel(s1.clone(), conv1.clone(), 0)));
        assert!(!stored.is_done(&ResultId::channel(s1.clone(), conv1.clone(), 1)));
        let neuron = ResultId {
            view: lucid_proto::View::Neuron,
            ..ResultId::channel(s1.clone(), conv1.clone(), 1)
        };
        assert!(stored.is_done(&neuron));
        let diversity = ResultId {
            view: lucid_proto::View::Diversity { copies: 2 },
            ..ResultId::channel(s1, conv1, 1)
        };
        assert!(stored.pngs.contains_key(&(diversity, 1)));
    }
}
