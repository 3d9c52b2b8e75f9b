//! The dataset examples of a run's probe pass (issue 15, docs/dataset-examples.md) as the pages show
//! them: per model and layer, each channel's top-k and bottom-k images and its top-k maxima with
//! their receptive-field crops, each example resolved to the prepared picture the merge stored
//! (`probe/images/{file:06}.jpg`).
//!
//! The probe objects are read from the same listing and source as the renders. A layer whose
//! examples cannot be read is shown with the reason, like a channel with an unreadable sidecar; it
//! never fails the build.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lucid_probe::output::{ChannelRecord, ProbeReport};
use lucid_proto::keys::{ProbeKey, parse_probe_key};
use lucid_proto::probe::ProbeIndex;

use crate::{GalleryError, GallerySource, paths};

/// The probe objects a run's listing holds.
#[derive(Debug, Default)]
pub(crate) struct ProbeObjects {
    /// Whether `probe/images.json` is stored.
    index: bool,
    /// The prepared pictures stored, by their place in the index.
    pictures: BTreeSet<u32>,
    /// Per model: whether its `probe.json` is stored, and the layers with an examples file.
    models: BTreeMap<String, (bool, BTreeSet<String>)>,
}

impl ProbeObjects {
    /// The probe objects among `keys` (relative to the run root); everything else is ignored.
    pub(crate) fn from_keys(keys: &[String]) -> Self {
        let mut objects = ProbeObjects::default();
        for key in keys {
            match parse_probe_key(key) {
                Some(ProbeKey::Index) => objects.index = true,
                Some(ProbeKey::Image { file }) => {
                    objects.pictures.insert(file);
                }
                Some(ProbeKey::Output { model }) => {
                    let entry = objects.models.entry(model.to_string()).or_default();
                    let file = key.rsplit('/').next().unwrap_or_default();
                    if file == paths::PROBE_REPORT {
                        entry.0 = true;
                    } else if let Some(layer) = file.strip_suffix(paths::EXAMPLES_SUFFIX) {
                        entry.1.insert(layer.to_owned());
                    }
                }
                Some(ProbeKey::Shard { .. }) | None => {}
            }
        }
        objects
    }

    /// Whether `model`'s `layer` has an examples file.
    pub(crate) fn has_examples(&self, model: &str, layer: &str) -> bool {
        self.models
            .get(model)
            .is_some_and(|(_, layers)| layers.contains(layer))
    }
}

/// One probe image as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Picture {
    /// Its name in the probe set.
    pub name: String,
    /// The key of its prepared picture, `None` when that is not stored.
    pub key: Option<String>,
}

/// A model's usable probe images (an example's `image` indexes them) and their prepared side.
#[derive(Debug)]
pub(crate) struct ModelPictures {
    pub pictures: Vec<Picture>,
    /// The side of the prepared square: the space of every crop.
    pub side: u32,
}

/// A layer's examples, or why they cannot be shown.
#[derive(Debug, Clone)]
pub(crate) enum LayerExamples {
    /// Read: each channel's record, and the model's pictures.
    Ok {
        channels: BTreeMap<u32, ChannelRecord>,
        pictures: Arc<ModelPictures>,
    },
    /// The examples, the model's `probe.json` or the index could not be read; why.
    Unreadable(String),
}

impl LayerExamples {
    /// The channels the examples list.
    pub(crate) fn listed(&self) -> Vec<u32> {
        match self {
            LayerExamples::Ok { channels, .. } => channels.keys().copied().collect(),
            LayerExamples::Unreadable(_) => Vec::new(),
        }
    }

    /// The stored picture of channel `channel`'s best example by mean, if any.
    pub(crate) fn top_picture(&self, channel: u32) -> Option<Picture> {
        let (record, pictures) = self.channel(channel)?;
        let best = record.top_mean.first()?;
        pictures
            .pictures
            .get(best.image as usize)
            .filter(|p| p.key.is_some())
            .cloned()
    }

    /// Channel `channel`'s record and the pictures it refers to, if the layer's examples are read
    /// and list it.
    pub(crate) fn channel(&self, channel: u32) -> Option<(&ChannelRecord, &ModelPictures)> {
        match self {
            LayerExamples::Ok { channels, pictures } => {
                channels.get(&channel).map(|r| (r, pictures.as_ref()))
            }
            LayerExamples::Unreadable(_) => None,
        }
    }
}

/// Reads the probe pass's objects for the pages, once per model.
pub(crate) struct ExamplesReader<'a> {
    source: &'a dyn GallerySource,
    objects: ProbeObjects,
    /// The index's files, read on first use.
    index: Option<Result<Arc<Vec<String>>, String>>,
    /// Each model's pictures, read on first use.
    models: BTreeMap<String, Result<Arc<ModelPictures>, String>>,
}

impl<'a> ExamplesReader<'a> {
    pub(crate) fn new(source: &'a dyn GallerySource, keys: &[String]) -> Self {
        ExamplesReader {
            source,
            objects: ProbeObjects::from_keys(keys),
            index: None,
            models: BTreeMap::new(),
        }
    }

    /// The probe objects of the listing.
    pub(crate) fn objects(&self) -> &ProbeObjects {
        &self.objects
    }

    /// `model`'s `layer` examples; `None` when the run has none for it. A source failure is an
    /// error (as for a channel's objects); content that does not parse is
    /// [`LayerExamples::Unreadable`].
    pub(crate) fn layer(
        &mut self,
        model: &str,
        layer: &str,
    ) -> Result<Option<LayerExamples>, GalleryError> {
        if !self.objects.has_examples(model, layer) {
            return Ok(None);
        }
        let pictures = match self.pictures(model)? {
            Ok(pictures) => pictures,
            Err(reason) => return Ok(Some(LayerExamples::Unreadable(reason))),
        };
        let key = paths::examples(model, layer);
        let bytes = self.source.read(&key)?;
        Ok(Some(
            match serde_json::from_slice::<Vec<ChannelRecord>>(&bytes) {
                Ok(records) => check_records(records, &pictures, &key),
                Err(e) => LayerExamples::Unreadable(format!("{key}: {e}")),
            },
        ))
    }

    /// `model`'s pictures, read once.
    fn pictures(
        &mut self,
        model: &str,
    ) -> Result<Result<Arc<ModelPictures>, String>, GalleryError> {
        if let Some(done) = self.models.get(model) {
            return Ok(done.clone());
        }
        let files = self.index_files()?;
        let read = match files {
            Ok(files) => self.read_pictures(model, &files)?,
            Err(reason) => Err(reason),
        };
        self.models.insert(model.to_owned(), read.clone());
        Ok(read)
    }

    /// The index's files, read once.
    fn index_files(&mut self) -> Result<Result<Arc<Vec<String>>, String>, GalleryError> {
        if let Some(done) = &self.index {
            return Ok(done.clone());
        }
        let key = paths::probe_index();
        let read = if self.objects.index {
            let bytes = self.source.read(&key)?;
            ProbeIndex::decode(&bytes)
                .map(|index| Arc::new(index.files))
                .map_err(|e| format!("{key}: {e}"))
        } else {
            Err(format!("{key} is not stored"))
        };
        self.index = Some(read.clone());
        Ok(read)
    }

    fn read_pictures(
        &self,
        model: &str,
        files: &[String],
    ) -> Result<Result<Arc<ModelPictures>, String>, GalleryError> {
        let key = paths::probe_report(model);
        if !self
            .objects
            .models
            .get(model)
            .is_some_and(|(report, _)| *report)
        {
            return Ok(Err(format!("{key} is not stored")));
        }
        let bytes = self.source.read(&key)?;
        let report: ProbeReport = match serde_json::from_slice(&bytes) {
            Ok(report) => report,
            Err(e) => return Ok(Err(format!("{key}: {e}"))),
        };
        let pictures = report
            .probe_set
            .images
            .into_iter()
            .map(|name| {
                let key = files
                    .binary_search(&name)
                    .ok()
                    .map(|file| file as u32)
                    .filter(|file| self.objects.pictures.contains(file))
                    .map(paths::probe_picture);
                Picture { name, key }
            })
            .collect();
        Ok(Ok(Arc::new(ModelPictures {
            pictures,
            side: report.probe_set.preprocessing.side,
        })))
    }
}

/// The records by channel, unless one names an image the model does not have.
fn check_records(
    records: Vec<ChannelRecord>,
    pictures: &Arc<ModelPictures>,
    key: &str,
) -> LayerExamples {
    let images = pictures.pictures.len();
    let mut channels = BTreeMap::new();
    for record in records {
        let lists = [&record.top_mean, &record.bottom_mean];
        let listed = lists
            .into_iter()
            .flatten()
            .map(|e| e.image)
            .chain(record.top_max.iter().map(|p| p.example.image));
        if let Some(bad) = listed.into_iter().find(|&i| i as usize >= images) {
            return LayerExamples::Unreadable(format!(
                "{key}: channel {} names image {bad}, the model's probe.json lists {images}",
                record.channel
            ));
        }
        channels.insert(record.channel as u32, record);
    }
    LayerExamples::Ok {
        channels,
        pictures: Arc::clone(pictures),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_objects_are_found_among_a_runs_keys() {
        let keys: Vec<String> = [
            "probe/images.json",
            "probe/images/000003.jpg",
            "probe/images/000010.jpg",
            "probe/s1/probe.json",
            "probe/s1/conv1.examples.json",
            "probe/s1/conv1.means.safetensors",
            "probe/s1/shards/00000.json",
            "probe/s2/conv2.examples.json",
            "s1/conv1/0000.png",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let objects = ProbeObjects::from_keys(&keys);
        assert!(objects.index);
        assert_eq!(objects.pictures, BTreeSet::from([3, 10]));
        assert!(objects.has_examples("s1", "conv1"));
        assert!(!objects.has_examples("s1", "conv2"));
        assert!(objects.has_examples("s2", "conv2"));
        assert!(objects.models["s1"].0);
        assert!(!objects.models["s2"].0);
    }
}
