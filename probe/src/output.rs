//! The probe pass's output for one model, the same bytes whether `lucid-worker probe` made it on one
//! machine or the coordinator merged it from the shards of a distributed pass
//! (docs/dataset-examples.md):
//!
//! - `probe.json` ([`ProbeReport`]): the model, the preparation, the usable images in index order,
//!   the files set aside with their reasons, per layer its width and receptive field, timing;
//! - `{layer}.examples.json` ([`ChannelRecord`] per channel): top-k and bottom-k by spatial mean and
//!   the top-k maxima, each maximum with its crop `[top, left, bottom, right)` of the prepared image;
//! - `{layer}.means.safetensors`: tensor `means`, `[images, channels]` float32.

use lucid_network::ReceptiveField;
use serde::{Deserialize, Serialize};

use crate::prepare::Preprocessing;
use crate::shard::ShardError;
use crate::top_k::{ChannelExamples, Example};

/// The schema of `probe.json`.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Name of the means tensor in `{layer}.means.safetensors`.
pub const MEANS_TENSOR: &str = "means";

pub use lucid_proto::probe::Skipped;

/// `probe.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeReport {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Which model.
    pub model: ModelReport,
    /// The layers probed, in network order.
    pub layers: Vec<LayerReport>,
    /// The images and how they were prepared.
    pub probe_set: ProbeSetReport,
    /// Where the time went (summed over every shard of a distributed pass).
    pub timing: ProbeTiming,
}

/// Seconds reading (fetching, decoding, preparing) and in the forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeTiming {
    /// Reading the probe files.
    pub read_seconds: f64,
    /// Forward passes and reading the activations back.
    pub forward_seconds: f64,
    /// Usable images over both.
    pub images_per_second: f64,
    /// The reading's share of both.
    pub read_share: f64,
}

impl ProbeTiming {
    /// The timing of `images` usable images.
    pub fn of(images: usize, read_seconds: f64, forward_seconds: f64) -> Self {
        let total = (read_seconds + forward_seconds).max(1e-9);
        ProbeTiming {
            read_seconds,
            forward_seconds,
            images_per_second: images as f64 / total,
            read_share: read_seconds / total,
        }
    }
}

/// The model probed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelReport {
    /// Its label (the model id of a sweep).
    pub label: String,
    /// Which network it is (a built-in name, a description file, `torchscript`).
    pub network: String,
}

/// The probe set as the pass used it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSetReport {
    /// The usable images, relative to the set's root: an example's `image` indexes this list, and
    /// row `i` of every means matrix is image `i`.
    pub images: Vec<String>,
    /// How each was prepared.
    pub preprocessing: Preprocessing,
    /// The files set aside.
    pub skipped: Vec<Skipped>,
}

/// One layer probed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerReport {
    /// Its name.
    pub layer: String,
    /// Its width.
    pub channels: usize,
    /// Its receptive field at the probe side; `None` for a network without geometry (a TorchScript
    /// export).
    pub receptive_field: Option<FieldReport>,
}

/// A receptive field as `probe.json` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldReport {
    /// `[size, jump, offset]` per axis (Araujo et al., Distill 2019).
    Local {
        /// Rows.
        rows: [usize; 3],
        /// Columns.
        cols: [usize; 3],
    },
    /// Every output sees the whole image (after a global pool or a linear layer).
    Whole,
}

impl From<ReceptiveField> for FieldReport {
    fn from(field: ReceptiveField) -> Self {
        match field {
            ReceptiveField::Local { rows, cols } => FieldReport::Local {
                rows: [rows.size, rows.jump, rows.offset],
                cols: [cols.size, cols.jump, cols.offset],
            },
            ReceptiveField::Whole => FieldReport::Whole,
        }
    }
}

/// One channel's examples in `{layer}.examples.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRecord {
    /// The channel.
    pub channel: usize,
    /// Highest spatial means, best first.
    pub top_mean: Vec<Example>,
    /// Lowest spatial means, lowest first.
    pub bottom_mean: Vec<Example>,
    /// Highest single values, with their crops.
    pub top_max: Vec<Peak>,
}

/// A maximum and the part of the prepared image that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// The maximum.
    #[serde(flatten)]
    pub example: Example,
    /// `[top, left, bottom, right)` of the prepared image, `None` without geometry.
    pub crop: Option<[usize; 4]>,
}

/// The JSON of a layer's `{layer}.examples.json`: `channels` in order, maxima cropped by `field` at
/// the prepared `side`.
pub fn examples_json(
    channels: &[ChannelExamples],
    field: Option<ReceptiveField>,
    side: usize,
) -> Vec<u8> {
    let records: Vec<ChannelRecord> = channels
        .iter()
        .enumerate()
        .map(|(channel, examples)| ChannelRecord {
            channel,
            top_mean: examples.top_mean.examples().to_vec(),
            bottom_mean: examples.bottom_mean.examples().to_vec(),
            top_max: examples
                .top_max
                .examples()
                .iter()
                .map(|&example| Peak {
                    example,
                    crop: field.map(|f| {
                        let (top, left, bottom, right) =
                            f.crop(example.y as usize, example.x as usize, side);
                        [top, left, bottom, right]
                    }),
                })
                .collect(),
        })
        .collect();
    // plain numbers and strings: serialising into a Vec cannot fail
    serde_json::to_vec(&records).unwrap_or_default()
}

/// The bytes of `{layer}.means.safetensors`: `means` as `[images, channels]`.
pub fn means_safetensors(
    images: usize,
    channels: usize,
    means: &[f32],
) -> Result<Vec<u8>, ShardError> {
    crate::shard::f32_tensor_bytes(MEANS_TENSOR, vec![images, channels], means)
}

/// `{layer}.means.safetensors` read back: `[images, channels]` row-major, checked to be one
/// float32 matrix named [`MEANS_TENSOR`] of `images` rows.
pub fn read_means(bytes: &[u8], images: usize) -> Result<(usize, Vec<f32>), ShardError> {
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ShardError::Format(e.to_string()))?;
    let view = file
        .tensor(MEANS_TENSOR)
        .map_err(|_| ShardError::Missing(MEANS_TENSOR.into()))?;
    let shape = view.shape().to_vec();
    let [rows, channels] = shape[..] else {
        return Err(ShardError::Layout {
            tensor: MEANS_TENSOR.into(),
            found: format!("shape {shape:?}"),
            expected: "[images, channels]".into(),
        });
    };
    if rows != images {
        return Err(ShardError::Layout {
            tensor: MEANS_TENSOR.into(),
            found: format!("{rows} rows"),
            expected: format!("{images}, the model's usable probe images"),
        });
    }
    let values = crate::shard::f32s(&file, MEANS_TENSOR, &[rows, channels])?;
    Ok((channels, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_read_back_as_written_and_the_wrong_shape_is_refused() {
        let means: Vec<f32> = (0..12).map(|v| v as f32 / 4.0).collect();
        let bytes = means_safetensors(4, 3, &means).unwrap();
        assert_eq!(read_means(&bytes, 4).unwrap(), (3, means));
        let err = read_means(&bytes, 5).unwrap_err().to_string();
        assert!(
            err.contains("4 rows") && err.contains("expected 5"),
            "{err}"
        );
        assert!(matches!(read_means(b"junk", 4), Err(ShardError::Format(_))));
    }
}
