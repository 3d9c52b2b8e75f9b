//! The lucid-sweep worker: `alexnet_v2` in libtorch and lucid's feature-visualization engine.
//!
//! **Architecture Invariant:** this is the only crate of the workspace that links libtorch (`tch`).
//! Tensors never cross an `await`: libtorch work runs on dedicated threads.
//!
//! # Layout
//! - [`device`]: device choice, and loading libtorch's CUDA backend at start-up.
//! - [`model`]: the network, weights from [`lucid_checkpoint`].
//! - [`open`]: the model a one-off command's `--checkpoint` and `--network` name.
//! - [`layout`]: channels-last and space-to-depth, speed-ups that keep a network's sums.
//! - [`described`]: any network described as data ([`lucid_network`]), evaluated node by node.
//! - [`scripted`]: a PyTorch model exported by `lucid-export`, one TorchScript module per layer.
//! - [`render`]: the engine (parameterisation, transforms, objectives, optimisation), no I/O.
//! - [`encode`]: PNG encoding.
//! - [`pipeline`]: received task → render thread → PNG → storage → acknowledgement, shared by
//!   `serve` and `local`.
//! - [`local`]: a whole sweep in one process (in-process queue, local folder) and its gallery.
//! - [`serve`]: the distributed worker (RabbitMQ + S3, metrics and health endpoints).
//! - [`probe`]: the probe pass's forward step: a batch of probe images, every layer's top-k examples
//!   and spatial means.
//! - [`synthetic`]: model files with known first-layer filters (ground truth, demos).
//! - [`bench`]: `lucid-worker bench`, throughput and phase breakdown, and the rates file `plan` reads.
//! - [`inspect`]: `lucid-worker inspect`, each model's layer table (text or JSON).
//! - [`cli`]: the one-off commands (`render`, `demo-models`).
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod described;
pub mod device;
pub mod encode;
pub mod inspect;
pub mod layout;
pub mod local;
pub mod model;
pub mod open;
pub mod pipeline;
pub mod precision;
pub mod probe;
pub mod render;
pub mod runner;
pub mod scripted;
pub mod serve;
pub mod synthetic;
