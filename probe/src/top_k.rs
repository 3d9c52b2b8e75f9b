//! A channel's best examples, kept while streaming through a shard of probe images and merged across
//! shards. The order is total — score first, then the lower image index, then the position — so the
//! k kept are a function of the set of candidates alone: any split into shards, merged in any order
//! or grouping, gives the same list as one pass over everything (the merge is associative and
//! commutative), and a shard done twice changes nothing.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// One candidate: an image of the probe set and, for the spatial maximum, the output position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The channel's activation: its spatial mean, or its value at `(y, x)`.
    pub score: f32,
    /// The image's index in the probe set's listing (sorted by key, so stable across runs).
    pub image: u32,
    /// The output row (0 for a spatial mean).
    pub y: u32,
    /// The output column (0 for a spatial mean).
    pub x: u32,
}

/// Which end of the ranking is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The highest scores (the examples that drive the channel).
    Highest,
    /// The lowest scores (the "negative" examples).
    Lowest,
}

/// Why a candidate or a merge was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopKError {
    /// A NaN or infinite activation: the network or the image is broken, and ranking it would hide
    /// that.
    #[error("activation {score} for probe image {image} is not finite")]
    NotFinite {
        /// The image.
        image: u32,
        /// The value.
        score: f32,
    },
    /// Lists kept with different `k` or ends cannot be merged.
    #[error("cannot merge a {0} with a {1}")]
    Mismatch(String, String),
}

/// The `k` examples at one end of the ranking, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopK {
    k: usize,
    end: End,
    examples: Vec<Example>,
}

impl TopK {
    /// An empty list that will keep `k` examples at `end`.
    pub fn new(k: usize, end: End) -> Self {
        TopK {
            k,
            end,
            examples: Vec::with_capacity(k + 1),
        }
    }

    /// The examples kept, best first.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// Considers `candidate`; it is kept if it ranks among the best `k` so far.
    pub fn offer(&mut self, candidate: Example) -> Result<(), TopKError> {
        if !candidate.score.is_finite() {
            return Err(TopKError::NotFinite {
                image: candidate.image,
                score: candidate.score,
            });
        }
        if self.k == 0 {
            return Ok(());
        }
        let full = self.examples.len() == self.k;
        if full && self.ranks(&candidate, &self.examples[self.k - 1]) != Ordering::Less {
            return Ok(());
        }
        let at = self
            .examples
            .partition_point(|kept| self.ranks(kept, &candidate) == Ordering::Less);
        if self.examples.get(at) == Some(&candidate) {
            return Ok(()); // the same candidate again (a shard seen twice)
        }
        self.examples.insert(at, candidate);
        self.examples.truncate(self.k);
        Ok(())
    }

    /// How many examples this list keeps at most, and at which end.
    pub fn capacity(&self) -> (usize, End) {
        (self.k, self.end)
    }

    /// The same list with every image index moved up by `by`: a shard's list, whose indices count
    /// its own images, in the numbering of the whole probe set. Moving every candidate by the same
    /// amount keeps their order, so merging moved lists equals one pass over the whole set.
    pub fn shifted(&self, by: u32) -> TopK {
        let mut moved = self.clone();
        for example in &mut moved.examples {
            example.image += by;
        }
        moved
    }

    /// Both lists' best `k`: what one pass over both shards' candidates would have kept.
    pub fn merge(mut self, other: &TopK) -> Result<TopK, TopKError> {
        if (self.k, self.end) != (other.k, other.end) {
            return Err(TopKError::Mismatch(self.describe(), other.describe()));
        }
        for &candidate in &other.examples {
            self.offer(candidate)?;
        }
        Ok(self)
    }

    fn describe(&self) -> String {
        let end = match self.end {
            End::Highest => "top",
            End::Lowest => "bottom",
        };
        format!("{end}-{} list", self.k)
    }

    /// `Less` when `a` ranks before `b`.
    fn ranks(&self, a: &Example, b: &Example) -> Ordering {
        let by_score = match self.end {
            End::Highest => b.score.total_cmp(&a.score),
            End::Lowest => a.score.total_cmp(&b.score),
        };
        by_score
            .then(a.image.cmp(&b.image))
            .then(a.y.cmp(&b.y))
            .then(a.x.cmp(&b.x))
    }
}

/// A channel's dataset examples, what a gallery shows beside its visualization: the images that
/// drive it most and least on average, and the places that drive it most.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelExamples {
    /// The images with the highest spatial mean.
    pub top_mean: TopK,
    /// The images with the lowest spatial mean (the negative examples).
    pub bottom_mean: TopK,
    /// The (image, y, x) with the highest value, for receptive-field crops.
    pub top_max: TopK,
}

impl ChannelExamples {
    /// Empty lists of `k` each.
    pub fn new(k: usize) -> Self {
        ChannelExamples {
            top_mean: TopK::new(k, End::Highest),
            bottom_mean: TopK::new(k, End::Lowest),
            top_max: TopK::new(k, End::Highest),
        }
    }

    /// Offers probe image `image`: its spatial `mean` and its `peak` (value at `(y, x)`).
    pub fn offer(&mut self, image: u32, mean: f32, peak: Example) -> Result<(), TopKError> {
        let at_mean = Example {
            score: mean,
            image,
            y: 0,
            x: 0,
        };
        self.top_mean.offer(at_mean)?;
        self.bottom_mean.offer(at_mean)?;
        self.top_max.offer(Example { image, ..peak })
    }

    /// The three lists in their stored order: top by mean, bottom by mean, top by maximum.
    pub fn lists(&self) -> [&TopK; 3] {
        [&self.top_mean, &self.bottom_mean, &self.top_max]
    }

    /// The three lists in the order of [`lists`](Self::lists), to replace.
    pub fn lists_mut(&mut self) -> [&mut TopK; 3] {
        [&mut self.top_mean, &mut self.bottom_mean, &mut self.top_max]
    }

    /// The images any of the three lists holds (with repeats): the pictures a page of this
    /// channel's examples shows.
    pub fn images(&self) -> impl Iterator<Item = u32> + '_ {
        self.lists()
            .into_iter()
            .flat_map(|list| list.examples().iter().map(|e| e.image))
    }

    /// The same lists with every image index moved up by `by` ([`TopK::shifted`]).
    pub fn shifted(&self, by: u32) -> Self {
        ChannelExamples {
            top_mean: self.top_mean.shifted(by),
            bottom_mean: self.bottom_mean.shifted(by),
            top_max: self.top_max.shifted(by),
        }
    }

    /// Both shards' examples, as one pass over both would have kept.
    pub fn merge(self, other: &ChannelExamples) -> Result<Self, TopKError> {
        Ok(ChannelExamples {
            top_mean: self.top_mean.merge(&other.top_mean)?,
            bottom_mean: self.bottom_mean.merge(&other.bottom_mean)?,
            top_max: self.top_max.merge(&other.top_max)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use lucid_testkit::fuzz::Rng;

    use super::*;

    /// Candidates with many ties (scores on a coarse grid), as quantised activations have.
    fn candidates(rng: &mut Rng, n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                score: (rng.below(9) as f32 - 4.0) * 0.5,
                image: i as u32 / 4,
                y: rng.below(3) as u32,
                x: (i % 4) as u32,
            })
            .collect()
    }

    /// The direct form: sort everything, take `k`.
    fn sorted_k(all: &[Example], k: usize, end: End) -> Vec<Example> {
        let probe = TopK::new(k, end);
        let mut all = all.to_vec();
        all.sort_by(|a, b| probe.ranks(a, b));
        all.dedup();
        all.truncate(k);
        all
    }

    fn streamed(all: &[Example], k: usize, end: End) -> TopK {
        let mut top = TopK::new(k, end);
        for &e in all {
            top.offer(e).expect("finite");
        }
        top
    }

    #[test]
    fn streaming_keeps_what_sorting_everything_keeps() {
        let mut rng = Rng::new(1);
        for end in [End::Highest, End::Lowest] {
            for k in [0, 1, 3, 16, 500] {
                let all = candidates(&mut rng, 200);
                assert_eq!(streamed(&all, k, end).examples(), sorted_k(&all, k, end));
            }
        }
    }

    #[test]
    fn shards_merged_in_any_order_or_grouping_equal_one_pass() {
        let mut rng = Rng::new(2);
        for trial in 0..50 {
            let all = candidates(&mut rng, 120);
            let end = if trial % 2 == 0 {
                End::Highest
            } else {
                End::Lowest
            };
            let k = 1 + rng.below(10);
            let whole = streamed(&all, k, end);
            let cuts = {
                let mut cuts: Vec<usize> =
                    (0..rng.below(6)).map(|_| rng.below(all.len())).collect();
                cuts.extend([0, all.len()]);
                cuts.sort_unstable();
                cuts
            };
            let mut shards: Vec<TopK> = cuts
                .windows(2)
                .map(|w| streamed(&all[w[0]..w[1]], k, end))
                .collect();
            // a shuffled order, and one shard delivered twice
            for i in (1..shards.len()).rev() {
                shards.swap(i, rng.below(i + 1));
            }
            shards.push(shards[0].clone());
            let left = shards
                .iter()
                .try_fold(TopK::new(k, end), |acc, s| acc.merge(s))
                .expect("merge");
            let right = shards
                .iter()
                .rev()
                .try_fold(TopK::new(k, end), |acc, s| acc.merge(s))
                .expect("merge");
            assert_eq!(left, whole, "trial {trial}");
            assert_eq!(right, whole, "trial {trial}");
        }
    }

    #[test]
    fn a_non_finite_activation_is_refused_naming_the_image() {
        let mut top = TopK::new(2, End::Highest);
        let nan = Example {
            score: f32::NAN,
            image: 7,
            y: 0,
            x: 0,
        };
        let err = top.offer(nan).expect_err("NaN");
        assert_eq!(
            err.to_string(),
            "activation NaN for probe image 7 is not finite"
        );
        let err = TopK::new(2, End::Highest)
            .merge(&TopK::new(3, End::Lowest))
            .expect_err("different lists");
        assert_eq!(
            err.to_string(),
            "cannot merge a top-2 list with a bottom-3 list"
        );
    }

    #[test]
    fn shards_counting_their_own_images_shifted_and_merged_equal_one_pass() {
        let mut rng = Rng::new(3);
        for trial in 0..30 {
            // candidates of images 0..30, each image's candidates together, as a shard sees them
            let all = candidates(&mut rng, 120);
            let k = 1 + rng.below(8);
            let whole = streamed(&all, k, End::Highest);
            let mut cut = 4 * (1 + rng.below(8)); // a cut between two images
            let mut merged = TopK::new(k, End::Highest);
            let mut first = 0;
            while first < all.len() {
                cut = cut.min(all.len() - first);
                let offset = all[first].image;
                let local: Vec<Example> = all[first..first + cut]
                    .iter()
                    .map(|e| Example {
                        image: e.image - offset,
                        ..*e
                    })
                    .collect();
                let shard = streamed(&local, k, End::Highest);
                merged = merged.merge(&shard.shifted(offset)).expect("merge");
                first += cut;
            }
            assert_eq!(merged, whole, "trial {trial}");
        }
    }
}
