//! The probe pass's forward step: a batch of prepared probe images through one network, every
//! requested layer's activations reduced to what the dataset-example analyses keep, per channel —
//! the top-k and bottom-k images by spatial mean, the top-k (image, y, x) by spatial maximum — and
//! each image's spatial-mean row (the images × channels matrix the cross-seed analyses read).
//!
//! No gradients, no I/O here: the caller decodes and prepares each image once ([`lucid_probe`]) and
//! offers the batch to every layer of the seed. [`files`] reads a probe folder, [`command`] is
//! `lucid-worker probe`, [`bench`] is `lucid-worker bench --probe`.

pub mod bench;
pub mod command;
pub mod files;

use lucid_probe::top_k::TopKError;
use lucid_probe::{ChannelExamples, Example, Prepared};
use tch::{Device, Kind, TchError, Tensor};

use crate::render::net::RenderNet;

/// Why a probe batch gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// libtorch failed reading the activations back.
    #[error("reading the probe activations back: {0}")]
    Torch(#[from] TchError),
    /// An activation was not finite, or lists did not match.
    #[error(transparent)]
    Ranking(#[from] TopKError),
}

/// What the probe pass keeps of one layer, accumulated over batches.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerExamples {
    /// The layer's index in its network ([`RenderNet::layer_name`] names it).
    pub index: usize,
    /// Per channel, its examples.
    pub channels: Vec<ChannelExamples>,
    /// Per image offered, in order, every channel's spatial mean: the images × channels matrix.
    pub means: Vec<f32>,
}

impl LayerExamples {
    /// Empty lists of `k` for every channel of `net`'s layer `index`.
    pub fn new(net: &dyn RenderNet, index: usize, k: usize) -> Self {
        LayerExamples {
            index,
            channels: vec![ChannelExamples::new(k); net.layer_width(index)],
            means: Vec::new(),
        }
    }

    /// Offers one batch's reduced activations: `means` and `maxima` are `[B, C]`, `argmax` the
    /// flat spatial index of each maximum in a map `width` wide; image `b` is probe image
    /// `first + b`.
    fn offer(
        &mut self,
        first: u32,
        (means, maxima, argmax): (&[f32], &[f32], &[i64]),
        width: i64,
    ) -> Result<(), TopKError> {
        let c = self.channels.len();
        for (b, row) in means.chunks(c).enumerate() {
            for (channel, (examples, &mean)) in self.channels.iter_mut().zip(row).enumerate() {
                let flat = argmax[b * c + channel];
                let peak = Example {
                    score: maxima[b * c + channel],
                    image: 0,
                    y: (flat / width) as u32,
                    x: (flat % width) as u32,
                };
                examples.offer(first + b as u32, mean, peak)?;
            }
        }
        self.means.extend_from_slice(means);
        Ok(())
    }
}

/// `images` (probe images `first`, `first + 1`, …) as one `[B, 3, side, side]` batch in [−1, 1], the
/// range [`RenderNet::forward_centred`] takes.
pub fn batch_tensor(images: &[Prepared], device: Device) -> Tensor {
    let side = images.first().map_or(0, |p| i64::from(p.side));
    let values: Vec<f32> = images
        .iter()
        .flat_map(|p| p.values.iter().copied())
        .collect();
    let batch = Tensor::from_slice(&values).view([images.len() as i64, 3, side, side]);
    (batch * 2.0 - 1.0).to_device(device)
}

/// Runs `images` through `net` in batches of `batch` and returns, per layer index of `indices`, every
/// channel's `k`-lists and the images × channels means: the probe pass of one model over one set of
/// prepared images (`lucid-worker probe`'s whole set, or one shard of a distributed pass).
pub fn probe_images(
    net: &dyn RenderNet,
    indices: &[usize],
    images: &[Prepared],
    k: usize,
    batch: usize,
    device: Device,
) -> Result<Vec<LayerExamples>, ProbeError> {
    let mut layers: Vec<LayerExamples> = indices
        .iter()
        .map(|&i| LayerExamples::new(net, i, k))
        .collect();
    let batch = batch.max(1);
    for (b, chunk) in images.chunks(batch).enumerate() {
        let tensor = batch_tensor(chunk, device);
        probe_batch(net, &tensor, (b * batch) as u32, &mut layers)?;
    }
    Ok(layers)
}

/// Runs `batch` (probe images `first`, …) through `net` up to every layer in `layers` (no
/// gradients; [`RenderNet::forward_centred_many`]) and offers each layer's spatial means and maxima
/// to its lists.
pub fn probe_batch(
    net: &dyn RenderNet,
    batch: &Tensor,
    first: u32,
    layers: &mut [LayerExamples],
) -> Result<(), ProbeError> {
    let _guard = tch::no_grad_guard();
    let indices: Vec<usize> = layers.iter().map(|l| l.index).collect();
    let outputs = net.forward_centred_many(batch, &indices, Kind::Float);
    for (layer, out) in layers.iter_mut().zip(outputs) {
        let (b, c) = (out.size()[0], out.size()[1]);
        // a flat layer (a linear head) is a 1 x 1 map
        let map = out.reshape([b, c, -1]);
        let width = if out.dim() == 4 { out.size()[3] } else { 1 };
        let means = to_vec_f32(&map.mean_dim(2, false, Kind::Float))?;
        let (maxima, argmax) = map.max_dim(2, false);
        let maxima = to_vec_f32(&maxima)?;
        let argmax = to_vec_i64(&argmax)?;
        layer.offer(first, (&means, &maxima, &argmax), width)?;
    }
    Ok(())
}

fn to_vec_f32(t: &Tensor) -> Result<Vec<f32>, ProbeError> {
    Ok(Vec::<f32>::try_from(
        t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1),
    )?)
}

fn to_vec_i64(t: &Tensor) -> Result<Vec<i64>, ProbeError> {
    Ok(Vec::<i64>::try_from(
        t.to_device(Device::Cpu).flatten(0, -1),
    )?)
}
