//! Where the repository's test fixtures are, for every crate's tests: one definition of the layout
//! of `fixtures/` (see `fixtures/README.md`).

use std::path::PathBuf;

/// The workspace root: the parent of the crate under test (every crate sits one level below it).
///
/// Read at run time from the `CARGO_MANIFEST_DIR` that cargo sets for the test binary it runs. This
/// crate's compile-time value would name whichever checkout compiled it: checkouts that share one
/// target folder (`CARGO_TARGET_DIR` outside the checkout, as the Makefile sets it) share this
/// crate's build, since cargo hashes workspace members by their relative path.
pub fn workspace_root() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir.parent().map(PathBuf::from).unwrap_or_default()
}

/// `fixtures/` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("fixtures")
}

/// `fixtures/alexnet_small/`: the small two-seed `alexnet_v2` (TF checkpoints and safetensors).
pub fn small_root() -> PathBuf {
    fixtures_dir().join("alexnet_small")
}

/// The TF checkpoint prefix of a small fixture seed (`training_seed_01` is one shard, `_02` two).
pub fn small_prefix(seed: &str) -> PathBuf {
    small_root().join(seed).join("model.ckpt_epoch89")
}

/// The folder of the TorchScript exports that `scripts/exports.sh` writes before `cargo test`
/// (`make test` sets `LUCID_EXPORTS_DIR`), or `None` when they were not made: the test is then
/// reported as skipped, or fails under `CI=true` ([`crate::skip_or_fail`]).
pub fn exports_dir() -> Option<PathBuf> {
    match std::env::var_os("LUCID_EXPORTS_DIR").map(PathBuf::from) {
        Some(dir) if dir.join("resnet18/descriptor.json").is_file() => Some(dir),
        _ => {
            crate::skip_or_fail(
                "the TorchScript exports are missing",
                "run scripts/exports.sh DIR and set LUCID_EXPORTS_DIR=DIR (make test does both)",
            );
            None
        }
    }
}

/// The probe photographs `scripts/exports.sh` writes beside the exports (scikit-image's public-domain
/// and CC0 photographs, licences in `probe-photos.licences.json`), or `None` as [`exports_dir`].
pub fn probe_photos_dir() -> Option<PathBuf> {
    let dir = exports_dir()?.join("probe-photos");
    if dir.join("astronaut.jpg").is_file() {
        return Some(dir);
    }
    crate::skip_or_fail(
        "the probe photographs are missing from the exports",
        "run scripts/exports.sh DIR again (it writes DIR/probe-photos)",
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_fixture_prefix_has_its_index() {
        let index = small_prefix("training_seed_01").with_extension("ckpt_epoch89.index");
        assert!(index.is_file(), "{}", index.display());
    }
}
