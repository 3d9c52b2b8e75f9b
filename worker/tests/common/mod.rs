//! Shared helpers of the worker's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The small two-seed `alexnet_v2` fixture root.
pub fn small_root() -> PathBuf {
    fixtures().join("alexnet_small")
}

/// The TF checkpoint prefix of one fixture seed.
pub fn small_prefix(seed: &str) -> PathBuf {
    small_root().join(seed).join("model.ckpt_epoch89")
}

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
