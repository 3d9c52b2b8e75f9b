//! Object key layout: part of the wire contract, since a rerun skips channels whose keys already exist.
//!
//! ```text
//! {prefix}/{run}/run.json                         run manifest
//! {prefix}/{run}/dead-letters.json                 tasks `local` gave up, with their reasons
//! {prefix}/{run}/{model}/{layer}/{channel:04}.png  image
//! {prefix}/{run}/{model}/{layer}/{channel:04}.json result sidecar
//! ```
//!
//! An empty prefix drops its segment (no leading `/`). Every segment is a validated identifier, so keys
//! never contain `..`, empty segments or control characters.

use std::fmt;

use crate::ids::{IdError, LayerName, ModelId, RunId, validate_identifier};

/// File name of the run manifest inside a run's key space.
pub const MANIFEST_NAME: &str = "run.json";

/// File name of the dead-letter report of a `local` run inside a run's key space.
pub const DEAD_LETTERS_NAME: &str = "dead-letters.json";

/// Folder of a run's static gallery inside a run's key space (written by the gallery builder, read
/// by browsers; never a result).
pub const GALLERY_DIR: &str = "gallery";

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
        self.sidecar_key(&task.run_id, &task.model_id, &task.layer, task.channel)
    }

    /// `{prefix}/{run}/{model}/{layer}/{channel:04}.{ext}` for `kind`.
    pub fn object_key(
        &self,
        run: &RunId,
        model: &ModelId,
        layer: &LayerName,
        channel: u32,
        kind: Kind,
    ) -> String {
        format!(
            "{}/{model}/{layer}/{channel:04}.{}",
            self.join(run.as_str()),
            kind.extension()
        )
    }

    /// The image key of a channel.
    pub fn png_key(&self, run: &RunId, model: &ModelId, layer: &LayerName, channel: u32) -> String {
        self.object_key(run, model, layer, channel, Kind::Png)
    }

    /// The sidecar key of a channel.
    pub fn sidecar_key(
        &self,
        run: &RunId,
        model: &ModelId,
        layer: &LayerName,
        channel: u32,
    ) -> String {
        self.object_key(run, model, layer, channel, Kind::Sidecar)
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

/// Which object of a channel a key names.
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

/// Parses the last three segments of a channel object key (`…/{model}/{layer}/{channel:04}.{png|json}`),
/// as returned by a listing. `None` for anything else: the manifest, foreign objects, a channel number not
/// written as the layout writes it (`7.png` instead of `0007.png`), invalid identifiers.
pub fn parse_key(key: &str) -> Option<(ModelId, LayerName, u32, Kind)> {
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
    if !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let channel: u32 = stem.parse().ok()?;
    if format!("{channel:04}") != stem {
        return None;
    }
    Some((
        ModelId::new(model).ok()?,
        LayerName::new(layer).ok()?,
        channel,
        kind,
    ))
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

    #[test]
    fn keys_with_and_without_prefix() {
        let (run, seed, layer) = ids();
        let none = KeyPrefix::parse("").unwrap();
        assert_eq!(
            none.png_key(&run, &seed, &layer, 7),
            "run1/training_seed_01/conv1/0007.png"
        );
        assert_eq!(none.manifest_key(&run), "run1/run.json");
        assert_eq!(none.dead_letters_key(&run), "run1/dead-letters.json");
        assert_eq!(none.run_prefix(&run), "run1/");
        let p = KeyPrefix::parse("/lucid/renders/").unwrap();
        assert_eq!(p.as_str(), "lucid/renders");
        assert_eq!(
            p.sidecar_key(&run, &seed, &layer, 12345),
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
    fn prefix_segments_are_validated() {
        for bad in ["a//b", "a/../b", "a/./b", "a b", "x/.git"] {
            let err = KeyPrefix::parse(bad).unwrap_err();
            assert_eq!(err.kind, "key prefix segment", "{bad}");
        }
    }

    #[test]
    fn keys_round_trip() {
        let (run, seed, layer) = ids();
        for prefix in ["", "renders", "a/b/c"] {
            let p = KeyPrefix::parse(prefix).unwrap();
            for channel in [0, 7, 4095, 12345] {
                for kind in [Kind::Png, Kind::Sidecar] {
                    let key = p.object_key(&run, &seed, &layer, channel, kind);
                    assert_eq!(
                        parse_key(&key),
                        Some((seed.clone(), layer.clone(), channel, kind)),
                        "{key}"
                    );
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
            "l/0007.png",
            "0007.png",
            "",
        ] {
            assert_eq!(parse_key(key), None, "{key}");
        }
    }
}
