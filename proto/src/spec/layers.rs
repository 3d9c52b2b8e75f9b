//! Which layers of each network a sweep renders ([`LayerSelection`]): `"all"`, a list, or a
//! comma-separated string.

use std::collections::BTreeSet;

use serde::de::{self, Deserializer, SeqAccess};
use serde::{Deserialize, Serialize, Serializer};

use super::error::InvalidField;
use crate::ids::LayerName;
use crate::text_forms::{Forms, deserialize_forms, list_items};

/// Which layers of each network to render.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LayerSelection {
    /// Every layer the checkpoint has, in network order.
    #[default]
    All,
    /// Only these layers (rendered in network order, not list order).
    Only(Vec<LayerName>),
}

impl LayerSelection {
    /// Whether `layer` is selected.
    pub fn contains(&self, layer: &LayerName) -> bool {
        match self {
            LayerSelection::All => true,
            LayerSelection::Only(layers) => layers.contains(layer),
        }
    }

    /// Checks a list (non-empty, no layer twice) and that every layer with its own channel
    /// selection (`per_layer`, the keys of `channels_per_layer`) is one of the selected layers.
    pub(super) fn validate<'a>(
        &self,
        per_layer: impl IntoIterator<Item = &'a LayerName>,
    ) -> Result<(), InvalidField> {
        let LayerSelection::Only(layers) = self else {
            return Ok(());
        };
        if layers.is_empty() {
            return Err(InvalidField::new(
                "layers",
                "must be \"all\" or name at least one layer",
            ));
        }
        let mut seen = BTreeSet::new();
        for layer in layers {
            if !seen.insert(layer) {
                return Err(InvalidField::new(
                    "layers",
                    format!("layer {layer} is listed twice"),
                ));
            }
        }
        for layer in per_layer {
            if !seen.contains(layer) {
                return Err(InvalidField::new(
                    format!("channels_per_layer.{layer}"),
                    "layer is not selected in layers",
                ));
            }
        }
        Ok(())
    }

    fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let layers = items
            .into_iter()
            .map(|s| LayerName::new(s.trim()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LayerSelection::Only(layers))
    }
}

/// Serialises as `"all"` or a list of names.
impl Serialize for LayerSelection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LayerSelection::All => s.serialize_str("all"),
            LayerSelection::Only(layers) => layers.serialize(s),
        }
    }
}

/// Accepts `"all"`, a comma-separated string (`"conv1,fc8"`, handy in env vars and flags) or a list.
impl Forms for LayerSelection {
    const EXPECTING: &'static str = "\"all\" or a list of layer names";

    fn from_text<E: de::Error>(text: &str) -> Result<Self, E> {
        if text.trim().eq_ignore_ascii_case("all") {
            Ok(LayerSelection::All)
        } else {
            LayerSelection::from_items(text.split(',')).map_err(E::custom)
        }
    }

    fn from_list<'de, A: SeqAccess<'de>>(list: A) -> Result<Self, A::Error> {
        let items: Vec<String> = list_items(list)?;
        LayerSelection::from_items(items.iter().map(String::as_str)).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for LayerSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_forms(d)
    }
}
