//! The cross-seed matching of a run (issue 16, docs/matching.md) as the pages show it: which layers
//! have `match/layers/{layer}.json`, each read once before the build writes anything (its page
//! count is planned with the other keys).
//!
//! A layer whose matching cannot be read is shown with the reason on the matching index; it never
//! fails the build.

use std::collections::BTreeSet;

use lucid_match::LayerMatch;

use crate::{GalleryError, GallerySource, paths};

/// A matched layer's line on the matching index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MatchLine {
    /// The mean matched correlation.
    pub mean: f64,
    /// Universal reference channels.
    pub universal: usize,
    /// Channels unique to one seed.
    pub unique: usize,
    /// Probe images correlated over.
    pub images: usize,
}

impl MatchLine {
    pub(crate) fn of(m: &LayerMatch) -> Self {
        MatchLine {
            mean: m.mean_matched_correlation,
            universal: m.reference_rows.iter().filter(|r| r.universal).count(),
            unique: m.unique.len(),
            images: m.images,
        }
    }
}

/// The layers with a stored matching, from the listing, in natural order.
pub(crate) fn matched_layers(keys: &[String]) -> Vec<String> {
    let layers: BTreeSet<String> = keys
        .iter()
        .filter(|k| lucid_proto::keys::is_match_key(k))
        .filter_map(|k| k.strip_prefix(&paths::match_layers_prefix()))
        .filter_map(|f| f.strip_suffix(".json"))
        .map(str::to_owned)
        .collect();
    let mut layers: Vec<String> = layers.into_iter().collect();
    layers.sort_by(|a, b| crate::inventory::natural_cmp(a, b));
    layers
}

/// `layer`'s matching, or why it cannot be shown.
pub(crate) fn read_layer(
    source: &dyn GallerySource,
    layer: &str,
) -> Result<Result<LayerMatch, String>, GalleryError> {
    let key = paths::match_layer_json(layer);
    let bytes = source.read(&key)?;
    Ok(serde_json::from_slice(&bytes).map_err(|e| format!("{key}: {e}")))
}

/// Reference rows per matching page: a 4,096-channel layer of ten seeds is 16 pages of 256 rows
/// (each row a tile and an example per seed), not one page of 80,000 pictures.
pub(crate) const ROWS_PER_PAGE: usize = 256;

/// A matched layer as read: its matching, or why it could not be read.
pub(crate) type LayerRead = (String, Result<LayerMatch, String>);

/// Every layer of `matched` read once, before anything is written.
pub(crate) fn read_layers(
    source: &dyn GallerySource,
    matched: &[String],
) -> Result<Vec<LayerRead>, GalleryError> {
    matched
        .iter()
        .map(|layer| Ok((layer.clone(), read_layer(source, layer)?)))
        .collect()
}

/// The pages a layer's matching takes (one for an unreadable one, whose page is not written).
pub(crate) fn page_count(read: &Result<LayerMatch, String>) -> usize {
    match read {
        Ok(m) => m.reference_rows.len().div_ceil(ROWS_PER_PAGE).max(1),
        Err(_) => 1,
    }
}

/// The best-match correlation of every channel of every seed with every other seed (both ways of
/// every pair's semi-matching): the histogram's values.
pub(crate) fn best_match_correlations(m: &LayerMatch) -> Vec<f32> {
    m.pairs
        .iter()
        .flat_map(|p| p.semi_matching.iter().chain(&p.semi_matching_back))
        .map(|p| p.correlation)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_layers_come_from_the_listing_in_natural_order() {
        let keys: Vec<String> = [
            "match/summary.json",
            "match/layers/conv10.json",
            "match/layers/conv10.csv",
            "match/layers/conv2.json",
            "match/layers/x/y.json",
            "s1/conv2/0000.png",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(matched_layers(&keys), ["conv2", "conv10"]);
    }
}
