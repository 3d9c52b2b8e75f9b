//! Across all seeds of a layer: each reference channel's partner in every other seed (by the
//! one-to-one assignment of the reference with that seed), the "universal" channels whose partners
//! agree in every pair of seeds, and each seed's channels unique to it (no channel of any other
//! seed correlates with it above a threshold).

use serde::{Deserialize, Serialize};

use crate::matching::Pair;

/// The pairwise results across seeds need: for every ordered pair `(s, t)`, `s < t`, the
/// assignment from `s`'s channels to `t`'s, and each channel's best correlation with any channel of
/// `t` (and back).
pub trait PairwiseMatches {
    /// Seeds.
    fn seeds(&self) -> usize;
    /// Channels of seed `s`.
    fn width(&self, s: usize) -> usize;
    /// The partner in seed `t` of channel `c` of seed `s` under their assignment, with its
    /// correlation; `None` if unmatched (the wider seed's leftover).
    fn assigned(&self, s: usize, c: usize, t: usize) -> Option<Pair>;
    /// The best correlation of channel `c` of seed `s` with any channel of seed `t`.
    fn best(&self, s: usize, c: usize, t: usize) -> f32;
}

/// One reference channel across seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRow {
    /// The reference seed's channel.
    pub channel: usize,
    /// Per seed (the reference's own place holds the channel itself with correlation 1): the
    /// partner and its correlation, `None` where unmatched.
    pub partners: Vec<Option<Partner>>,
    /// The mean correlation of its partners in the other seeds (0 if it has none).
    pub mean_correlation: f32,
    /// Whether every pair of seeds' assignment agrees with these partners.
    pub universal: bool,
}

/// A channel of another seed matched to a reference channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Partner {
    /// Its channel.
    pub channel: usize,
    /// Its correlation with the reference channel.
    pub correlation: f32,
}

/// A channel no other seed has: its best correlation with any channel of any other seed is below
/// the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Unique {
    /// The seed (index into the layer's seeds).
    pub seed: usize,
    /// Its channel.
    pub channel: usize,
    /// Its best correlation with any other seed's channel.
    pub best_correlation: f32,
}

/// Every channel of seed `reference` with its partners, sorted by mean correlation (best first,
/// then by channel).
pub fn reference_rows(m: &dyn PairwiseMatches, reference: usize) -> Vec<ReferenceRow> {
    let seeds = m.seeds();
    let mut rows: Vec<ReferenceRow> = (0..m.width(reference))
        .map(|channel| {
            let partners: Vec<Option<Partner>> = (0..seeds)
                .map(|t| {
                    if t == reference {
                        return Some(Partner {
                            channel,
                            correlation: 1.0,
                        });
                    }
                    m.assigned(reference, channel, t).map(|p| Partner {
                        channel: p.b,
                        correlation: p.correlation,
                    })
                })
                .collect();
            let others: Vec<f32> = partners
                .iter()
                .enumerate()
                .filter(|(t, _)| *t != reference)
                .filter_map(|(_, p)| p.map(|p| p.correlation))
                .collect();
            let mean_correlation = if others.is_empty() {
                0.0
            } else {
                others.iter().sum::<f32>() / others.len() as f32
            };
            let universal = agree_everywhere(m, &partners);
            ReferenceRow {
                channel,
                partners,
                mean_correlation,
                universal,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.mean_correlation
            .total_cmp(&a.mean_correlation)
            .then(a.channel.cmp(&b.channel))
    });
    rows
}

/// Whether, for every pair of seeds `(s, t)`, the assignment takes `partners[s]` to `partners[t]`.
fn agree_everywhere(m: &dyn PairwiseMatches, partners: &[Option<Partner>]) -> bool {
    let seeds = m.seeds();
    for s in 0..seeds {
        for t in 0..seeds {
            if s == t {
                continue;
            }
            let (Some(ps), Some(pt)) = (partners[s], partners[t]) else {
                return false;
            };
            if m.assigned(s, ps.channel, t).map(|p| p.b) != Some(pt.channel) {
                return false;
            }
        }
    }
    true
}

/// Every seed's channels whose best correlation with any channel of any other seed is below
/// `threshold`, by seed then channel. With one seed there is nothing to compare: none.
pub fn unique_channels(m: &dyn PairwiseMatches, threshold: f32) -> Vec<Unique> {
    let seeds = m.seeds();
    if seeds < 2 {
        return Vec::new();
    }
    let mut unique = Vec::new();
    for seed in 0..seeds {
        for channel in 0..m.width(seed) {
            let best_correlation = (0..seeds)
                .filter(|&t| t != seed)
                .map(|t| m.best(seed, channel, t))
                .fold(f32::NEG_INFINITY, f32::max);
            if best_correlation < threshold {
                unique.push(Unique {
                    seed,
                    channel,
                    best_correlation,
                });
            }
        }
    }
    unique
}
