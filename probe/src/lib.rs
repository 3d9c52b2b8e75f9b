//! The pure parts of the probe pass (dataset examples, issue 15): what a worker does to each probe
//! image before the network sees it, and what it keeps of each channel's activations.
//!
//! - [`image_file`]: a probe file decoded (JPEG or PNG, any size, colour or greyscale), a file that is
//!   not an image, is cut short or claims an enormous size refused with a [`ProbeImageError`] naming
//!   it, before its pixels are allocated.
//! - [`prepare`]: centre crop and resize to the network's input side, as an RGB tensor's values in
//!   [0, 1]; the network's own range and normalisation are its description's input mapping.
//! - [`top_k`]: the best (and worst) k examples of a channel, kept while streaming through a shard and
//!   merged across shards; the merge is associative and commutative, so shards can finish in any
//!   order and a redone shard changes nothing.
//! - [`shard`]: one probe task's lists and mean rows as `.safetensors` bytes, read back checked.
//! - [`stimuli`]: generated gratings and colour fields with a known answer on the demo model.
//! - [`output`]: a model's merged output (`probe.json`, examples with crops, the means matrix), the
//!   same for `lucid-worker probe` and the coordinator's merge.
//!
//! No libtorch, no I/O beyond the bytes given: the worker and the coordinator share it.

pub mod image_file;
pub mod output;
pub mod prepare;
pub mod shard;
pub mod stimuli;
pub mod top_k;

pub use image_file::{DecodeLimits, ProbeImageError, decode};
pub use output::Skipped;
pub use prepare::{Prepared, Preprocessing, prepare, prepared_pixels, preview_jpeg};
pub use top_k::{ChannelExamples, Example, TopK};
