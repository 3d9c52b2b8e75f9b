//! Representational consistency (Mehrer, Spoerer, Kriegeskorte and Kietzmann, "Individual
//! differences among deep neural network models", Nature Communications 11, 5725, 2020): per seed
//! and layer a representational dissimilarity matrix over probe images — 1 − the Pearson
//! correlation of two images' activation vectors (here their channels' spatial means) — and between
//! two seeds the Pearson correlation of their RDMs' upper triangles. Mehrer et al. report the shared
//! variance, its square; both are given.
//!
//! An RDM is images² entries, so it is computed over an evenly spaced subset of the probe images
//! ([`rdm_images`]; 1,000 by default: 499,500 pairs), the same subset for every seed.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::correlation::Standardized;

/// The `count` probe images an RDM is computed over: evenly spaced through `images`, all of them
/// when there are no more.
pub fn rdm_images(images: usize, count: usize) -> Vec<usize> {
    if images <= count {
        return (0..images).collect();
    }
    (0..count).map(|i| i * images / count).collect()
}

/// The upper triangle (row by row, diagonal excluded) of the RDM of `means` (`[images, channels]`)
/// over the rows `rows`: 1 − r of every pair of images' activation vectors. An image whose
/// activations are all equal has no correlation; its dissimilarities are 1.
pub fn rdm(means: ArrayView2<'_, f32>, rows: &[usize]) -> Vec<f32> {
    // the images as columns, standardised: their correlations are one product
    let picked = Array2::from_shape_fn((means.ncols(), rows.len()), |(c, i)| means[[rows[i], c]]);
    let z = Standardized::new(picked.view());
    let r = crate::correlation::correlation(&z, &z).unwrap_or_else(|_| Array2::zeros((0, 0)));
    let m = rows.len();
    let mut upper = Vec::with_capacity(m * m.saturating_sub(1) / 2);
    for i in 0..m {
        for j in i + 1..m {
            upper.push(1.0 - r[[i, j]]);
        }
    }
    upper
}

/// How alike two RDMs are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Pearson's r of the two upper triangles.
    pub r: f64,
    /// r²: the shared variance, Mehrer et al.'s representational consistency.
    pub shared_variance: f64,
}

/// The agreement of two RDMs' upper triangles (of the same images); r = 0 when either is constant.
pub fn agreement(a: &[f32], b: &[f32]) -> Agreement {
    let r = crate::correlation::pearson(a, b);
    Agreement {
        r,
        shared_variance: r * r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn an_rdm_is_one_minus_the_images_correlations() {
        // image 1 = 2 × image 0 (r = 1), image 2 = its reverse (r = -1 with image 0)
        let means = array![[1.0f32, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 2.0, 1.0]];
        let upper = rdm(means.view(), &[0, 1, 2]);
        let want = [0.0f32, 2.0, 2.0];
        for (got, want) in upper.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{upper:?}");
        }
    }

    #[test]
    fn a_channel_permutation_leaves_the_rdm_unchanged_and_consistency_at_one() {
        let means = Array2::from_shape_fn((30, 5), |(i, c)| ((i * 7 + c * 13) % 11) as f32);
        let permuted = Array2::from_shape_fn((30, 5), |(i, c)| means[[i, (c + 2) % 5]]);
        let rows = rdm_images(30, 12);
        let (a, b) = (rdm(means.view(), &rows), rdm(permuted.view(), &rows));
        let same = agreement(&a, &b);
        assert!((same.r - 1.0).abs() < 1e-6 && (same.shared_variance - 1.0).abs() < 1e-6);
        // an unrelated representation of the same images agrees less
        let other = Array2::from_shape_fn((30, 5), |(i, c)| ((i * i + 3 * c) % 7) as f32);
        assert!(agreement(&a, &rdm(other.view(), &rows)).r < 0.9);
    }

    #[test]
    fn rdm_images_are_evenly_spaced_and_never_more_than_there_are() {
        assert_eq!(rdm_images(10, 4), [0, 2, 5, 7]);
        assert_eq!(rdm_images(3, 1000), [0, 1, 2]);
        assert_eq!(agreement(&[1.0, 1.0], &[0.0, 2.0]).r, 0.0);
    }
}
