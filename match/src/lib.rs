//! Which features recur across seeds (issue 16, docs/matching.md): the channels of networks that
//! differ only in their training seed, compared through their activations over the same probe
//! images (the probe pass's images × channels means).
//!
//! - [`correlation`]: every channel of one seed against every channel of another (Pearson, one
//!   matrix product of standardised columns);
//! - [`matching`]: one-to-one assignment (Jonker–Volgenant), semi-matching, mutual best buddies, each
//!   pair with its correlation as its quality;
//! - [`seeds`]: across all seeds, each reference channel's partners, universal channels, channels
//!   unique to one seed;
//! - [`consistency`]: representational consistency of a layer between seeds (RDMs over probe
//!   images, Mehrer et al. 2020).
//!
//! [`match_layer`] does all of it for one layer of every seed. No I/O and no libtorch: the
//! coordinator reads the stored means and writes what this returns.

pub mod consistency;
pub mod correlation;
pub mod matching;
pub mod seeds;

use std::time::Instant;

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::consistency::{Agreement, agreement, rdm, rdm_images};
use crate::correlation::{Standardized, correlation};
use crate::matching::{Pair, assignment, best_buddies, mean_correlation, semi_matching};
use crate::seeds::{PairwiseMatches, ReferenceRow, Unique, reference_rows, unique_channels};

/// Why a layer could not be matched.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MatchError {
    /// Two seeds' activations are over different numbers of probe images.
    #[error("the activations are over {a} and {b} probe images: they must be over the same images")]
    ImagesDiffer {
        /// Images of the first.
        a: usize,
        /// Images of the second.
        b: usize,
    },
    /// A correlation is NaN or infinite (an activation was).
    #[error("the correlation of channel {a} with channel {b} is not finite")]
    NotFinite {
        /// The first seed's channel.
        a: usize,
        /// The second seed's channel.
        b: usize,
    },
    /// The assignment solver failed.
    #[error("the assignment solver failed: {0}")]
    Assignment(String),
    /// The options name a seed the layer does not have, or no seed is given.
    #[error("{0}")]
    Options(String),
}

/// What [`match_layer`] computes, and how.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatchOptions {
    /// The seed (index) every other is matched against for the reference rows.
    pub reference: usize,
    /// A channel whose best correlation with every other seed is below this is unique to its seed.
    pub unique_below: f32,
    /// `k` of the mutual best buddies.
    pub buddies_k: usize,
    /// Probe images the RDMs are computed over (evenly spaced; all if fewer).
    pub rdm_images: usize,
}

impl MatchOptions {
    /// Reference the first seed, unique below r = 0.3, best buddies at k = 1 (mutual nearest
    /// neighbours), RDMs over 1,000 images.
    pub fn recommended() -> Self {
        MatchOptions {
            reference: 0,
            unique_below: 0.3,
            buddies_k: 1,
            rdm_images: 1000,
        }
    }
}

/// One seed's activations at a layer.
#[derive(Debug, Clone, Copy)]
pub struct SeedMeans<'a> {
    /// The seed's model id.
    pub model: &'a str,
    /// `[images, channels]`.
    pub means: ArrayView2<'a, f32>,
}

/// Everything about one layer across seeds, as `match/{layer}.json` stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMatch {
    /// The layer.
    pub layer: String,
    /// The seeds, in the order every index refers to.
    pub models: Vec<String>,
    /// The reference seed.
    pub reference: String,
    /// Probe images the correlations run over.
    pub images: usize,
    /// Per seed, its channels that never vary over the probe images (no correlation with anything).
    pub constant_channels: Vec<Vec<usize>>,
    /// Every pair of seeds (`a` before `b` in `models`).
    pub pairs: Vec<PairMatch>,
    /// Every channel of the reference seed with its partner in every seed, best matched first.
    pub reference_rows: Vec<ReferenceRow>,
    /// Channels unique to one seed.
    pub unique: Vec<Unique>,
    /// The options used.
    pub options: MatchOptions,
    /// Representational consistency between seeds.
    pub consistency: Consistency,
    /// The mean over pairs of seeds of their assignment's mean correlation: one point of the
    /// curve over depth.
    pub mean_matched_correlation: f64,
    /// Where the time went.
    pub timing: Timing,
}

/// Two seeds' matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairMatch {
    /// The first seed (its channels are each pair's `a`).
    pub a: String,
    /// The second seed (`b`).
    pub b: String,
    /// The one-to-one assignment, by `a`'s channel.
    pub assignment: Vec<Pair>,
    /// Its mean correlation.
    pub mean_assigned: f64,
    /// Each of `a`'s channels with its best channel of `b`.
    pub semi_matching: Vec<Pair>,
    /// Each of `b`'s channels with its best channel of `a` (`a` and `b` of each pair swapped:
    /// `a` is `b`'s channel).
    pub semi_matching_back: Vec<Pair>,
    /// Mutual best buddies at [`MatchOptions::buddies_k`].
    pub best_buddies: Vec<Pair>,
}

/// The seeds × seeds agreement of their RDMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consistency {
    /// Probe images the RDMs are over.
    pub images: usize,
    /// Pearson's r of every pair's RDMs (1 on the diagonal).
    pub r: Vec<Vec<f64>>,
    /// r²: Mehrer et al.'s shared variance.
    pub shared_variance: Vec<Vec<f64>>,
}

/// Seconds per stage of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timing {
    /// Standardising and every pair's correlation matrix.
    pub correlation_seconds: f64,
    /// Every pair's assignment.
    pub assignment_seconds: f64,
    /// Semi-matchings and best buddies.
    pub ranking_seconds: f64,
    /// RDMs and their agreement.
    pub consistency_seconds: f64,
}

/// The pairwise results of one layer, indexed for [`PairwiseMatches`].
struct Pairwise {
    widths: Vec<usize>,
    /// `(s, t)` with `s < t` → index into `pairs`.
    pairs: Vec<((usize, usize), PairIndex)>,
}

/// One pair's assignment both ways and best correlations both ways.
struct PairIndex {
    forward: Vec<Option<Pair>>,
    back: Vec<Option<Pair>>,
    best_forward: Vec<f32>,
    best_back: Vec<f32>,
}

impl Pairwise {
    fn find(&self, s: usize, t: usize) -> (&PairIndex, bool) {
        let (key, swapped) = if s < t {
            ((s, t), false)
        } else {
            ((t, s), true)
        };
        let index = self
            .pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p)
            .expect("every pair of seeds is computed");
        (index, swapped)
    }
}

impl PairwiseMatches for Pairwise {
    fn seeds(&self) -> usize {
        self.widths.len()
    }
    fn width(&self, s: usize) -> usize {
        self.widths[s]
    }
    fn assigned(&self, s: usize, c: usize, t: usize) -> Option<Pair> {
        let (index, swapped) = self.find(s, t);
        let map = if swapped { &index.back } else { &index.forward };
        map.get(c).copied().flatten()
    }
    fn best(&self, s: usize, c: usize, t: usize) -> f32 {
        let (index, swapped) = self.find(s, t);
        let best = if swapped {
            &index.best_back
        } else {
            &index.best_forward
        };
        best[c]
    }
}

/// Matches every pair of `seeds` at `layer` and compares their representations.
pub fn match_layer(
    layer: &str,
    seeds: &[SeedMeans<'_>],
    options: MatchOptions,
) -> Result<LayerMatch, MatchError> {
    if options.reference >= seeds.len() {
        return Err(MatchError::Options(format!(
            "the reference seed is number {} of {}",
            options.reference,
            seeds.len()
        )));
    }
    let images = seeds[0].means.nrows();
    let mut timing = Timing::default();
    let started = Instant::now();
    let standardized: Vec<Standardized> =
        seeds.iter().map(|s| Standardized::new(s.means)).collect();
    timing.correlation_seconds += started.elapsed().as_secs_f64();
    let mut pairs = Vec::new();
    let mut index = Pairwise {
        widths: standardized.iter().map(Standardized::channels).collect(),
        pairs: Vec::new(),
    };
    for s in 0..seeds.len() {
        for t in s + 1..seeds.len() {
            let (report, pair_index) =
                match_pair(seeds, &standardized, (s, t), options, &mut timing)?;
            pairs.push(report);
            index.pairs.push(((s, t), pair_index));
        }
    }
    let started = Instant::now();
    let reference_rows = reference_rows(&index, options.reference);
    let unique = unique_channels(&index, options.unique_below);
    timing.ranking_seconds += started.elapsed().as_secs_f64();
    let started = Instant::now();
    let consistency = consistency(seeds, options.rdm_images);
    timing.consistency_seconds = started.elapsed().as_secs_f64();
    let mean_matched_correlation = if pairs.is_empty() {
        0.0
    } else {
        pairs.iter().map(|p| p.mean_assigned).sum::<f64>() / pairs.len() as f64
    };
    Ok(LayerMatch {
        layer: layer.to_owned(),
        models: seeds.iter().map(|s| s.model.to_owned()).collect(),
        reference: seeds[options.reference].model.to_owned(),
        images,
        constant_channels: standardized
            .iter()
            .map(Standardized::constant_channels)
            .collect(),
        pairs,
        reference_rows,
        unique,
        options,
        consistency,
        mean_matched_correlation,
        timing,
    })
}

/// Seeds `s` and `t` correlated and matched every way.
fn match_pair(
    seeds: &[SeedMeans<'_>],
    standardized: &[Standardized],
    (s, t): (usize, usize),
    options: MatchOptions,
    timing: &mut Timing,
) -> Result<(PairMatch, PairIndex), MatchError> {
    let started = Instant::now();
    let corr = correlation(&standardized[s], &standardized[t])?;
    timing.correlation_seconds += started.elapsed().as_secs_f64();
    let started = Instant::now();
    let assigned = assignment(corr.view())?;
    timing.assignment_seconds += started.elapsed().as_secs_f64();
    let started = Instant::now();
    let semi = semi_matching(corr.view());
    let back = semi_matching(corr.t());
    let buddies = best_buddies(corr.view(), options.buddies_k.max(1));
    timing.ranking_seconds += started.elapsed().as_secs_f64();
    let (rows, cols) = corr.dim();
    let mut forward = vec![None; rows];
    let mut reverse = vec![None; cols];
    for p in &assigned {
        forward[p.a] = Some(*p);
        reverse[p.b] = Some(Pair {
            a: p.b,
            b: p.a,
            correlation: p.correlation,
        });
    }
    let index = PairIndex {
        forward,
        back: reverse,
        best_forward: semi.iter().map(|p| p.correlation).collect(),
        best_back: back.iter().map(|p| p.correlation).collect(),
    };
    let report = PairMatch {
        a: seeds[s].model.to_owned(),
        b: seeds[t].model.to_owned(),
        mean_assigned: mean_correlation(&assigned),
        assignment: assigned,
        semi_matching: semi,
        semi_matching_back: back,
        best_buddies: buddies,
    };
    Ok((report, index))
}

/// Every seed's RDM over the same evenly spaced images, and every pair's agreement.
fn consistency(seeds: &[SeedMeans<'_>], count: usize) -> Consistency {
    let images = seeds[0].means.nrows();
    let rows = rdm_images(images, count);
    let rdms: Vec<Vec<f32>> = seeds.iter().map(|s| rdm(s.means, &rows)).collect();
    let n = seeds.len();
    let mut r = vec![vec![1.0; n]; n];
    let mut shared = vec![vec![1.0; n]; n];
    for s in 0..n {
        for t in s + 1..n {
            let Agreement {
                r: rst,
                shared_variance,
            } = agreement(&rdms[s], &rdms[t]);
            (r[s][t], r[t][s]) = (rst, rst);
            (shared[s][t], shared[t][s]) = (shared_variance, shared_variance);
        }
    }
    Consistency {
        images: rows.len(),
        r,
        shared_variance: shared,
    }
}

impl LayerMatch {
    /// The matches as CSV: one row per pair of channels of every method, with its quality.
    pub fn csv(&self) -> String {
        let mut out = String::from("method,a_model,a_channel,b_model,b_channel,correlation\n");
        let mut rows = |method: &str, a: &str, b: &str, pairs: &[Pair]| {
            for p in pairs {
                out.push_str(&format!(
                    "{method},{a},{},{b},{},{}\n",
                    p.a, p.b, p.correlation
                ));
            }
        };
        for pair in &self.pairs {
            rows("assignment", &pair.a, &pair.b, &pair.assignment);
            rows("semi_matching", &pair.a, &pair.b, &pair.semi_matching);
            rows("semi_matching", &pair.b, &pair.a, &pair.semi_matching_back);
            rows("best_buddies", &pair.a, &pair.b, &pair.best_buddies);
        }
        out
    }
}
