//! Where the workspace and its fixture checkpoints are (the layout is `lucid_testkit::fixtures`).

use std::path::PathBuf;

pub use lucid_testkit::fixtures::workspace_root;

/// The checkpoint folder of a fixture seed (`training_seed_01` or `training_seed_02`).
pub fn fixture_model(seed: &str) -> PathBuf {
    lucid_testkit::fixtures::small_root().join(seed)
}
