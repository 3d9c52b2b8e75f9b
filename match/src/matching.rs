//! Three ways to pair the channels of network `a` with those of network `b` from their correlation
//! matrix (rows: `a`'s channels, columns: `b`'s), each pair reported with its quality, the matched
//! correlation:
//!
//! - [`assignment`]: one-to-one, maximising the total correlation (Li et al., ICLR 2016, "bipartite
//!   matching"), solved by Jonker–Volgenant (`lapjv`); layers of different widths match
//!   `min(width)` pairs, the rest of the wider layer unmatched;
//! - [`semi_matching`]: each of `a`'s channels with its best partner in `b`, many-to-one allowed
//!   (Li et al.'s "semi-matching");
//! - [`best_buddies`]: the pairs each among the other's `k` best (Dravid, Gandelsman, Efros and
//!   Shocher, "Rosetta Neurons", ICCV 2023: mutual nearest neighbours, "best buddies").
//!
//! Ties are broken by the lower channel index wherever a ranking decides (semi-matching, best
//! buddies); the assignment returns one of the optimal assignments.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::MatchError;

/// A channel of `a` paired with a channel of `b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The channel of `a` (a row).
    pub a: usize,
    /// The channel of `b` (a column).
    pub b: usize,
    /// Their correlation: the pair's quality.
    pub correlation: f32,
}

/// The one-to-one pairing of rows and columns of `corr` with the largest total correlation, by
/// row; `min(rows, cols)` pairs. A non-finite correlation is refused.
pub fn assignment(corr: ArrayView2<'_, f32>) -> Result<Vec<Pair>, MatchError> {
    let (rows, cols) = corr.dim();
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    if let Some(((i, j), _)) = corr.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(MatchError::NotFinite { a: i, b: j });
    }
    // square: the narrower side gets dummy rows or columns of cost 0, which take the wider side's
    // leftover channels without changing which real pairing is best
    let n = rows.max(cols);
    let mut cost = Array2::<f64>::zeros((n, n));
    for ((i, j), &r) in corr.indexed_iter() {
        cost[[i, j]] = -f64::from(r);
    }
    let (row_to_col, _) =
        lapjv::lapjv(&cost).map_err(|e| MatchError::Assignment(format!("{e:?}")))?;
    Ok(row_to_col
        .into_iter()
        .enumerate()
        .filter(|&(i, j)| i < rows && j < cols)
        .map(|(a, b)| Pair {
            a,
            b,
            correlation: corr[[a, b]],
        })
        .collect())
}

/// Each row's best column (ties: the lower column).
pub fn semi_matching(corr: ArrayView2<'_, f32>) -> Vec<Pair> {
    corr.rows()
        .into_iter()
        .enumerate()
        .filter_map(|(a, row)| {
            let (b, &correlation) = row.iter().enumerate().fold(
                None,
                |best: Option<(usize, &f32)>, (j, v)| match best {
                    Some((_, bv)) if bv >= v => best,
                    _ => Some((j, v)),
                },
            )?;
            Some(Pair { a, b, correlation })
        })
        .collect()
}

/// The pairs `(a, b)` where `b` is among row `a`'s `k` best columns and `a` among column `b`'s `k`
/// best rows, by row then column.
pub fn best_buddies(corr: ArrayView2<'_, f32>, k: usize) -> Vec<Pair> {
    let (rows, cols) = corr.dim();
    let row_best: Vec<Vec<usize>> = (0..rows)
        .map(|i| top(corr.row(i).iter().copied(), k))
        .collect();
    let col_best: Vec<Vec<usize>> = (0..cols)
        .map(|j| top(corr.column(j).iter().copied(), k))
        .collect();
    let mut pairs = Vec::new();
    for (a, best) in row_best.iter().enumerate() {
        let mut mine: Vec<usize> = best
            .iter()
            .copied()
            .filter(|&b| col_best[b].contains(&a))
            .collect();
        mine.sort_unstable();
        pairs.extend(mine.into_iter().map(|b| Pair {
            a,
            b,
            correlation: corr[[a, b]],
        }));
    }
    pairs
}

/// The indices of the `k` largest values, largest first (ties: the lower index).
fn top(values: impl Iterator<Item = f32>, k: usize) -> Vec<usize> {
    let mut indexed: Vec<(usize, f32)> = values.enumerate().collect();
    indexed.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    indexed.into_iter().take(k).map(|(i, _)| i).collect()
}

/// The mean of the pairs' correlations (0 for none).
pub fn mean_correlation(pairs: &[Pair]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    pairs.iter().map(|p| f64::from(p.correlation)).sum::<f64>() / pairs.len() as f64
}

/// `corr` with rows and columns swapped: `b`'s view of the same pairs.
pub fn transposed(corr: ArrayView2<'_, f32>) -> Array2<f32> {
    corr.t().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// The best total over every injective map of the rows into the columns (rows ≤ cols).
    fn brute_force_best(corr: ArrayView2<'_, f32>) -> f64 {
        fn go(corr: ArrayView2<'_, f32>, row: usize, used: &mut Vec<bool>) -> f64 {
            if row == corr.nrows() {
                return 0.0;
            }
            let mut best = f64::NEG_INFINITY;
            for j in 0..corr.ncols() {
                if !used[j] {
                    used[j] = true;
                    best = best.max(f64::from(corr[[row, j]]) + go(corr, row + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(corr, 0, &mut vec![false; corr.ncols()])
    }

    #[test]
    fn the_assignment_finds_a_hidden_permutation_and_the_best_total() {
        // 0 ↔ 2, 1 ↔ 0, 2 ↔ 1 strongly; greedy row order would take (0, 0) = 0.6 first
        let corr = array![[0.6, 0.1, 0.9], [0.95, 0.2, 0.7], [0.3, 0.8, 0.1]];
        let pairs = assignment(corr.view()).unwrap();
        let map: Vec<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
        assert_eq!(map, [(0, 2), (1, 0), (2, 1)]);
        let total: f64 = pairs.iter().map(|p| f64::from(p.correlation)).sum();
        assert!((total - brute_force_best(corr.view())).abs() < 1e-6);
        assert!((mean_correlation(&pairs) - total / 3.0).abs() < 1e-9);
    }

    #[test]
    fn rectangular_layers_match_the_narrower_width_in_both_orientations() {
        // 2 channels against 4: each of the two finds its partner, two of the four stay unmatched
        let corr = array![[0.1, 0.2, 0.9, 0.3], [0.8, 0.1, 0.85, 0.0]];
        let pairs = assignment(corr.view()).unwrap();
        let map: Vec<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
        // (0, 2) + (1, 0) = 1.7 beats (1, 2) + (0, 3) = 1.15
        assert_eq!(map, [(0, 2), (1, 0)]);
        assert!(
            (pairs.iter().map(|p| f64::from(p.correlation)).sum::<f64>()
                - brute_force_best(corr.view()))
            .abs()
                < 1e-6
        );
        let wide = transposed(corr.view());
        let back = assignment(wide.view()).unwrap();
        let map: Vec<(usize, usize)> = back.iter().map(|p| (p.a, p.b)).collect();
        assert_eq!(map, [(0, 1), (2, 0)]);
    }

    #[test]
    fn ties_give_an_optimal_assignment_and_rankings_prefer_the_lower_index() {
        let corr = array![[0.5, 0.5], [0.5, 0.5]];
        let pairs = assignment(corr.view()).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_ne!(pairs[0].b, pairs[1].b, "one-to-one");
        let semi = semi_matching(corr.view());
        assert_eq!(
            semi.iter().map(|p| p.b).collect::<Vec<_>>(),
            [0, 0],
            "many-to-one, the lower column on a tie"
        );
        // each row's best is column 0 and column 0's best is row 0: one best-buddy pair at k = 1
        let buddies = best_buddies(corr.view(), 1);
        assert_eq!(
            buddies.iter().map(|p| (p.a, p.b)).collect::<Vec<_>>(),
            [(0, 0)]
        );
    }

    #[test]
    fn semi_matching_allows_many_to_one_and_buddies_are_mutual() {
        // rows 0 and 1 both like column 0 best; column 0 likes row 1 best
        let corr = array![[0.7, 0.6, 0.1], [0.9, 0.2, 0.3], [0.1, 0.2, 0.4]];
        let semi: Vec<(usize, usize)> = semi_matching(corr.view())
            .iter()
            .map(|p| (p.a, p.b))
            .collect();
        assert_eq!(semi, [(0, 0), (1, 0), (2, 2)]);
        let k1: Vec<(usize, usize)> = best_buddies(corr.view(), 1)
            .iter()
            .map(|p| (p.a, p.b))
            .collect();
        assert_eq!(k1, [(1, 0), (2, 2)]);
        // at k = 2 more pairs are among each other's two best; (2, 1) is not: column 1's two
        // best are rows 0 and 1 (row 1 before row 2 on their tie at 0.2)
        let k2: Vec<(usize, usize)> = best_buddies(corr.view(), 2)
            .iter()
            .map(|p| (p.a, p.b))
            .collect();
        assert_eq!(k2, [(0, 0), (0, 1), (1, 0), (1, 2), (2, 2)]);
    }

    #[test]
    fn a_non_finite_correlation_is_refused_naming_the_pair() {
        let corr = array![[0.1, f32::NAN], [0.2, 0.3]];
        assert!(matches!(
            assignment(corr.view()),
            Err(MatchError::NotFinite { a: 0, b: 1 })
        ));
        assert!(
            assignment(Array2::<f32>::zeros((0, 3)).view())
                .unwrap()
                .is_empty()
        );
    }
}
