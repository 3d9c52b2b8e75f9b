//! Pearson correlation between every channel of one network and every channel of another over the
//! same probe images (Li, Yosinski, Clune, Lipson and Hopcroft, "Convergent Learning: Do different
//! neural networks learn the same representations?", ICLR 2016, §2: units compared by the
//! correlation of their activations over a shared image set).
//!
//! The activations are the probe pass's stored spatial means (`{layer}.means.safetensors`, images ×
//! channels): one value per image and channel. Li et al. correlate over images and positions of the
//! maps; the maps of 10⁴–10⁵ images × 10,037 channels per seed are not stored (tens of GB per seed),
//! so this correlates over images only, which compares what each channel responds to across images
//! and ignores where in the image. Fully connected layers have one position, so there both agree.
//!
//! Each column is centred and scaled to unit norm once ([`Standardized`]), so the correlation of
//! every pair of channels is one matrix product `Zaᵀ Zb` (ndarray's GEMM, threaded). A channel that
//! never varies over the probe images (a ReLU channel that is always 0) has no correlation with
//! anything: its column is zero, so its correlations are 0, and it is flagged.

use ndarray::{Array2, ArrayView2};

use crate::MatchError;

/// One network's activations over the probe images, each channel centred and scaled to unit norm.
#[derive(Debug, Clone)]
pub struct Standardized {
    /// `[images, channels]`.
    z: Array2<f32>,
    /// Channels whose activation is the same for every image.
    constant: Vec<bool>,
}

impl Standardized {
    /// `means` (`[images, channels]`) standardised per channel; the sums run in f64, so a constant
    /// channel centres to exactly zero.
    pub fn new(means: ArrayView2<'_, f32>) -> Self {
        let (n, c) = means.dim();
        let mut z = Array2::<f32>::zeros((n, c));
        let mut constant = vec![false; c];
        for j in 0..c {
            let column = means.column(j);
            let mean = column.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
            let ss: f64 = column.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
            if ss <= f64::EPSILON * mean * mean * n as f64 || ss == 0.0 {
                constant[j] = true;
                continue;
            }
            let scale = 1.0 / ss.sqrt();
            for (i, &v) in column.iter().enumerate() {
                z[[i, j]] = ((f64::from(v) - mean) * scale) as f32;
            }
        }
        Standardized { z, constant }
    }

    /// Probe images.
    pub fn images(&self) -> usize {
        self.z.nrows()
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.z.ncols()
    }

    /// Whether channel `channel` never varies over the probe images.
    pub fn is_constant(&self, channel: usize) -> bool {
        self.constant[channel]
    }

    /// The constant channels.
    pub fn constant_channels(&self) -> Vec<usize> {
        (0..self.constant.len())
            .filter(|&c| self.constant[c])
            .collect()
    }
}

/// Pearson's r of `x` and `y` written out in f64, 0 when either is constant: the direct form the
/// matrix product is tested against, and the RDMs' agreement.
pub(crate) fn pearson(x: &[f32], y: &[f32]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    let mean = |v: &[f32]| v.iter().map(|&a| f64::from(a)).sum::<f64>() / n.max(1.0);
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (f64::from(a) - mx, f64::from(b) - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx > 0.0 && syy > 0.0 {
        (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// `[a's channels, b's channels]`: the Pearson correlation of every pair over the probe images,
/// 0 for a constant channel. Both must be over the same images.
pub fn correlation(a: &Standardized, b: &Standardized) -> Result<Array2<f32>, MatchError> {
    if a.images() != b.images() {
        return Err(MatchError::ImagesDiffer {
            a: a.images(),
            b: b.images(),
        });
    }
    let mut r = a.z.t().dot(&b.z);
    // rounding can leave |r| a hair above 1
    r.mapv_inplace(|v| v.clamp(-1.0, 1.0));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, c: usize, seed: u64) -> Array2<f32> {
        let mut state = seed | 1;
        Array2::from_shape_fn((n, c), |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f32 / 1000.0
        })
    }

    #[test]
    fn the_matrix_product_equals_pearsons_r_pair_by_pair() {
        let (a, b) = (pseudo_random(57, 6, 3), pseudo_random(57, 4, 11));
        let r = correlation(&Standardized::new(a.view()), &Standardized::new(b.view())).unwrap();
        assert_eq!(r.dim(), (6, 4));
        for i in 0..6 {
            for j in 0..4 {
                let want = pearson(&a.column(i).to_vec(), &b.column(j).to_vec());
                assert!((f64::from(r[[i, j]]) - want).abs() < 1e-5, "{i} {j}");
            }
        }
    }

    #[test]
    fn known_answers_affine_copies_negation_and_a_constant_channel() {
        // b0 = 3 a0 + 1 (r = 1), b1 = -a1 (r = -1), b2 constant (r = 0, flagged)
        let a = pseudo_random(40, 2, 5);
        let mut b = Array2::<f32>::zeros((40, 3));
        for i in 0..40 {
            b[[i, 0]] = 3.0 * a[[i, 0]] + 1.0;
            b[[i, 1]] = -a[[i, 1]];
            b[[i, 2]] = 0.25;
        }
        let (sa, sb) = (Standardized::new(a.view()), Standardized::new(b.view()));
        let r = correlation(&sa, &sb).unwrap();
        assert!((r[[0, 0]] - 1.0).abs() < 1e-6);
        assert!((r[[1, 1]] + 1.0).abs() < 1e-6);
        assert_eq!((r[[0, 2]], r[[1, 2]]), (0.0, 0.0));
        assert_eq!(sb.constant_channels(), vec![2]);
        assert!(!sa.is_constant(0));
        let fewer = Standardized::new(pseudo_random(39, 2, 5).view());
        assert!(matches!(
            correlation(&sa, &fewer),
            Err(MatchError::ImagesDiffer { a: 40, b: 39 })
        ));
    }
}
