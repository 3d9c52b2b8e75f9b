//! Object key layout: part of the wire contract, since a rerun skips results whose keys already exist.
//!
//! ```text
//! {prefix}/{run}/run.json                                   run manifest
//! {prefix}/{run}/dead-letters.json                          tasks `local` gave up, with their reasons
//! {prefix}/{run}/{model}/{layer}/{channel:04}.png           image of the channel view
//! {prefix}/{run}/{model}/{layer}/{channel:04}.json          its result sidecar
//! {prefix}/{run}/{model}/{layer}/{channel:04}.{view}.png    image of another view (`0007.neuron.png`)
//! {prefix}/{run}/{model}/{layer}/{channel:04}.{view}.json   its sidecar
//! {prefix}/{run}/{model}/{layer}/{channel:04}.{view}.{copy}.png  copy of a view with copies
//!                                                           (`0007.diversity-4.2.png`; one sidecar)
//! {prefix}/{run}/probe/images.json                         the probe set as the run listed it
//! {prefix}/{run}/probe/images/{file:06}.jpg                 file `file` of that list as the networks
//!                                                           saw it (prepared), for the gallery
//! {prefix}/{run}/probe/{model}/shards/{shard:05}.safetensors  a probe shard's lists and means
//! {prefix}/{run}/probe/{model}/shards/{shard:05}.json       its sidecar (stored last: done)
//! {prefix}/{run}/probe/{model}/probe.json                   the merged pass of a model, and its
//! {prefix}/{run}/probe/{model}/{layer}.examples.json        examples and
//! {prefix}/{run}/probe/{model}/{layer}.means.safetensors    means matrix per layer
//! {prefix}/{run}/match/summary.json                         channels matched across seeds: per
//! {prefix}/{run}/match/layers/{layer}.json                  layer a summary, the matches and
//! {prefix}/{run}/match/layers/{layer}.csv                   consistency, the matches as CSV
//! ```
//!
//! The channel view's keys are the keys of every run before views, so those runs resume and read
//! as they did. An empty prefix drops its segment (no leading `/`). Every segment is a validated
//! identifier, so keys never contain `..`, empty segments or control characters.

use std::fmt;

use crate::ids::{IdError, LayerName, ModelId, RunId, validate_identifier};
use crate::view::View;

/// File name of the run manifest inside a run's key space.
pub const MANIFEST_NAME: &str = "run.json";

/// File name of the dead-letter report of a `local` run inside a run's key space.
pub const DEAD_LETTERS_NAME: &str = "dead-letters.json";

/// Folder of a run's static gallery inside a run's key space (written by the gallery builder, read
/// by browsers; never a result).
pub const GALLERY_DIR: &str = "gallery";

/// Folder of a run's probe pass inside a run's key space (docs/dataset-examples.md).
pub const PROBE_DIR: &str = "probe";

/// File name of the probe set index inside [`PROBE_DIR`].
pub const PROBE_INDEX_NAME: &str = "images.json";

/// Folder of the cross-seed matching's outputs inside a run's key space (docs/matching.md).
pub const MATCH_DIR: &str = "match";

/// Which output of the cross-seed matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOutput<'a> {
    /// `summary.json`: every layer's curve point and consistency.
    Summary,
    /// `layers/{layer}.json`: the layer's matches, reference rows, consistency.
    Layer(&'a LayerName),
    /// `layers/{layer}.csv`: the layer's matches as CSV.
    LayerCsv(&'a LayerName),
}

impl MatchOutput<'_> {
    /// The key inside [`MATCH_DIR`].
    pub fn relative(self) -> String {
        match self {
            MatchOutput::Summary => "summary.json".into(),
            MatchOutput::Layer(layer) => format!("layers/{layer}.json"),
            MatchOutput::LayerCsv(layer) => format!("layers/{layer}.csv"),
        }
    }
}

/// Whether `relative` (a key relative to the run prefix) is an output of the cross-seed matching.
pub fn is_match_key(relative: &str) -> bool {
    let Some(rest) = relative
        .strip_prefix(MATCH_DIR)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    if rest == "summary.json" {
        return true;
    }
    rest.strip_prefix("layers/")
        .and_then(|f| f.strip_suffix(".json").or_else(|| f.strip_suffix(".csv")))
        .is_some_and(|layer| LayerName::new(layer).is_ok())
}

/// Folder of the prepared probe images inside [`PROBE_DIR`]; a model cannot be named this (it
/// would share the folder), which planning a probe pass refuses.
pub const PROBE_IMAGES_DIR: &str = "images";

/// Folder of a model's shard results inside its probe folder.
const SHARDS_DIR: &str = "shards";

/// Which object of a probe shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShardPart {
    /// The sidecar, `{shard:05}.json`, stored last.
    Sidecar,
    /// The lists and means, `{shard:05}.safetensors`.
    Data,
}

/// Which object of a model's merged probe pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutput<'a> {
    /// `probe.json`.
    Report,
    /// `{layer}.examples.json`.
    Examples(&'a LayerName),
    /// `{layer}.means.safetensors`.
    Means(&'a LayerName),
}

impl ProbeOutput<'_> {
    /// The file name inside the model's probe folder.
    pub fn file_name(self) -> String {
        match self {
            ProbeOutput::Report => "probe.json".into(),
            ProbeOutput::Examples(layer) => format!("{layer}.examples.json"),
            ProbeOutput::Means(layer) => format!("{layer}.means.safetensors"),
        }
    }
}

/// A probe object of a run's listing, as [`parse_probe_key`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKey {
    /// `probe/images.json`.
    Index,
    /// `probe/images/{file:06}.jpg`: file `file` of the index, prepared.
    Image {
        /// Its position in the index's file list.
        file: u32,
    },
    /// A shard's object.
    Shard {
        /// The model.
        model: ModelId,
        /// The shard.
        shard: u32,
        /// Which object.
        part: ShardPart,
    },
    /// A merged output of `model` (the report, examples or means).
    Output {
        /// The model.
        model: ModelId,
    },
}

/// Reads a key relative to the run prefix (`probe/…`); `None` for anything outside the probe
/// folder's layout.
pub fn parse_probe_key(relative: &str) -> Option<ProbeKey> {
    let rest = relative.strip_prefix(PROBE_DIR)?.strip_prefix('/')?;
    if rest == PROBE_INDEX_NAME {
        return Some(ProbeKey::Index);
    }
    let (model, rest) = rest.split_once('/')?;
    if model == PROBE_IMAGES_DIR {
        let file = canonical_number(rest.strip_suffix(".jpg")?, 6)?;
        return Some(ProbeKey::Image { file });
    }
    let model = ModelId::new(model).ok()?;
    if let Some(file) = rest
        .strip_prefix(SHARDS_DIR)
        .and_then(|r| r.strip_prefix('/'))
    {
        let (stem, ext) = file.rsplit_once('.')?;
        let part = match ext {
            "json" => ShardPart::Sidecar,
            "safetensors" => ShardPart::Data,
            _ => return None,
        };
        let shard = canonical_number(stem, 5)?;
        return Some(ProbeKey::Shard { model, shard, part });
    }
    let output = !rest.contains('/')
        && (rest == "probe.json"
            || rest.ends_with(".examples.json")
            || rest.ends_with(".means.safetensors"));
    output.then_some(ProbeKey::Output { model })
}

/// A validated key prefix: zero or more identifier segments joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Parses a prefix; leading and trailing `/` are ignored, every segment between must be a valid
    /// identifier (so `a//b` and `a/../b` are rejected).
    pub fn parse(prefix: &str) -> Result<Self, IdError> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Self(String::new()));
        }
        for segment in trimmed.split('/') {
            validate_identifier("key prefix segment", segment)?;
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The prefix without leading or trailing `/`; empty for no prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `{prefix}/{run}/`: the listing prefix of every object of a run.
    pub fn run_prefix(&self, run: &RunId) -> String {
        format!("{}/", self.join(run.as_str()))
    }

    /// `{prefix}/{run}/run.json`.
    pub fn manifest_key(&self, run: &RunId) -> String {
        format!("{}/{MANIFEST_NAME}", self.join(run.as_str()))
    }

    /// `{prefix}/{run}/dead-letters.json`.
    pub fn dead_letters_key(&self, run: &RunId) -> String {
        format!("{}/{DEAD_LETTERS_NAME}", self.join(run.as_str()))
    }

    /// The sidecar key of `task`'s result.
    pub fn sidecar_key_of(&self, task: &crate::TaskMessage) -> String {
        self.sidecar_key(&task.run_id, &task.result_id())
    }

    /// The key of image `copy` of `task`'s result (0 for a view without copies).
    pub fn png_key_of(&self, task: &crate::TaskMessage, copy: u32) -> String {
        self.png_key(&task.run_id, &task.result_id(), copy)
    }

    /// The key of result `id`'s sidecar.
    pub fn sidecar_key(&self, run: &RunId, id: &ResultId) -> String {
        self.result_key(run, id, Kind::Sidecar, 0)
    }

    /// The key of image `copy` of result `id` (`copy` is ignored for a view without copies).
    pub fn png_key(&self, run: &RunId, id: &ResultId, copy: u32) -> String {
        self.result_key(run, id, Kind::Png, copy)
    }

    /// `{prefix}/{run}/probe/images.json`.
    pub fn probe_index_key(&self, run: &RunId) -> String {
        format!("{}/{PROBE_DIR}/{PROBE_INDEX_NAME}", self.join(run.as_str()))
    }

    /// The key of an output of the cross-seed matching.
    pub fn match_key(&self, run: &RunId, output: MatchOutput<'_>) -> String {
        format!(
            "{}/{MATCH_DIR}/{}",
            self.join(run.as_str()),
            output.relative()
        )
    }

    /// `{prefix}/{run}/probe/images/{file:06}.jpg`.
    pub fn probe_image_key(&self, run: &RunId, file: u32) -> String {
        format!(
            "{}/{PROBE_DIR}/{PROBE_IMAGES_DIR}/{file:06}.jpg",
            self.join(run.as_str())
        )
    }

    /// The key of `part` of shard `shard` of `model`'s probe pass.
    pub fn probe_shard_key(
        &self,
        run: &RunId,
        model: &ModelId,
        shard: u32,
        part: ShardPart,
    ) -> String {
        let ext = match part {
            ShardPart::Sidecar => "json",
            ShardPart::Data => "safetensors",
        };
        format!(
            "{}/{PROBE_DIR}/{model}/{SHARDS_DIR}/{shard:05}.{ext}",
            self.join(run.as_str())
        )
    }

    /// The key of a merged output of `model`'s probe pass.
    pub fn probe_output_key(
        &self,
        run: &RunId,
        model: &ModelId,
        output: ProbeOutput<'_>,
    ) -> String {
        format!(
            "{}/{PROBE_DIR}/{model}/{}",
            self.join(run.as_str()),
            output.file_name()
        )
    }

    fn result_key(&self, run: &RunId, id: &ResultId, kind: Kind, copy: u32) -> String {
        format!(
            "{}/{}/{}/{}",
            self.join(run.as_str()),
            id.model,
            id.layer,
            result_file(id.channel, id.view, kind, copy)
        )
    }

    fn join(&self, segment: &str) -> String {
        if self.0.is_empty() {
            segment.to_owned()
        } else {
            format!("{}/{segment}", self.0)
        }
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which result of a run: one view of one channel of one layer of one model, which one task makes.
/// Ordered by model, layer, channel, then view.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultId {
    /// The model.
    pub model: ModelId,
    /// The layer.
    pub layer: LayerName,
    /// The channel.
    pub channel: u32,
    /// The view.
    pub view: View,
}

impl ResultId {
    /// Result `view` of `channel`, the identifiers copied.
    pub fn of(model: &ModelId, layer: &LayerName, channel: u32, view: View) -> Self {
        Self {
            model: model.clone(),
            layer: layer.clone(),
            channel,
            view,
        }
    }

    /// The result of the channel view of `channel`.
    pub fn channel(model: ModelId, layer: LayerName, channel: u32) -> Self {
        Self {
            model,
            layer,
            channel,
            view: View::Channel,
        }
    }
}

/// What a stored key names: one object of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The result.
    pub id: ResultId,
    /// Image or sidecar.
    pub kind: Kind,
    /// Which image of a view with copies; 0 otherwise and for a sidecar.
    pub copy: u32,
}

/// Which object of a result a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The rendered image, `.png`.
    Png,
    /// The result sidecar, `.json`.
    Sidecar,
}

impl Kind {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Png => "png",
            Kind::Sidecar => "json",
        }
    }
}

/// The file name of an object of a result, its key's last segment: `0007.png`,
/// `0007.neuron.json`, `0007.diversity-4.2.png` (`copy` is ignored for a view without copies).
pub fn result_file(channel: u32, view: View, kind: Kind, copy: u32) -> String {
    let mut file = format!("{channel:04}");
    if let Some(slug) = view.slug() {
        file = format!("{file}.{slug}");
    }
    if kind == Kind::Png && view.has_copies() {
        file = format!("{file}.{copy}");
    }
    format!("{file}.{}", kind.extension())
}

/// Parses the last three segments of a result's object key (`…/{model}/{layer}/{file}`, see the
/// module docs), as returned by a listing. `None` for anything else: the manifest, foreign objects, a
/// channel number not written as the layout writes it (`7.png` instead of `0007.png`), an unknown
/// view, a copy a view does not have, invalid identifiers.
pub fn parse_key(key: &str) -> Option<StoredKey> {
    let mut segments = key.rsplit('/');
    let file = segments.next()?;
    let layer = segments.next()?;
    let model = segments.next()?;
    let (stem, ext) = file.rsplit_once('.')?;
    let kind = match ext {
        "png" => Kind::Png,
        "json" => Kind::Sidecar,
        _ => return None,
    };
    let mut parts = stem.split('.');
    let channel = canonical_number(parts.next()?, 4)?;
    let view = match parts.next() {
        None => View::Channel,
        Some(slug) => View::from_slug(slug)?,
    };
    let copy = match (parts.next(), kind == Kind::Png && view.has_copies()) {
        (None, false) => 0,
        (Some(copy), true) => canonical_number(copy, 1).filter(|c| *c < view.images())?,
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    let id = ResultId {
        model: ModelId::new(model).ok()?,
        layer: LayerName::new(layer).ok()?,
        channel,
        view,
    };
    Some(StoredKey { id, kind, copy })
}

/// `digits` as a number, only when written as the layout writes it: ASCII digits, zero-padded to
/// `width` and no further.
fn canonical_number(digits: &str, width: usize) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (format!("{n:0width$}") == digits).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (RunId, ModelId, LayerName) {
        (
            "run1".parse().unwrap(),
            "training_seed_01".parse().unwrap(),
            "conv1".parse().unwrap(),
        )
    }

    fn result(view: View, channel: u32) -> ResultId {
        let (_, model, layer) = ids();
        ResultId {
            model,
            layer,
            channel,
            view,
        }
    }

    #[test]
    fn keys_with_and_without_prefix() {
        let (run, _, _) = ids();
        let none = KeyPrefix::parse("").unwrap();
        assert_eq!(
            none.png_key(&run, &result(View::Channel, 7), 0),
            "run1/training_seed_01/conv1/0007.png"
        );
        assert_eq!(none.manifest_key(&run), "run1/run.json");
        assert_eq!(none.dead_letters_key(&run), "run1/dead-letters.json");
        assert_eq!(none.run_prefix(&run), "run1/");
        let p = KeyPrefix::parse("/lucid/renders/").unwrap();
        assert_eq!(p.as_str(), "lucid/renders");
        assert_eq!(
            p.sidecar_key(&run, &result(View::Channel, 12345)),
            "lucid/renders/run1/training_seed_01/conv1/12345.json"
        );
        assert_eq!(p.manifest_key(&run), "lucid/renders/run1/run.json");
        assert_eq!(
            p.dead_letters_key(&run),
            "lucid/renders/run1/dead-letters.json"
        );
        assert_eq!(KeyPrefix::parse("/").unwrap(), KeyPrefix::default());
    }

    #[test]
    fn each_view_has_its_own_keys() {
        let (run, _, _) = ids();
        let p = KeyPrefix::default();
        let diversity = result(View::Diversity { copies: 4 }, 7);
        assert_eq!(
            p.png_key(&run, &diversity, 2),
            "run1/training_seed_01/conv1/0007.diversity-4.2.png"
        );
        assert_eq!(
            p.sidecar_key(&run, &diversity),
            "run1/training_seed_01/conv1/0007.diversity-4.json"
        );
        assert_eq!(
            p.png_key(&run, &result(View::NegativeChannel, 7), 0),
            "run1/training_seed_01/conv1/0007.negative_channel.png"
        );
        assert_eq!(
            p.sidecar_key(&run, &result(View::Neuron, 7)),
            "run1/training_seed_01/conv1/0007.neuron.json"
        );
    }

    #[test]
    fn prefix_segments_are_validated() {
        for bad in ["a//b", "a/../b", "a/./b", "a b", "x/.git"] {
            let err = KeyPrefix::parse(bad).unwrap_err();
            assert_eq!(err.kind, "key prefix segment", "{bad}");
        }
    }

    #[test]
    fn keys_round_trip() {
        let (run, _, _) = ids();
        let views = [
            View::Channel,
            View::NegativeChannel,
            View::Neuron,
            View::Diversity { copies: 3 },
            View::Diversity { copies: 16 },
        ];
        for prefix in ["", "renders", "a/b/c"] {
            let p = KeyPrefix::parse(prefix).unwrap();
            for channel in [0, 7, 4095, 12345] {
                for view in views {
                    let id = result(view, channel);
                    let key = p.sidecar_key(&run, &id);
                    let want = StoredKey {
                        id: id.clone(),
                        kind: Kind::Sidecar,
                        copy: 0,
                    };
                    assert_eq!(parse_key(&key), Some(want), "{key}");
                    for copy in 0..view.images() {
                        let key = p.png_key(&run, &id, copy);
                        let want = StoredKey {
                            id: id.clone(),
                            kind: Kind::Png,
                            copy,
                        };
                        assert_eq!(parse_key(&key), Some(want), "{key}");
                    }
                }
            }
        }
    }

    #[test]
    fn foreign_keys_do_not_parse() {
        for key in [
            "run1/run.json",
            "run1/s/l/7.png",
            "run1/s/l/00007.png",
            "run1/s/l/0007.jpg",
            "run1/s/l/-001.png",
            "run1/s/l/+007.png",
            "run1/s/..//0007.png",
            "run1/s/l/0007.neuron.0.png",
            "run1/s/l/0007.diversity-4.png",
            "run1/s/l/0007.diversity-4.4.png",
            "run1/s/l/0007.diversity-4.01.png",
            "run1/s/l/0007.diversity-4.0.json",
            "run1/s/l/0007.negative.png",
            "run1/s/l/0007.channel.png",
            "run1/s/l/0007..png",
            "run1/s/l/0007.neuron.json.json",
            "l/0007.png",
            "0007.png",
            "",
        ] {
            assert_eq!(parse_key(key), None, "{key}");
        }
    }

    #[test]
    fn probe_keys_parse_back_and_nothing_else_does() {
        let (run, model, layer) = ids();
        let prefix = KeyPrefix::parse("sweeps").unwrap();
        let run_prefix = prefix.run_prefix(&run);
        let relative = |key: String| key.strip_prefix(&run_prefix).unwrap().to_owned();
        assert_eq!(
            parse_probe_key(&relative(prefix.probe_index_key(&run))),
            Some(ProbeKey::Index)
        );
        let image = prefix.probe_image_key(&run, 1234);
        assert!(image.ends_with("/probe/images/001234.jpg"), "{image}");
        assert_eq!(
            parse_probe_key(&relative(image)),
            Some(ProbeKey::Image { file: 1234 })
        );
        for part in [ShardPart::Sidecar, ShardPart::Data] {
            let key = prefix.probe_shard_key(&run, &model, 12, part);
            assert!(
                key.ends_with("/probe/training_seed_01/shards/00012.json")
                    || key.ends_with("00012.safetensors")
            );
            assert_eq!(
                parse_probe_key(&relative(key)),
                Some(ProbeKey::Shard {
                    model: model.clone(),
                    shard: 12,
                    part
                })
            );
        }
        for output in [
            ProbeOutput::Report,
            ProbeOutput::Examples(&layer),
            ProbeOutput::Means(&layer),
        ] {
            let key = prefix.probe_output_key(&run, &model, output);
            assert_eq!(
                parse_probe_key(&relative(key)),
                Some(ProbeKey::Output {
                    model: model.clone()
                })
            );
        }
        for other in [
            "probe/training_seed_01/shards/12.json",
            "probe/training_seed_01/shards/00012.png",
            "probe/training_seed_01/notes.txt",
            "probe/images.json.bak",
            "probe/images/1234.jpg",
            "probe/images/001234.png",
            "probe/images/probe.json",
            "training_seed_01/conv1/0000.json",
        ] {
            assert_eq!(parse_probe_key(other), None, "{other}");
        }
        // the matching's outputs are recognised, and never read as results
        for output in [
            MatchOutput::Summary,
            MatchOutput::Layer(&layer),
            MatchOutput::LayerCsv(&layer),
        ] {
            let key = relative(prefix.match_key(&run, output));
            assert!(is_match_key(&key), "{key}");
            assert_eq!(parse_key(&key), None, "{key}");
        }
        assert!(!is_match_key("match/layers/x/y.json") && !is_match_key("match/other.json"));
        // a probe output never reads as a result of a model called `probe`
        let examples =
            relative(prefix.probe_output_key(&run, &model, ProbeOutput::Examples(&layer)));
        assert_eq!(parse_key(&examples), None);
    }
}
