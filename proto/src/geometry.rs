//! The geometry of lucid's standard transforms: pure arithmetic, shared by the worker, which applies
//! the transforms, and the coordinator, which checks before publishing that a render size leaves
//! every planned layer a non-empty output.
//!
//! Steps: pad 12 px → crop 8 (jitter) → scale by one of `1 + (i − 5)/50`, truncated as TF1's
//! `tf.cast(scale * shape, int32)` → rotate (same size) → crop 4 (jitter).

use crate::spec::Transforms;

/// Padding of the first step, in pixels.
pub const PAD: i64 = 12;
/// Crop of the second step.
pub const JITTER_1: i64 = 8;
/// Crop of the last step.
pub const JITTER_2: i64 = 4;

/// Side of the scale step's input for `size` px images: after the pad and the first jitter.
pub fn scale_input_side(size: usize) -> i64 {
    size as i64 + 2 * PAD - JITTER_1
}

/// The eleven scale factors `1 + (i − 5)/50`.
pub fn scales() -> [f64; 11] {
    std::array::from_fn(|i| 1.0 + (i as f64 - 5.0) / 50.0)
}

/// The side after scaling `side` by `scale`, truncated as TF's `tf.cast(scale * shape, int32)` in
/// float32.
pub fn scaled_side(side: i64, scale: f64) -> i64 {
    ((scale as f32) * (side as f32)) as i64
}

/// The smallest side the network is shown for `size` px images under `transforms` (the smallest
/// scale, then the last crop).
pub fn min_network_side(transforms: Transforms, size: usize) -> i64 {
    match transforms {
        Transforms::Standard => scaled_side(scale_input_side(size), scales()[0]) - JITTER_2,
        Transforms::None => size as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_side_follows_lucid_steps() {
        // 224 + 24 − 8 = 240, × 0.9 = 216, − 4 = 212
        assert_eq!(scale_input_side(224), 240);
        assert_eq!(min_network_side(Transforms::Standard, 224), 212);
        assert_eq!(min_network_side(Transforms::None, 224), 224);
        assert_eq!(scales()[0], 0.9);
        assert_eq!(scales()[10], 1.1);
    }
}
