//! Networks described as data, so that lucid-sweep can sweep any CNN and not one architecture.
//!
//! A [`Description`] (a TOML file, or a built-in one such as [`builtin::alexnet_v2`]) lists the
//! nodes of a network — convolutions, pools, activations, batch norms, joins — and the taps one may
//! visualize. [`Network::resolve`] checks it against a model file's weights without libtorch: the
//! coordinator plans from it (each tap's width and smallest input), and the worker builds its forward
//! pass from the same graph.
//!
//! - [`description`]: the file format.
//! - [`graph`]: names resolved, nodes sorted, cycles refused.
//! - [`shape`]: channels from the weights, sides from an input size (TF SAME/VALID, PyTorch padding).
//! - [`network`]: a description resolved against its weights.
//! - [`receptive`]: which input pixels one output position of a tap reads (its receptive field).
//! - [`builtin`]: the descriptions shipped with lucid-sweep.
//! - [`torchscript`]: the descriptor of a PyTorch model exported by `lucid-export`.
//! - [`error`]: one error type naming the node, tensor or tap at fault.

pub mod builtin;
pub mod description;
pub mod error;
pub mod graph;
pub mod network;
pub mod receptive;
pub mod shape;
pub mod torchscript;

pub use description::Description;
pub use error::NetworkError;
pub use network::{Network, WeightShapes};
pub use receptive::{Axis, ReceptiveField};
