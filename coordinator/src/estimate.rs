//! GPU time estimates from a per-layer images-per-second table.
//!
//! # Rate table
//!
//! Rates are images per second on one GPU for every channel of a layer at a reference step count and
//! image size; they scale linearly with steps and with pixel count:
//! `rate(steps, size) = rate_ref * (steps_ref / steps) * (size_ref / size)^2`.
//!
//! The built-in table is the H200 measurement at 512 steps and 224 px (conv1 49.3, conv3 34.0, conv5 35.4,
//! fc6 31.9, fc7 29.9, fc8 31.2 img/s; conv2 and conv4 are interpolated between their neighbours).
//!
//! A `--rate-file` (as written by `lucid-worker bench`) is JSON:
//!
//! ```json
//! { "steps": 512, "size": 224, "device": "NVIDIA H200",
//!   "layers": { "conv1": 49.3, "fc8": 31.2 } }
//! ```
//!
//! `layers` may also be a list of `{ "layer": "conv1", "images_per_second": 49.3 }` objects (other
//! fields are ignored); `steps` and `size` default to 512 and 224, `device` is optional. Layers the file
//! leaves out fall back to the built-in rate scaled from its own reference.

use std::collections::BTreeMap;
use std::path::Path;

use lucid_proto::spec::RenderSettings;
use lucid_proto::{LayerName, Plan};
use serde_json::Value;

use crate::error::{Error, Result};

/// Reference steps of the built-in table.
pub const DEFAULT_STEPS: u32 = 512;
/// Reference image side of the built-in table.
pub const DEFAULT_SIZE: u32 = 224;

/// Measured H200 anchors (img/s at 512 steps, 224 px).
const H200_ANCHORS: [(&str, f64); 6] = [
    ("conv1", 49.3),
    ("conv3", 34.0),
    ("conv5", 35.4),
    ("fc6", 31.9),
    ("fc7", 29.9),
    ("fc8", 31.2),
];

/// Per-layer images per second at a reference step count and size.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTable {
    /// Steps the rates were measured at.
    pub steps: u32,
    /// Image side the rates were measured at.
    pub size: u32,
    /// Images per second by layer name.
    pub rates: BTreeMap<String, f64>,
    /// Where the table came from, for the report.
    pub source: String,
}

impl RateTable {
    /// The built-in H200 table, conv2 and conv4 interpolated.
    pub fn h200_defaults() -> Self {
        let mut rates: BTreeMap<String, f64> = H200_ANCHORS
            .iter()
            .map(|(l, r)| ((*l).to_owned(), *r))
            .collect();
        rates.insert("conv2".into(), (49.3 + 34.0) / 2.0);
        rates.insert("conv4".into(), (34.0 + 35.4) / 2.0);
        Self {
            steps: DEFAULT_STEPS,
            size: DEFAULT_SIZE,
            rates,
            source: "built-in H200 rates".into(),
        }
    }

    /// Reads a rate file (see the module docs).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("failed to read rate file", path, e))?;
        Self::parse(&text).map_err(|reason| Error::RateFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses rate-file JSON.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let int = |key: &str, default: u32| -> std::result::Result<u32, String> {
            match value.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("`{key}` must be a positive integer")),
            }
        };
        let steps = int("steps", DEFAULT_STEPS)?;
        let size = int("size", DEFAULT_SIZE)?;
        let mut rates = BTreeMap::new();
        match value.get("layers") {
            Some(Value::Object(map)) => {
                for (layer, rate) in map {
                    rates.insert(layer.clone(), positive(layer, rate)?);
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    let layer = item
                        .get("layer")
                        .and_then(Value::as_str)
                        .ok_or("each `layers` entry needs a string `layer`")?;
                    let rate = item
                        .get("images_per_second")
                        .ok_or_else(|| format!("layer {layer}: missing `images_per_second`"))?;
                    rates.insert(layer.to_owned(), positive(layer, rate)?);
                }
            }
            _ => return Err("expected a `layers` object or list".into()),
        }
        if rates.is_empty() {
            return Err("`layers` is empty".into());
        }
        let device = value
            .get("device")
            .and_then(Value::as_str)
            .unwrap_or("measured");
        Ok(Self {
            steps,
            size,
            rates,
            source: format!("{device} rates at {steps} steps, {size} px"),
        })
    }

    /// Images per second for `layer` at `settings`, scaled from the table's reference; `None` if the
    /// table has no rate for the layer.
    pub fn images_per_second(&self, layer: &str, settings: &RenderSettings) -> Option<f64> {
        let base = *self.rates.get(layer)?;
        Some(scale(base, self.steps, self.size, settings))
    }
}

fn positive(layer: &str, v: &Value) -> std::result::Result<f64, String> {
    v.as_f64()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("layer {layer}: rate must be a positive number"))
}

fn scale(rate: f64, ref_steps: u32, ref_size: u32, settings: &RenderSettings) -> f64 {
    let steps = f64::from(ref_steps) / f64::from(settings.steps.max(1));
    let side = f64::from(ref_size) / f64::from(settings.size.max(1));
    rate * steps * side * side
}

/// The estimate for one layer, summed over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerEstimate {
    /// The layer.
    pub layer: LayerName,
    /// Tasks of this layer over all seeds.
    pub tasks: u64,
    /// Scaled images per second used.
    pub images_per_second: f64,
    /// `tasks / images_per_second`.
    pub seconds: f64,
}

/// A plan's estimated single-GPU time.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Per layer, in network order of first appearance.
    pub layers: Vec<LayerEstimate>,
    /// Sum of the layers' seconds.
    pub total_seconds: f64,
    /// Where the rates came from.
    pub source: String,
}

/// Estimates `plan`'s GPU time with `table`, falling back to the built-in rate for layers the table
/// lacks and to the built-in mean for layers neither knows.
pub fn estimate(plan: &Plan, table: &RateTable) -> Estimate {
    let defaults = RateTable::h200_defaults();
    let default_mean = defaults.rates.values().sum::<f64>() / defaults.rates.len() as f64;
    let mut layers: Vec<LayerEstimate> = Vec::new();
    for seed in &plan.seeds {
        for layer in &seed.layers {
            let tasks = layer.channels.len() as u64;
            if let Some(existing) = layers.iter_mut().find(|l| l.layer == layer.layer) {
                existing.tasks += tasks;
                continue;
            }
            let rate = table
                .images_per_second(layer.layer.as_str(), &plan.settings)
                .or_else(|| defaults.images_per_second(layer.layer.as_str(), &plan.settings))
                .unwrap_or_else(|| {
                    scale(default_mean, DEFAULT_STEPS, DEFAULT_SIZE, &plan.settings)
                });
            layers.push(LayerEstimate {
                layer: layer.layer.clone(),
                tasks,
                images_per_second: rate,
                seconds: 0.0,
            });
        }
    }
    for l in &mut layers {
        l.seconds = l.tasks as f64 / l.images_per_second;
    }
    Estimate {
        total_seconds: layers.iter().map(|l| l.seconds).sum(),
        layers,
        source: table.source.clone(),
    }
}

/// `1h 02m 03s` style duration.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "unknown".into();
    }
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lucid_proto::spec::RenderSection;

    #[test]
    fn defaults_interpolate_and_scale() {
        let t = RateTable::h200_defaults();
        let mut s = RenderSection::default().settings();
        assert_eq!(t.images_per_second("conv1", &s), Some(49.3));
        assert!((t.images_per_second("conv2", &s).unwrap_or(0.0) - 41.65).abs() < 1e-9);
        assert!((t.images_per_second("conv4", &s).unwrap_or(0.0) - 34.7).abs() < 1e-9);
        s.steps = 256;
        assert!((t.images_per_second("fc8", &s).unwrap_or(0.0) - 62.4).abs() < 1e-9);
        s.steps = 512;
        s.size = 112;
        assert!((t.images_per_second("fc8", &s).unwrap_or(0.0) - 124.8).abs() < 1e-9);
        assert_eq!(t.images_per_second("fc9", &s), None);
    }

    #[test]
    fn rate_files_in_both_shapes() {
        let a = RateTable::parse(r#"{"steps":256,"size":112,"layers":{"conv1":10.0}}"#)
            .expect("map form");
        assert_eq!((a.steps, a.size, a.rates["conv1"]), (256, 112, 10.0));
        let b = RateTable::parse(
            r#"{"device":"H100","layers":[{"layer":"fc8","images_per_second":5,"batch":64}]}"#,
        )
        .expect("list form");
        assert_eq!((b.steps, b.rates["fc8"]), (512, 5.0));
        assert!(b.source.contains("H100"));
        for bad in [
            "{}",
            r#"{"layers":{}}"#,
            r#"{"layers":{"conv1":-1}}"#,
            r#"{"steps":0,"layers":{"conv1":1}}"#,
            "nope",
        ] {
            assert!(RateTable::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(5.4), "5s");
        assert_eq!(format_duration(125.0), "2m 05s");
        assert_eq!(format_duration(3723.0), "1h 02m 03s");
        assert_eq!(format_duration(f64::INFINITY), "unknown");
    }
}
