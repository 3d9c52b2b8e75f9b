//! Shared helpers of the worker's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

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
