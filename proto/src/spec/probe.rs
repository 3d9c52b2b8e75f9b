//! The `[probe]` section: the probe images whose dataset examples a run computes beside its renders
//! (issue 15, docs/dataset-examples.md). Absent, a run probes nothing and its spec, manifest and
//! tasks are what they were before the section existed.

use serde::{Deserialize, Serialize};

use super::error::{InvalidField, check_range};
use super::models::ModelLocation;

/// Examples kept per list by default (lucid's and Microscope's grids show 9).
pub const DEFAULT_K: u32 = 9;
/// Probe images per task by default: a shard's task names each file, and 128 names of typical
/// length keep it far below `queue.max_message_bytes` while one task still fills a device batch
/// several times over.
pub const DEFAULT_SHARD: u32 = 128;

/// `[probe]`: where the probe set is and what to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// The probe set: a local folder or an `s3://bucket/prefix`; every file below it (sub-folders
    /// included, hidden files not), in key order.
    pub images: ModelLocation,
    /// Examples per list (top-k by mean, bottom-k by mean, top-k by maximum).
    #[serde(default = "default_k")]
    pub k: u32,
    /// The side the images are prepared at (centre square, bilinear): the networks' input side.
    #[serde(default = "default_side")]
    pub side: u32,
    /// Probe images per task.
    #[serde(default = "default_shard")]
    pub shard: u32,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    pub batch: u32,
}

fn default_k() -> u32 {
    DEFAULT_K
}

fn default_side() -> u32 {
    224
}

fn default_shard() -> u32 {
    DEFAULT_SHARD
}

fn default_batch() -> u32 {
    32
}

impl ProbeSection {
    /// The section with every default, for the probe set at `images`.
    pub fn at(images: ModelLocation) -> Self {
        ProbeSection {
            images,
            k: DEFAULT_K,
            side: default_side(),
            shard: DEFAULT_SHARD,
            batch: default_batch(),
        }
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), InvalidField> {
        check_range("probe.k", self.k, 1, 100)?;
        check_range("probe.side", self.side, 16, 4096)?;
        check_range("probe.shard", self.shard, 1, 4096)?;
        check_range("probe.batch", self.batch, 1, 1024)?;
        Ok(())
    }
}
