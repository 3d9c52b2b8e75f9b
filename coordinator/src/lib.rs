//! `lucid-coordinator`: plans, submits and tracks lucid-sweep runs.
//!
//! The binary (`main.rs`) only parses arguments, sets up tracing and calls [`commands`]; everything
//! else lives here so that tests can call it directly.
//!
//! # Layout
//!
//! - [`spec`]: loading the sweep spec with `--set` overrides, refusing credentials on the command line.
//! - [`models`]: each model's checkpoint as a local path, downloading S3 models into a cache (shared
//!   with the worker).
//! - [`plan`]: layer widths from the real checkpoints, the run's [`lucid_proto::Plan`], the report.
//! - [`estimate`]: GPU time from the engine's measured images per second per layer (a rates file
//!   from `lucid-worker bench`, or the shipped H200 measurement).
//! - [`progress`]: what one listing of a run's prefix says (done = sidecar stored).
//! - [`probe`]: the probe pass — the probe set's index, the missing shards' tasks, the merge of
//!   each model's shards into its dataset examples and means matrices.
//! - [`matching`]: which channels recur across seeds, from the probe pass's stored means.
//! - [`submit`]: manifest check and publishing the missing tasks.
//! - [`status`]: done / expected, queue depths, rate and ETA.
//! - [`verify`]: the pure output checker and its fetching wrapper.
//! - [`metrics`], [`watch`]: the Prometheus exporter (served by [`lucid_telemetry::serve`]).
//! - [`gallery`]: the run's static HTML gallery, built by [`lucid_gallery`] from the stored objects.
//! - [`services`]: connecting to the broker and the store named by a spec.
//! - [`commands`]: one function per subcommand, as the binary runs them.
//! - [`output`]: the commands' `--json` documents, one serde type per command (the schema).
//!
//! **Architecture Invariant:** credentials (the AMQP URI's password, S3 keys) reach this crate only
//! through the environment or files named by the spec, and are never printed or logged.
#![warn(missing_docs)]

pub mod commands;
pub mod error;
pub mod estimate;
pub mod gallery;
pub mod matching;
pub mod metrics;
pub mod models;
pub mod output;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod services;
pub mod spec;
pub mod status;
pub mod submit;
pub mod verify;
pub mod watch;

pub use error::{Error, Result};
