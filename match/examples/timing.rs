//! Times one layer's matching at a given size with random activations: the correlation matrices,
//! the assignments and the consistency, as `match_layer` reports them.
//!
//! ```sh
//! cargo run --release -p lucid-match --example timing -- CHANNELS IMAGES SEEDS
//! ```

use lucid_match::{MatchOptions, SeedMeans, match_layer};
use ndarray::Array2;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("CHANNELS IMAGES SEEDS as numbers"))
        .collect();
    let (channels, images, seeds) = match args[..] {
        [c, i, s] => (c, i, s),
        _ => (4096, 5000, 2),
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let layers: Vec<Array2<f32>> = (0..seeds)
        .map(|_| {
            Array2::from_shape_fn((images, channels), |_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32
            })
        })
        .collect();
    let names: Vec<String> = (0..seeds).map(|s| format!("seed{s}")).collect();
    let views: Vec<SeedMeans<'_>> = layers
        .iter()
        .zip(&names)
        .map(|(m, n)| SeedMeans {
            model: n,
            means: m.view(),
        })
        .collect();
    let m = match_layer("layer", &views, MatchOptions::recommended()).expect("match");
    let pairs = seeds * (seeds - 1) / 2;
    println!(
        "{channels} channels x {images} images x {seeds} seeds ({pairs} pairs, {} threads): {:?}",
        std::thread::available_parallelism().map_or(1, usize::from),
        m.timing
    );
}
