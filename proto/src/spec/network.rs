//! Which network a model is (issue 14): a description shipped with lucid-sweep, named, or a
//! description file (`.toml`, local or on S3) that `docs/networks.md` explains.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::ModelLocation;
use crate::text_forms::{Forms, deserialize_forms, serde_as_text};

/// The network a model is when the spec does not say: tf-slim `alexnet_v2`, as every ecoset run.
pub const DEFAULT_NETWORK: &str = "alexnet_v2";

/// A network, as a spec, a task and a manifest name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetworkRef {
    /// A built-in description, by name (`alexnet_v2`).
    Builtin(String),
    /// A description file: a path or `s3://bucket/key` ending in `.toml`.
    Description(ModelLocation),
    /// A PyTorch model exported by `lucid-export`: the model's path is the export folder, holding
    /// `descriptor.json` and one TorchScript module per layer.
    TorchScript,
}

/// How a spec names [`NetworkRef::TorchScript`].
pub const TORCHSCRIPT: &str = "torchscript";

impl Default for NetworkRef {
    fn default() -> Self {
        NetworkRef::Builtin(DEFAULT_NETWORK.into())
    }
}

impl NetworkRef {
    /// A name ending in `.toml` is a description file, `torchscript` an export folder; anything else
    /// names a built-in network.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == TORCHSCRIPT {
            return Ok(NetworkRef::TorchScript);
        }
        if s.ends_with(".toml") {
            return ModelLocation::parse(s).map(NetworkRef::Description);
        }
        let valid = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if valid {
            Ok(NetworkRef::Builtin(s.to_owned()))
        } else {
            Err(format!(
                "network {s:?} must be a built-in name (e.g. {DEFAULT_NETWORK}) or a .toml description file"
            ))
        }
    }

    /// Whether this is [`DEFAULT_NETWORK`], which documents leave out (so that every stored task and
    /// manifest of an `alexnet_v2` run keeps its bytes).
    pub fn is_default(&self) -> bool {
        matches!(self, NetworkRef::Builtin(name) if name == DEFAULT_NETWORK)
    }
}

impl fmt::Display for NetworkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkRef::Builtin(name) => f.write_str(name),
            NetworkRef::Description(location) => write!(f, "{location}"),
            NetworkRef::TorchScript => f.write_str(TORCHSCRIPT),
        }
    }
}

impl std::str::FromStr for NetworkRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

serde_as_text!(NetworkRef);

/// One model of a sweep: where its weights are and which network they are. In a spec either
/// `id = "location"` (an `alexnet_v2`) or `id = { path = "location", network = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Where the weights live.
    pub location: ModelLocation,
    /// Which network they are.
    pub network: NetworkRef,
}

impl ModelEntry {
    /// The rules of [`ModelLocation`], for the weights and for a description file.
    pub(super) fn validate(&self) -> Result<(), String> {
        self.location.validate()?;
        if let NetworkRef::Description(location) = &self.network {
            location
                .validate()
                .map_err(|reason| format!("network: {reason}"))?;
        }
        Ok(())
    }
}

impl From<ModelLocation> for ModelEntry {
    fn from(location: ModelLocation) -> Self {
        Self {
            location,
            network: NetworkRef::default(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryTable {
    path: ModelLocation,
    #[serde(default)]
    network: NetworkRef,
}

impl Serialize for ModelEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.network.is_default() {
            return self.location.serialize(s);
        }
        EntryTable {
            path: self.location.clone(),
            network: self.network.clone(),
        }
        .serialize(s)
    }
}

/// Either form, read by what the value is, so that a bad field gets its own message.
impl Forms for ModelEntry {
    const EXPECTING: &'static str = "a model location, or a table { path, network }";

    fn from_text<E: de::Error>(text: &str) -> Result<Self, E> {
        ModelLocation::parse(text)
            .map(ModelEntry::from)
            .map_err(E::custom)
    }

    fn from_table<'de, A: de::MapAccess<'de>>(table: A) -> Result<Self, A::Error> {
        let t = EntryTable::deserialize(de::value::MapAccessDeserializer::new(table))?;
        Ok(ModelEntry {
            location: t.path,
            network: t.network,
        })
    }
}

impl<'de> Deserialize<'de> for ModelEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_forms(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SweepSpec;

    const SPEC: &str = r#"
run_id = "nets"
[storage]
bucket = "lucid-test"
[models]
plain = "/data/alexnet"
resnet = { path = "s3://models/resnet18", network = "s3://models/resnet18.toml" }
local_desc = { path = "/data/vgg", network = "nets/vgg11_bn.toml" }
exported = { path = "/data/exports/resnet18", network = "torchscript" }
named = { path = "/data/alex2", network = "alexnet_v2" }
"#;

    #[test]
    fn a_model_is_a_path_or_a_table_naming_its_network() {
        let spec = SweepSpec::parse_toml(SPEC).expect("spec");
        let entry = |id: &str| spec.models[&id.parse::<crate::ModelId>().expect("id")].clone();
        assert_eq!(entry("plain").network, NetworkRef::default());
        assert_eq!(entry("exported").network, NetworkRef::TorchScript);
        assert_eq!(entry("named").network, NetworkRef::default());
        assert_eq!(
            entry("resnet").network,
            NetworkRef::Description(ModelLocation::parse("s3://models/resnet18.toml").expect("s3"))
        );
        assert_eq!(
            entry("local_desc").network,
            NetworkRef::Description(ModelLocation::Local("nets/vgg11_bn.toml".into()))
        );
        assert_eq!(
            entry("resnet").location,
            ModelLocation::parse("s3://models/resnet18").expect("s3")
        );
        // stored specs keep the short form for alexnet_v2, so older manifests compare equal
        let json = serde_json::to_value(&spec.models).expect("json");
        assert_eq!(json["plain"], "/data/alexnet");
        assert_eq!(json["named"], "/data/alex2");
        assert_eq!(json["resnet"]["network"], "s3://models/resnet18.toml");
        let back: std::collections::BTreeMap<crate::ModelId, ModelEntry> =
            serde_json::from_value(json).expect("round trip");
        assert_eq!(back, spec.models);
    }

    #[test]
    fn bad_network_names_are_refused_naming_the_model() {
        let bad = SPEC.replace("network = \"alexnet_v2\"", "network = \"my net\"");
        let err = SweepSpec::parse_toml(&bad).expect_err("space in a name");
        assert!(err.to_string().contains("must be a built-in name"), "{err}");
        let bad = SPEC.replace("network = \"alexnet_v2\"", "network = \"s3://../x.toml\"");
        let err = SweepSpec::parse_toml(&bad).expect_err("bad bucket");
        assert!(err.to_string().contains("bucket"), "{err}");
        let bad = SPEC.replace("network = \"alexnet_v2\"", "net = \"alexnet_v2\"");
        assert!(
            SweepSpec::parse_toml(&bad).is_err(),
            "unknown key in a model table"
        );
    }
}
