//! What the optimisation maximises, per image of a batch.

use tch::Tensor;

pub use lucid_proto::spec::Objective;

/// Lucid objectives on a layer's pre-bias output, one value per batch element for its own channel:
/// channel = mean over height and width (lucid `objectives.channel`), neuron = the centre unit at
/// (H/2, W/2) (`objectives.neuron`), negative channel = minus the channel mean. `acts` is
/// `[B, C, H, W]`, `channels` a `[B]` int64 tensor.
pub fn evaluate(objective: Objective, acts: &Tensor, channels: &Tensor) -> Tensor {
    let size = acts.size();
    let (b, h, w) = (size[0], size[2], size[3]);
    match objective {
        Objective::Channel | Objective::NegativeChannel => {
            let index = channels.view([b, 1, 1, 1]).expand([b, 1, h, w], false);
            let mean =
                acts.gather(1, &index, false)
                    .mean_dim([1, 2, 3].as_slice(), false, acts.kind());
            if objective == Objective::NegativeChannel {
                -mean
            } else {
                mean
            }
        }
        Objective::Neuron => {
            let centre = acts.select(2, h / 2).select(2, w / 2);
            centre.gather(1, &channels.view([b, 1]), false).view([b])
        }
    }
}

/// Lucid's diversity penalty within groups of `copies` consecutive images that share a channel: the
/// mean over each image of the summed cosine similarity of its layer Gram matrix with the others'.
/// Returns one value per group.
pub fn diversity_penalty(acts: &Tensor, copies: i64) -> Tensor {
    let size = acts.size();
    let (b, c) = (size[0], size[1]);
    let flat = acts.reshape([b, c, -1]);
    let grams = flat.matmul(&flat.transpose(1, 2)).reshape([b, -1]);
    let norm = grams
        .norm_scalaropt_dim(2, [1].as_slice(), true)
        .clamp_min(1e-10);
    let grams = (grams / norm).reshape([b / copies, copies, -1]);
    // Σ_i Σ_{j≠i} <g_i, g_j> = |Σ g|² − Σ |g_i|²
    let sum = grams.sum_dim_intlist([1].as_slice(), false, grams.kind());
    let total = (&sum * &sum).sum_dim_intlist([1].as_slice(), false, grams.kind());
    let own = (&grams * &grams).sum_dim_intlist([1, 2].as_slice(), false, grams.kind());
    (total - own) / copies as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn objectives_pick_each_elements_channel() {
        let acts = Tensor::arange(2 * 3 * 3 * 3, (Kind::Float, Device::Cpu)).view([2, 3, 3, 3]);
        let ch = Tensor::from_slice(&[2i64, 0]);
        let v: Vec<f32> =
            Vec::try_from(evaluate(Objective::Channel, &acts, &ch)).unwrap_or_default();
        // element 0 channel 2: values 18..27 → mean 22; element 1 channel 0: 27..36 → 31
        assert_eq!(v, vec![22.0, 31.0]);
        let n: Vec<f32> =
            Vec::try_from(evaluate(Objective::Neuron, &acts, &ch)).unwrap_or_default();
        assert_eq!(n, vec![22.0, 31.0]);
        let neg: Vec<f32> =
            Vec::try_from(evaluate(Objective::NegativeChannel, &acts, &ch)).unwrap_or_default();
        assert_eq!(neg, vec![-22.0, -31.0]);
    }

    #[test]
    fn diversity_is_zero_for_orthogonal_and_high_for_equal_grams() {
        // identical copies: each pair has cosine 1 → per group (k·(k−1))/k = k−1
        let a = Tensor::rand([1, 4, 3, 3], (Kind::Float, Device::Cpu)).repeat([3, 1, 1, 1]);
        let p = diversity_penalty(&a, 3).double_value(&[0]);
        assert!((p - 2.0).abs() < 1e-5, "{p}");
        // disjoint channel support → orthogonal Grams → 0
        let x = Tensor::zeros([2, 2, 1, 1], (Kind::Float, Device::Cpu));
        let _ = x.get(0).get(0).fill_(1.0);
        let _ = x.get(1).get(1).fill_(1.0);
        assert!(diversity_penalty(&x, 2).double_value(&[0]).abs() < 1e-7);
    }
}
