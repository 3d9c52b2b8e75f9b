//! Lucid's feature visualization in libtorch, batched across channels. No I/O happens here: callers
//! load the model and store the images.
//!
//! - [`param`]: FFT / pixel parameterisation with decorrelated colour and sigmoid.
//! - [`transform`]: lucid's standard transformation robustness.
//! - [`objective`]: channel, neuron, negative channel, diversity.
//! - [`seeding`]: per-channel and per-layer random streams.
//! - [`engine`]: the optimisation loop over a batch of channels.
//! - [`net`]: what the engine needs of a network ([`net::RenderNet`]), for the native `alexnet_v2`.

pub mod engine;
pub mod net;
pub mod objective;
pub mod param;
pub mod seeding;
pub mod transform;

pub use engine::{
    BatchOutput, Diversity, RenderError, RenderedImage, Settings, benchmark_images, render_batch,
    render_batch_until,
};
pub use objective::Objective;
pub use param::ParamKind;
pub use transform::TransformSet;
