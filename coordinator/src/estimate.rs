//! GPU time estimates from the render engine's own measured images per second per layer.
//!
//! # Rates
//!
//! The rates come from a rates file ([`lucid_proto::rates`]): `lucid-worker bench --all-layers
//! --rates-out FILE` writes one on the GPU that will run the sweep, and `plan --rates FILE` reads it.
//! Without one, `plan` uses the shipped default, [`DEFAULT_RATES_PATH`]: the engine's last H200
//! measurement (bf16, B=512), embedded at build time and labelled in the report with its device,
//! precision, batch and date.
//!
//! A rate is measured at the file's steps and image size and scaled to the run's by the work per
//! image: `rate = rate_ref * (steps_ref + 1) / (steps + 1) * (size_ref / size)^2` (an image takes
//! `steps + 1` updates, and the network's work grows with the pixel count). Batch and precision are not
//! scaled: the estimate assumes the run renders as the measurement did, and the report says which
//! those were. A layer the file does not list gets the mean of the file's rates, marked as such.

use std::path::{Path, PathBuf};

use lucid_proto::spec::RenderSettings;
use lucid_proto::{LayerName, Plan, RatesFile};

use crate::error::{Error, Result};

/// Reference steps of the built-in table: the spec's default.
pub const DEFAULT_STEPS: u32 = lucid_proto::spec::render_defaults::DEFAULT_STEPS;
/// Reference image side of the built-in table: the spec's default.
pub const DEFAULT_SIZE: u32 = lucid_proto::spec::render_defaults::DEFAULT_SIZE;

/// Where the shipped default rates file lives in the repository.
pub const DEFAULT_RATES_PATH: &str = "docs/measurements/rates-h200-2026-11-26-bf16.json";

/// The shipped default rates file, embedded.
const DEFAULT_RATES: &str = include_str!("../../docs/measurements/rates-h200-2026-11-26-bf16.json");

/// Where a [`RateTable`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatesOrigin {
    /// The shipped default ([`DEFAULT_RATES_PATH`]).
    BuiltIn,
    /// A file named on the command line.
    File(PathBuf),
}

/// A rates file and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTable {
    /// The measured rates.
    pub file: RatesFile,
    /// Where they were read from.
    pub origin: RatesOrigin,
}

impl RateTable {
    /// The shipped default: the engine's last H200 measurement ([`DEFAULT_RATES_PATH`]).
    pub fn built_in() -> Result<Self> {
        let file = RatesFile::decode(DEFAULT_RATES).map_err(|e| Error::RateFile {
            path: PathBuf::from(DEFAULT_RATES_PATH),
            field: e.field,
            reason: e.reason,
        })?;
        Ok(Self {
            file,
            origin: RatesOrigin::BuiltIn,
        })
    }

    /// Reads the rates file at `path` (as `lucid-worker bench --rates-out` writes it); a malformed
    /// one is refused naming the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("failed to read rates file", path, e))?;
        let file = RatesFile::decode(&text).map_err(|e| Error::RateFile {
            path: path.to_path_buf(),
            field: e.field,
            reason: e.reason,
        })?;
        Ok(Self {
            file,
            origin: RatesOrigin::File(path.to_path_buf()),
        })
    }

    /// `path` when given, else the shipped default.
    pub fn load_or_built_in(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(path) => Self::load(path),
            None => Self::built_in(),
        }
    }

    /// The file's path as given, or [`DEFAULT_RATES_PATH`] marked as built in.
    pub fn origin_label(&self) -> String {
        match &self.origin {
            RatesOrigin::BuiltIn => format!("built in: {DEFAULT_RATES_PATH}"),
            RatesOrigin::File(path) => path.display().to_string(),
        }
    }

    /// Images per second of `layer` at `settings`, scaled from the file's steps and size, and
    /// whether it was measured (`false`: the mean of the file's layers stands in).
    pub fn images_per_second(&self, layer: &str, settings: &RenderSettings) -> (f64, bool) {
        let (rate, measured) = match self.file.rate(layer) {
            Some(rate) => (rate, true),
            None => {
                let rates = &self.file.layers;
                let mean =
                    rates.iter().map(|l| l.images_per_second).sum::<f64>() / rates.len() as f64;
                (mean, false)
            }
        };
        (scale(rate, &self.file, settings), measured)
    }
}

/// `rate` measured at `file`'s steps and size, scaled to `settings` (see the module docs).
fn scale(rate: f64, file: &RatesFile, settings: &RenderSettings) -> f64 {
    let updates = f64::from(file.steps + 1) / f64::from(settings.steps.saturating_add(1));
    let side = f64::from(file.size) / f64::from(settings.size.max(1));
    rate * updates * side * side
}

/// The estimate for one layer, summed over models.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerEstimate {
    /// The layer.
    pub layer: LayerName,
    /// Tasks of this layer over all models: channels times views.
    pub tasks: u64,
    /// Images those tasks make: a view with copies makes several per task.
    pub images: u64,
    /// Scaled images per second used.
    pub images_per_second: f64,
    /// Whether the rate was measured for this layer (`false`: the mean of the measured layers).
    pub measured: bool,
    /// `images / images_per_second`.
    pub seconds: f64,
}

/// A plan's estimated single-GPU time.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Per layer, in network order of first appearance.
    pub layers: Vec<LayerEstimate>,
    /// Sum of the layers' seconds.
    pub total_seconds: f64,
    /// The rates used.
    pub rates: RateTable,
}

/// Estimates `plan`'s single-GPU time with `table`, counting every view's images: a neuron or
/// negative image costs what a channel image does, and each copy of a diversity view is an image
/// (the diversity term's Gram matrices add a little on top; `lucid-worker bench --view diversity:N`
/// measures it).
pub fn estimate(plan: &Plan, table: &RateTable) -> Estimate {
    let views = plan.views.len() as u64;
    let images_per_channel = plan.images_per_channel();
    let mut layers: Vec<LayerEstimate> = Vec::new();
    for model in &plan.models {
        for layer in &model.layers {
            let channels = layer.channels.len() as u64;
            let (tasks, images) = (channels * views, channels * images_per_channel);
            if let Some(existing) = layers.iter_mut().find(|l| l.layer == layer.layer) {
                existing.tasks += tasks;
                existing.images += images;
                continue;
            }
            let (rate, measured) = table.images_per_second(layer.layer.as_str(), &plan.settings);
            layers.push(LayerEstimate {
                layer: layer.layer.clone(),
                tasks,
                images,
                images_per_second: rate,
                measured,
                seconds: 0.0,
            });
        }
    }
    for l in &mut layers {
        l.seconds = l.images as f64 / l.images_per_second;
    }
    Estimate {
        total_seconds: layers.iter().map(|l| l.seconds).sum(),
        layers,
        rates: table.clone(),
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
    use lucid_proto::spec::{Precision, RenderSection};

    /// The shipped default is the engine's H200 bf16 measurement at B=512 (docs/PERFORMANCE.md).
    #[test]
    fn the_built_in_rates_are_the_engines_h200_measurement() {
        let table = RateTable::built_in().expect("the shipped rates file decodes");
        let file = &table.file;
        assert_eq!((file.steps, file.size), (512, 224));
        assert_eq!(file.precision, Precision::Bf16);
        assert_eq!(file.device, "NVIDIA H200");
        assert_eq!(file.date, "2026-11-26");
        assert_eq!(file.batch_label(), "B=512");
        let rounded: Vec<(String, f64)> = file
            .layers
            .iter()
            .map(|l| {
                (
                    l.layer.to_string(),
                    (l.images_per_second * 10.0).round() / 10.0,
                )
            })
            .collect();
        let expected = [
            ("conv1", 59.0),
            ("conv2", 58.3),
            ("conv3", 59.8),
            ("conv4", 52.2),
            ("conv5", 53.2),
            ("fc6", 55.0),
            ("fc7", 52.1),
            ("fc8", 54.3),
        ];
        let expected: Vec<(String, f64)> = expected
            .iter()
            .map(|(l, r)| ((*l).to_owned(), *r))
            .collect();
        assert_eq!(rounded, expected);
        assert_eq!(
            table.origin_label(),
            "built in: docs/measurements/rates-h200-2026-11-26-bf16.json"
        );
    }

    #[test]
    fn rates_scale_with_updates_and_pixels() {
        let table = RateTable::built_in().expect("built-in rates");
        let conv1 = table.file.rate("conv1").expect("conv1");
        let mut s = RenderSection::default().settings();
        s.steps = 512;
        s.size = 224;
        assert_eq!(table.images_per_second("conv1", &s), (conv1, true));
        s.steps = 256;
        let (rate, _) = table.images_per_second("conv1", &s);
        assert!((rate - conv1 * 513.0 / 257.0).abs() < 1e-9, "{rate}");
        s.steps = 512;
        s.size = 112;
        let (rate, _) = table.images_per_second("conv1", &s);
        assert!((rate - conv1 * 4.0).abs() < 1e-9, "{rate}");
        s.size = 224;
        let (rate, measured) = table.images_per_second("fc9", &s);
        let mean = table
            .file
            .layers
            .iter()
            .map(|l| l.images_per_second)
            .sum::<f64>()
            / 8.0;
        assert!(!measured);
        assert!((rate - mean).abs() < 1e-9, "{rate} vs {mean}");
    }

    #[test]
    fn a_malformed_rates_file_is_refused_naming_file_and_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rates.json");
        let text = RateTable::built_in()
            .expect("built-in rates")
            .file
            .encode()
            .replacen("\"batch\": 512", "\"batch\": \"big\"", 1);
        std::fs::write(&path, text).expect("write rates");
        let error = RateTable::load(&path).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("layers[0].batch"), "{message}");
        let missing = dir.path().join("absent.json");
        let message = RateTable::load(&missing).expect_err("absent").to_string();
        assert!(message.contains("absent.json"), "{message}");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(5.4), "5s");
        assert_eq!(format_duration(125.0), "2m 05s");
        assert_eq!(format_duration(3723.0), "1h 02m 03s");
        assert_eq!(format_duration(f64::INFINITY), "unknown");
    }
}
