//! Where the workspace and its fixture checkpoints are.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in a workspace folder")
        .to_path_buf()
}

/// The checkpoint folder of a fixture seed (`training_seed_01` or `training_seed_02`).
pub fn fixture_model(seed: &str) -> PathBuf {
    workspace_root().join("fixtures/alexnet_small").join(seed)
}
