//! A layer with a known answer: seed b is seed a with its channels permuted and a little noise, seed
//! c is unrelated. The assignment recovers the permutation exactly, every channel of a is
//! universal between a and b only when c is left out, c's channels are unique, and the consistency
//! of a with b is near 1 while c's is clearly lower.

use lucid_match::{MatchOptions, SeedMeans, match_layer};
use ndarray::Array2;

/// Deterministic uniform values in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `images` × `channels` activations: each channel a sum of two random image features, rectified.
fn layer(images: usize, channels: usize, rng: &mut Rng) -> Array2<f32> {
    let features = Array2::from_shape_fn((images, 8), |_| rng.next());
    let weights = Array2::from_shape_fn((8, channels), |_| rng.next() * 2.0 - 1.0);
    features.dot(&weights).mapv(|v| v.max(0.0) + 0.01 * v)
}

/// A permutation of `n` from the generator.
fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next() * (i + 1) as f32) as usize % (i + 1);
        p.swap(i, j);
    }
    p
}

#[test]
fn a_permuted_noisy_copy_is_recovered_exactly_and_an_unrelated_seed_is_not() {
    let mut rng = Rng(0x5eed);
    let (images, channels) = (120, 48);
    let a = layer(images, channels, &mut rng);
    let perm = permutation(channels, &mut rng);
    // b's channel perm[c] is a's channel c, plus 3% noise
    let mut b = Array2::<f32>::zeros((images, channels));
    for i in 0..images {
        for c in 0..channels {
            let scale = a.column(c).iter().fold(0.0f32, |m, v| m.max(v.abs()));
            b[[i, perm[c]]] = a[[i, c]] + 0.03 * scale * (rng.next() - 0.5);
        }
    }
    let c = layer(images, channels + 8, &mut Rng(0xdead)); // wider, unrelated
    let seeds = [
        SeedMeans {
            model: "a",
            means: a.view(),
        },
        SeedMeans {
            model: "b",
            means: b.view(),
        },
        SeedMeans {
            model: "c",
            means: c.view(),
        },
    ];
    let mut options = MatchOptions::recommended();
    options.unique_below = 0.9;
    let m = match_layer("conv3", &seeds, options).expect("match");
    assert_eq!(m.models, ["a", "b", "c"]);

    let ab = &m.pairs[0];
    assert_eq!((ab.a.as_str(), ab.b.as_str()), ("a", "b"));
    for p in &ab.assignment {
        assert_eq!(p.b, perm[p.a], "channel {} of a", p.a);
        assert!(p.correlation > 0.99, "{p:?}");
    }
    assert_eq!(ab.assignment.len(), channels);
    // the semi-matching and the best buddies find the same pairs here
    assert!(ab.semi_matching.iter().all(|p| p.b == perm[p.a]));
    assert_eq!(ab.best_buddies.len(), channels);

    // a against the unrelated, wider c: all of a matched, 8 of c left over, clearly worse
    let ac = &m.pairs[1];
    assert_eq!(ac.assignment.len(), channels);
    assert!(
        ab.mean_assigned > 0.99 && ac.mean_assigned < ab.mean_assigned - 0.05,
        "matched: a-b {:.3}, a-c {:.3}",
        ab.mean_assigned,
        ac.mean_assigned
    );
    // reference rows: every channel has its b partner; none is universal across all three seeds
    // unless c happens to agree, and those that are universal are consistent in every pair
    assert_eq!(m.reference_rows.len(), channels);
    for row in &m.reference_rows {
        let partner = row.partners[1].expect("b partner");
        assert_eq!(partner.channel, perm[row.channel]);
        assert!(row.partners[2].is_some());
    }
    // with a threshold of 0.9 no channel of a or b is unique (each has its copy), c's are
    let unique_seeds: std::collections::BTreeSet<usize> = m.unique.iter().map(|u| u.seed).collect();
    assert_eq!(unique_seeds, [2].into());
    // the consistency of a with b is near 1, with c lower
    let r = &m.consistency.r;
    assert!(r[0][1] > 0.99, "{r:?}");
    assert!(
        r[0][2] < r[0][1] - 0.05 && r[1][2] < r[0][1] - 0.05,
        "{r:?}"
    );
    assert_eq!(m.consistency.images, images);
    // the CSV holds one row per pair of every method
    let csv = m.csv();
    assert!(csv.starts_with("method,a_model,a_channel,b_model,b_channel,correlation\n"));
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("assignment,a,"))
            .count(),
        2 * channels
    );
}

#[test]
fn two_seeds_that_are_copies_make_every_channel_universal() {
    let mut rng = Rng(7);
    let a = layer(60, 10, &mut rng);
    let seeds = [
        SeedMeans {
            model: "s1",
            means: a.view(),
        },
        SeedMeans {
            model: "s2",
            means: a.view(),
        },
    ];
    let m = match_layer("fc6", &seeds, MatchOptions::recommended()).expect("match");
    assert!(m.reference_rows.iter().all(|r| r.universal));
    assert!(m.unique.is_empty());
    assert!((m.mean_matched_correlation - 1.0).abs() < 1e-5);
    let bad = MatchOptions {
        reference: 2,
        ..MatchOptions::recommended()
    };
    assert!(match_layer("fc6", &seeds, bad).is_err());
}
