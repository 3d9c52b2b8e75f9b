//! The rates file: the render engine's images per second per layer on one device, as
//! `lucid-worker bench --all-layers --rates-out FILE` measures it and `lucid-coordinator plan --rates
//! FILE` reads it to estimate a run's GPU time.
//!
//! # Format (schema version 1)
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "device": "NVIDIA H200",
//!   "precision": "bf16",
//!   "steps": 512,
//!   "size": 224,
//!   "date": "2026-11-26",
//!   "code_version": "lucid-worker 0.1.0",
//!   "note": "optional free text: how the file was made",
//!   "layers": [
//!     { "layer": "conv1", "batch": 512, "images_per_second": 58.98 }
//!   ]
//! }
//! ```
//!
//! Every field but `note` is required and no other field is allowed; `steps` and `size` are the render
//! settings the rates were measured at (the coordinator scales them to a run's settings), `batch` the
//! images per optimisation, `date` the UTC day of the measurement (`YYYY-MM-DD`). Rates are positive
//! and finite, and a layer appears once.
//!
//! [`RatesFile::decode`] reads one field at a time so that every refusal names the field
//! (`layers[2].images_per_second`), which a whole-document serde error does not do for a wrong type.

use std::collections::BTreeSet;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ids::LayerName;
use crate::spec::Precision;

/// The rates-file schema this crate writes and reads.
pub const RATES_SCHEMA_VERSION: u32 = 1;

/// A whole rates file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatesFile {
    /// Always [`RATES_SCHEMA_VERSION`] for files written by this crate.
    pub schema_version: u32,
    /// The device the rates were measured on (`NVIDIA H200`, `cpu: AMD EPYC 7B13`).
    pub device: String,
    /// The network's arithmetic precision during the measurement.
    pub precision: Precision,
    /// Lucid threshold of the measurement (`steps + 1` updates per image).
    pub steps: u32,
    /// Image side in pixels of the measurement.
    pub size: u32,
    /// UTC day of the measurement, `YYYY-MM-DD`.
    pub date: String,
    /// The worker build that measured (`lucid-worker 0.1.0`).
    pub code_version: String,
    /// How the file was made, when it was not written by `bench` as it stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// One entry per measured layer, in network order.
    pub layers: Vec<LayerRate>,
}

/// One layer's measured rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRate {
    /// The layer.
    pub layer: LayerName,
    /// Images per optimisation in the measurement.
    pub batch: u32,
    /// Images per second at the file's steps and size, per-batch set-up and read-back included.
    pub images_per_second: f64,
}

/// Why a rates file was refused: the field (a JSON path such as `layers[2].batch`, or `(document)`)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct RatesError {
    /// The offending field's path.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RatesError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The fields of one JSON object, taken one at a time; whatever is left at the end is unknown.
struct Fields {
    path: String,
    map: Map<String, Value>,
}

impl Fields {
    fn of(path: &str, value: Value) -> Result<Self, RatesError> {
        match value {
            Value::Object(map) => Ok(Self {
                path: path.to_owned(),
                map,
            }),
            other => Err(RatesError::new(
                if path.is_empty() { "(document)" } else { path },
                format!("expected a JSON object, found {}", kind_of(&other)),
            )),
        }
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    fn take_value(&mut self, field: &str) -> Result<Value, RatesError> {
        self.map
            .remove(field)
            .ok_or_else(|| RatesError::new(self.name(field), "missing"))
    }

    fn take<T: DeserializeOwned>(&mut self, field: &str) -> Result<T, RatesError> {
        let value = self.take_value(field)?;
        serde_json::from_value(value).map_err(|e| RatesError::new(self.name(field), e.to_string()))
    }

    fn take_optional<T: DeserializeOwned>(&mut self, field: &str) -> Result<Option<T>, RatesError> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                self.map.remove(field);
                Ok(None)
            }
            Some(_) => self.take(field).map(Some),
        }
    }

    fn finish(self) -> Result<(), RatesError> {
        match self.map.keys().next() {
            Some(unknown) => Err(RatesError::new(self.name(unknown), "unknown field")),
            None => Ok(()),
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl RatesFile {
    /// Reads a rates file, refusing anything the format does not allow and naming the field.
    pub fn decode(text: &str) -> Result<Self, RatesError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| RatesError::new("(document)", format!("not JSON: {e}")))?;
        let mut fields = Fields::of("", value)?;
        let schema_version: u32 = fields.take("schema_version")?;
        if schema_version != RATES_SCHEMA_VERSION {
            return Err(RatesError::new(
                "schema_version",
                format!(
                    "unsupported version {schema_version}, this build reads {RATES_SCHEMA_VERSION}"
                ),
            ));
        }
        let file = Self {
            schema_version,
            device: fields.take("device")?,
            precision: fields.take("precision")?,
            steps: fields.take("steps")?,
            size: fields.take("size")?,
            date: fields.take("date")?,
            code_version: fields.take("code_version")?,
            note: fields.take_optional("note")?,
            layers: decode_layers(fields.take_value("layers")?)?,
        };
        fields.finish()?;
        file.validate()?;
        Ok(file)
    }

    /// The file as pretty JSON with a final newline.
    pub fn encode(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Checks what the types alone do not: positive settings and rates, a `YYYY-MM-DD` date, a
    /// non-empty device, at least one layer and each layer once.
    pub fn validate(&self) -> Result<(), RatesError> {
        for (field, value) in [("steps", self.steps), ("size", self.size)] {
            if value == 0 {
                return Err(RatesError::new(field, "must be at least 1"));
            }
        }
        if self.device.trim().is_empty() {
            return Err(RatesError::new("device", "must not be empty"));
        }
        if !is_date(&self.date) {
            return Err(RatesError::new(
                "date",
                format!("{:?} is not a YYYY-MM-DD date", self.date),
            ));
        }
        if self.layers.is_empty() {
            return Err(RatesError::new("layers", "must list at least one layer"));
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in self.layers.iter().enumerate() {
            if !seen.insert(entry.layer.as_str()) {
                return Err(RatesError::new(
                    format!("layers[{i}].layer"),
                    format!("{} is listed twice", entry.layer),
                ));
            }
            if entry.batch == 0 {
                return Err(RatesError::new(
                    format!("layers[{i}].batch"),
                    "must be at least 1",
                ));
            }
            let rate = entry.images_per_second;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(RatesError::new(
                    format!("layers[{i}].images_per_second"),
                    format!("must be a positive number, found {rate}"),
                ));
            }
        }
        Ok(())
    }

    /// The measured images per second of `layer`, if the file has it.
    pub fn rate(&self, layer: &str) -> Option<f64> {
        self.layers
            .iter()
            .find(|l| l.layer.as_str() == layer)
            .map(|l| l.images_per_second)
    }

    /// `B=512`, or `B=16-512` when the layers were measured at different batch sizes.
    pub fn batch_label(&self) -> String {
        let batches = self.layers.iter().map(|l| l.batch);
        match (batches.clone().min(), batches.max()) {
            (Some(lo), Some(hi)) if lo != hi => format!("B={lo}-{hi}"),
            (Some(b), _) => format!("B={b}"),
            _ => "B=?".to_owned(),
        }
    }

    /// What the rates are, for a report: `NVIDIA H200, bf16, B=512, 512 steps, 224 px, measured
    /// 2026-11-26`.
    pub fn label(&self) -> String {
        let precision = serde_json::to_value(self.precision)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!(
            "{}, {precision}, {}, {} steps, {} px, measured {}",
            self.device,
            self.batch_label(),
            self.steps,
            self.size,
            self.date
        )
    }
}

fn decode_layers(value: Value) -> Result<Vec<LayerRate>, RatesError> {
    let Value::Array(items) = value else {
        return Err(RatesError::new(
            "layers",
            format!("expected a list, found {}", kind_of(&value)),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let mut fields = Fields::of(&format!("layers[{i}]"), item)?;
            let entry = LayerRate {
                layer: fields.take("layer")?,
                batch: fields.take("batch")?,
                images_per_second: fields.take("images_per_second")?,
            };
            fields.finish()?;
            Ok(entry)
        })
        .collect()
}

/// Whether `text` is `YYYY-MM-DD` with a month 01-12 and a day 01-31.
fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    match parts.as_slice() {
        [y, m, d] => {
            number(y, 4).is_some()
                && number(m, 2).is_some_and(|m| (1..=12).contains(&m))
                && number(d, 2).is_some_and(|d| (1..=31).contains(&d))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RatesFile {
        RatesFile {
            schema_version: RATES_SCHEMA_VERSION,
            device: "TestGPU".into(),
            precision: Precision::Bf16,
            steps: 512,
            size: 224,
            date: "2026-11-26".into(),
            code_version: "lucid-worker 0.1.0".into(),
            note: None,
            layers: vec![
                LayerRate {
                    layer: LayerName::new("conv1").expect("layer"),
                    batch: 512,
                    images_per_second: 59.0,
                },
                LayerRate {
                    layer: LayerName::new("fc8").expect("layer"),
                    batch: 256,
                    images_per_second: 54.3,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_labels() {
        let file = sample();
        let text = file.encode();
        assert_eq!(RatesFile::decode(&text), Ok(file.clone()));
        assert!(!text.contains("note"), "an absent note is not written");
        assert_eq!(file.rate("fc8"), Some(54.3));
        assert_eq!(file.rate("conv2"), None);
        assert_eq!(
            file.label(),
            "TestGPU, bf16, B=256-512, 512 steps, 224 px, measured 2026-11-26"
        );
        let noted = RatesFile {
            note: Some("by hand".into()),
            ..file
        };
        assert_eq!(RatesFile::decode(&noted.encode()), Ok(noted));
    }

    /// Each malformed file is refused naming the field.
    #[test]
    fn refusals_name_the_field() {
        let good: Value = serde_json::from_str(&sample().encode()).expect("json");
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            edit(&mut v);
            v.to_string()
        };
        let cases: Vec<(String, &str, &str)> = vec![
            ("[1]".into(), "(document)", "expected a JSON object"),
            ("{".into(), "(document)", "not JSON"),
            (
                with(&|v| v["schema_version"] = 2.into()),
                "schema_version",
                "unsupported version 2",
            ),
            (
                with(&|v| {
                    v.as_object_mut().map(|o| o.remove("device"));
                }),
                "device",
                "missing",
            ),
            (
                with(&|v| v["precision"] = "fp16".into()),
                "precision",
                "unknown variant",
            ),
            (with(&|v| v["steps"] = 0.into()), "steps", "at least 1"),
            (with(&|v| v["size"] = (-3).into()), "size", "invalid value"),
            (
                with(&|v| v["date"] = "26.11.2026".into()),
                "date",
                "YYYY-MM-DD",
            ),
            (with(&|v| v["extra"] = 1.into()), "extra", "unknown field"),
            (
                with(&|v| v["layers"] = Value::Array(vec![])),
                "layers",
                "at least one",
            ),
            (
                with(&|v| v["layers"] = "conv1".into()),
                "layers",
                "expected a list",
            ),
            (
                with(&|v| v["layers"][1]["images_per_second"] = "fast".into()),
                "layers[1].images_per_second",
                "invalid type",
            ),
            (
                with(&|v| v["layers"][0]["images_per_second"] = (-1.0).into()),
                "layers[0].images_per_second",
                "positive",
            ),
            (
                with(&|v| v["layers"][1]["layer"] = "conv1".into()),
                "layers[1].layer",
                "twice",
            ),
            (
                with(&|v| v["layers"][0]["layer"] = "a/b".into()),
                "layers[0].layer",
                "layer",
            ),
            (
                with(&|v| v["layers"][0]["batch"] = 0.into()),
                "layers[0].batch",
                "at least 1",
            ),
            (
                with(&|v| {
                    v["layers"][0].as_object_mut().map(|o| o.remove("batch"));
                }),
                "layers[0].batch",
                "missing",
            ),
            (
                with(&|v| v["layers"][0]["speed"] = 1.into()),
                "layers[0].speed",
                "unknown field",
            ),
        ];
        for (text, field, reason) in cases {
            let error = RatesFile::decode(&text).expect_err(&text);
            assert_eq!(error.field, field, "{text}: {error}");
            assert!(error.reason.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn dates() {
        for ok in ["2026-11-26", "1999-01-31"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "2026-13-01",
            "2026-1-01",
            "2026-11-26T00:00:00Z",
            "",
            "2026-11-00",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }
}
