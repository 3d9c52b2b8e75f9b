//! What one probe task (one model × one shard of the probe set) hands to the merge: per layer every
//! channel's top-k / bottom-k lists and the shard's rows of the images × channels mean matrix, as one
//! `.safetensors` file (a documented binary format any language reads; the JSON form of 10⁴ channels'
//! lists would be ten times larger).
//!
//! Tensors, per layer `L` of `C` channels over a shard of `n` usable images, `m = min(k, n)`:
//!
//! | name | dtype | shape | holds |
//! | --- | --- | --- | --- |
//! | `L/means` | F32 | `[n, C]` | each image's spatial mean of each channel |
//! | `L/{list}/score` | F32 | `[C, m]` | the list's scores, best first |
//! | `L/{list}/where` | U32 | `[C, m, 3]` | image (index within the shard), y, x |
//!
//! for `{list}` in `top_mean`, `bottom_mean`, `top_max`. Every list holds exactly `m` examples:
//! each image is offered once to every channel.

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::top_k::{ChannelExamples, End, Example, TopK, TopKError};

/// One layer's part of a shard's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLayerData {
    /// The layer's name.
    pub layer: String,
    /// Every channel's lists; image indices count the shard's usable images from 0.
    pub channels: Vec<ChannelExamples>,
    /// `[images, channels]`, row-major.
    pub means: Vec<f32>,
}

/// Why a shard's data cannot be written or read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShardError {
    /// Not a `.safetensors` file, or a cut one.
    #[error("not a probe shard's safetensors data: {0}")]
    Format(String),
    /// A tensor the layout needs is not there.
    #[error("probe shard data has no tensor {0}")]
    Missing(String),
    /// A tensor of another type or shape than the layout says.
    #[error("probe shard tensor {tensor} is {found}, expected {expected}")]
    Layout {
        /// The tensor.
        tensor: String,
        /// What it is.
        found: String,
        /// What the layout says.
        expected: String,
    },
    /// A list whose examples break the ranking (a NaN, or lists of another `k`).
    #[error("probe shard list {tensor}: {source}")]
    Ranking {
        /// The tensor.
        tensor: String,
        /// Why.
        source: TopKError,
    },
}

/// The three lists of a channel, in the layout's order, with their ends.
const LISTS: [(&str, End); 3] = [
    ("top_mean", End::Highest),
    ("bottom_mean", End::Lowest),
    ("top_max", End::Highest),
];

/// The `.safetensors` bytes of `layers` over a shard of `images` usable images, lists of `k`.
pub fn encode(layers: &[ShardLayerData], images: usize, k: usize) -> Result<Vec<u8>, ShardError> {
    let m = k.min(images);
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for layer in layers {
        let c = layer.channels.len();
        if layer.means.len() != images * c {
            return Err(layout(
                format!("{}/means", layer.layer),
                format!("{} values", layer.means.len()),
                format!("{images} × {c}"),
            ));
        }
        tensors.push((
            format!("{}/means", layer.layer),
            Dtype::F32,
            vec![images, c],
            le_bytes(layer.means.iter().map(|v| v.to_le_bytes())),
        ));
        for (list, (name, _)) in LISTS.iter().enumerate() {
            let tensor = format!("{}/{name}", layer.layer);
            let mut scores = Vec::with_capacity(c * m);
            let mut places = Vec::with_capacity(c * m * 3);
            for (channel, examples) in layer.channels.iter().enumerate() {
                let kept = examples.lists()[list].examples();
                if kept.len() != m {
                    return Err(layout(
                        tensor,
                        format!("{} examples for channel {channel}", kept.len()),
                        format!("{m}"),
                    ));
                }
                for e in kept {
                    scores.push(e.score);
                    places.extend([e.image, e.y, e.x]);
                }
            }
            tensors.push((
                format!("{tensor}/score"),
                Dtype::F32,
                vec![c, m],
                le_bytes(scores.iter().map(|v| v.to_le_bytes())),
            ));
            tensors.push((
                format!("{tensor}/where"),
                Dtype::U32,
                vec![c, m, 3],
                le_bytes(places.iter().map(|v| v.to_le_bytes())),
            ));
        }
    }
    serialize(&tensors)
}

fn le_bytes(values: impl Iterator<Item = [u8; 4]>) -> Vec<u8> {
    values.flatten().collect()
}

fn serialize(tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Result<Vec<u8>, ShardError> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| ShardError::Format(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| ShardError::Format(e.to_string()))
}

/// The `.safetensors` bytes of one float32 tensor `name` of `shape` (the merged means matrix).
pub fn f32_tensor_bytes(
    name: &str,
    shape: Vec<usize>,
    values: &[f32],
) -> Result<Vec<u8>, ShardError> {
    let data = le_bytes(values.iter().map(|v| v.to_le_bytes()));
    serialize(&[(name.to_owned(), Dtype::F32, shape, data)])
}

/// What [`decode`] expects: each layer's name and width, the shard's usable images and `k`.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Layer names and widths, in the order the task listed them.
    pub layers: &'a [(String, usize)],
    /// The shard's usable images.
    pub images: usize,
    /// Examples per list.
    pub k: usize,
}

/// Reads a shard's data back, every tensor checked against `expected`.
pub fn decode(bytes: &[u8], expected: Expected<'_>) -> Result<Vec<ShardLayerData>, ShardError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| ShardError::Format(e.to_string()))?;
    let m = expected.k.min(expected.images);
    expected
        .layers
        .iter()
        .map(|(layer, c)| {
            let means = f32s(&file, &format!("{layer}/means"), &[expected.images, *c])?;
            let mut channels = vec![ChannelExamples::new(expected.k); *c];
            for (list, (name, end)) in LISTS.iter().enumerate() {
                let tensor = format!("{layer}/{name}");
                let scores = f32s(&file, &format!("{tensor}/score"), &[*c, m])?;
                let places = u32s(&file, &format!("{tensor}/where"), &[*c, m, 3])?;
                for (channel, examples) in channels.iter_mut().enumerate() {
                    let mut kept = TopK::new(expected.k, *end);
                    for i in channel * m..(channel + 1) * m {
                        let at = &places[i * 3..i * 3 + 3];
                        let example = Example {
                            score: scores[i],
                            image: at[0],
                            y: at[1],
                            x: at[2],
                        };
                        kept.offer(example).map_err(|source| ShardError::Ranking {
                            tensor: tensor.clone(),
                            source,
                        })?;
                    }
                    *examples.lists_mut()[list] = kept;
                }
            }
            Ok(ShardLayerData {
                layer: layer.clone(),
                channels,
                means,
            })
        })
        .collect()
}

fn layout(tensor: String, found: String, expected: String) -> ShardError {
    ShardError::Layout {
        tensor,
        found,
        expected,
    }
}

/// The bytes of tensor `name`, checked to be `dtype` of `shape`.
fn checked<'a>(
    file: &'a SafeTensors<'a>,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'a [u8], ShardError> {
    let view = file
        .tensor(name)
        .map_err(|_| ShardError::Missing(name.to_owned()))?;
    if view.dtype() != dtype || view.shape() != shape {
        return Err(layout(
            name.to_owned(),
            format!("{:?} {:?}", view.dtype(), view.shape()),
            format!("{dtype:?} {shape:?}"),
        ));
    }
    Ok(view.data())
}

/// Float32 tensor `name` of `shape`; also read by the merge for a stored means matrix.
pub fn f32s(file: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, ShardError> {
    let data = checked(file, name, Dtype::F32, shape)?;
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn u32s(file: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<u32>, ShardError> {
    let data = checked(file, name, Dtype::U32, shape)?;
    Ok(data
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(images: usize, channels: usize, k: usize) -> ShardLayerData {
        let mut lists = vec![ChannelExamples::new(k); channels];
        let mut means = Vec::new();
        for image in 0..images {
            for (c, examples) in lists.iter_mut().enumerate() {
                let mean = ((image * 7 + c * 3) % 11) as f32 - 5.0;
                let peak = Example {
                    score: mean * 2.0 + 1.0,
                    image: 0,
                    y: (image % 3) as u32,
                    x: (c % 2) as u32,
                };
                examples.offer(image as u32, mean, peak).unwrap();
                means.push(mean);
            }
        }
        ShardLayerData {
            layer: "conv2".into(),
            channels: lists,
            means,
        }
    }

    #[test]
    fn a_shard_read_back_equals_what_was_written() {
        for (images, k) in [(5, 3), (2, 4), (0, 4)] {
            let layer = shard(images, 6, k);
            let bytes = encode(std::slice::from_ref(&layer), images, k).unwrap();
            let widths = [("conv2".to_owned(), 6)];
            let expected = Expected {
                layers: &widths,
                images,
                k,
            };
            assert_eq!(
                decode(&bytes, expected).unwrap(),
                vec![layer],
                "{images} images"
            );
        }
    }

    #[test]
    fn data_of_another_shape_is_refused_naming_the_tensor() {
        let layer = shard(5, 6, 3);
        let bytes = encode(&[layer], 5, 3).unwrap();
        let read_as = |bytes: &[u8], layer: &str, width: usize| {
            let widths = [(layer.to_owned(), width)];
            decode(
                bytes,
                Expected {
                    layers: &widths,
                    images: 5,
                    k: 3,
                },
            )
        };
        let error = read_as(&bytes, "conv2", 7).unwrap_err();
        assert!(error.to_string().contains("conv2/means"), "{error}");
        let error = read_as(&bytes, "conv3", 6).unwrap_err();
        assert_eq!(error, ShardError::Missing("conv3/means".into()));
        let error = read_as(&bytes[..bytes.len() / 2], "conv3", 6);
        assert!(matches!(error, Err(ShardError::Format(_))), "{error:?}");
    }
}
