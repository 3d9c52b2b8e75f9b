//! Shared helpers of the worker's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use lucid_worker::model::AlexNet;
use tch::Tensor;

// each test binary uses its own part of this module (as with `dead_code` above)
#[allow(unused_imports)]
pub use lucid_testkit::fixtures::{fixtures_dir as fixtures, small_prefix, small_root};

/// The `lucid-worker` binary built for these tests.
pub fn worker_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lucid-worker"))
}

/// Runs `lucid-worker` with `args`, returning (success, stdout, stderr).
pub fn run_worker(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(worker_bin())
        .args(args)
        .output()
        .expect("failed to start lucid-worker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `lucid-worker local` on `spec` again and asserts that it resumes: all `stored` results are
/// found in the store and nothing is rendered twice.
pub fn assert_rerun_renders_nothing(spec: &str, stored: u64) {
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", spec, "--json", "--no-gallery"]);
    assert!(ok, "{stderr}");
    let again: serde_json::Value = serde_json::from_str(&stdout).expect("summary JSON");
    assert_eq!(
        (again["already_stored"].as_u64(), again["rendered"].as_u64()),
        (Some(stored), Some(0)),
        "{again}"
    );
}

/// Runs `lucid-worker bench` with `args` and then the whitespace-separated `flags`, and returns its
/// report (`--json` is added).
pub fn run_bench(args: &[&str], flags: &str) -> serde_json::Value {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    all.extend(flags.split_whitespace());
    let (ok, stdout, stderr) = run_worker(&all);
    assert!(ok, "bench {all:?} failed: {stderr}");
    serde_json::from_str(&stdout).expect("bench JSON")
}

/// `[B, 3, H, W]` float images from 8-bit RGB buffers.
pub fn to_tensor(images: &[Vec<u8>], size: usize) -> Tensor {
    let flat: Vec<f32> = images
        .iter()
        .flatten()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    Tensor::from_slice(&flat)
        .view([images.len() as i64, size as i64, size as i64, 3])
        .permute([0, 3, 1, 2])
        .contiguous()
}

/// The mean over pairs of `images` of the cosine similarity of their `layer` Gram matrices (the
/// quantity lucid's diversity term penalises), computed here from the saved 8-bit images.
pub fn mean_gram_cosine(model: &AlexNet, layer: &str, images: &[Vec<u8>], size: usize) -> f64 {
    let _guard = tch::no_grad_guard();
    let target = model.layer_index(layer).expect("layer");
    let acts = model.forward_to(&to_tensor(images, size), target);
    let (b, c) = (acts.size()[0], acts.size()[1]);
    let flat = acts.reshape([b, c, -1]);
    let grams = flat.matmul(&flat.transpose(1, 2)).reshape([b, -1]);
    let grams = &grams / grams.norm_scalaropt_dim(2, [1].as_slice(), true);
    let cosines = grams.matmul(&grams.transpose(0, 1));
    let n = images.len();
    let pairs: Vec<f64> = (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .map(|(i, j)| cosines.double_value(&[i as i64, j as i64]))
        .collect();
    pairs.iter().sum::<f64>() / pairs.len() as f64
}
