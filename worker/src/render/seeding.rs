//! Deterministic random streams, so that a channel's image does not depend on its batch.
//!
//! A channel's initial variable is drawn from a stream keyed by (run seed, model label, layer, channel);
//! the per-step transform draws from one keyed by (run seed, model label, layer). Both are ChaCha8
//! streams seeded by a stable 64-bit hash (FNV-1a, then a SplitMix64 finaliser), identical on every
//! platform and independent of libtorch's global generator.
//!
//! The model label is the spec's name for a network (`training_seed_01`), not a number: its bytes
//! are part of every stream, so renaming a model changes all of its images (and a resume under the
//! old name finds nothing of the new one). See `docs/seed-naming.md`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A stable 64-bit hash of length-prefixed parts.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for part in parts {
        for b in (part.len() as u64).to_le_bytes() {
            eat(b);
        }
        for &b in *part {
            eat(b);
        }
    }
    // SplitMix64 finaliser spreads FNV's weak low bits
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stream for one channel's initial variable.
pub fn channel_rng(run_seed: u64, model_label: &str, layer: &str, channel: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stable_hash(&[
        b"init",
        &run_seed.to_le_bytes(),
        model_label.as_bytes(),
        layer.as_bytes(),
        &(channel as u64).to_le_bytes(),
    ]))
}

/// The stream for a layer's transform draws.
pub fn transform_rng(run_seed: u64, model_label: &str, layer: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stable_hash(&[
        b"transforms",
        &run_seed.to_le_bytes(),
        model_label.as_bytes(),
        layer.as_bytes(),
    ]))
}

/// `n` draws from N(0, sd²).
pub fn normals(rng: &mut ChaCha8Rng, n: usize, sd: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            (z * sd) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_and_stable() {
        let a = normals(&mut channel_rng(0, "training_seed_01", "conv2", 3), 4, 0.01);
        let b = normals(&mut channel_rng(0, "training_seed_01", "conv2", 3), 4, 0.01);
        let c = normals(&mut channel_rng(0, "training_seed_01", "conv2", 4), 4, 0.01);
        let d = normals(&mut channel_rng(1, "training_seed_01", "conv2", 3), 4, 0.01);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        // parts are length-prefixed: ("ab","c") differs from ("a","bc")
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }

    #[test]
    fn normals_have_requested_spread() {
        let v = normals(&mut transform_rng(0, "s", "l"), 20000, 0.01);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / v.len() as f64;
        assert!(mean.abs() < 3e-4, "mean {mean}");
        assert!((var.sqrt() - 0.01).abs() < 3e-4, "sd {}", var.sqrt());
    }
}
