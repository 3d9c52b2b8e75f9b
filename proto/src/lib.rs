//! The shared vocabulary of lucid-sweep: the wire contract between coordinator and workers.
//!
//! **Architecture Invariant:** this crate does no I/O and uses no lapin, S3 or tch.
//! The one exception is [`SweepSpec::load`], which reads the spec file and the environment through the
//! `config` crate; everything else is pure functions over values, so nothing here has I/O failures to
//! handle and every rule can be unit-tested.
//!
//! **Architecture Invariant:** the task message ([`task`]), the result sidecar ([`result`]), the run
//! manifest ([`manifest`]), the dead-letter report ([`dead_letters`]) and the object key layout ([`keys`]) are the wire contract. Changing their shape
//! means bumping a `schema_version`; changing the key layout orphans every stored image.
//!
//! # Layout
//!
//! - [`ids`]: validated identifiers ([`RunId`], [`ModelId`], [`LayerName`]); each is one key segment.
//! - [`spec`]: the sweep spec ([`SweepSpec`]), its sources and precedence, and its validation, one
//!   file per section; [`spec::render_defaults`] is the one table of render defaults and limits.
//! - [`channels`]: channel range lists (`0-7,12`) and their expansion against a layer width.
//! - [`task`]: the task message ([`TaskMessage`]) and its defensive decoding.
//! - [`versioned`]: the one decoder of the versioned JSON documents (task, sidecar, manifest), whose
//!   [`DecodeError`] names the [`Document`] it refused.
//! - [`result`]: the result sidecar ([`ResultSidecar`]) written next to each PNG.
//! - [`keys`]: object keys for images, sidecars and the manifest, and their inverse.
//! - [`manifest`]: the run manifest ([`RunManifest`]).
//! - [`dead_letters`]: the dead-letter report of a run without a broker ([`DeadLetterReport`]).
//! - [`plan`]: pure task enumeration from a spec and layer widths ([`plan::plan`]).
//! - [`rates`]: the rates file, the engine's measured images per second per layer ([`RatesFile`]).
//! - [`geometry`]: the sizes lucid's standard transforms produce (shared by worker and coordinator).
//! - `text_forms`: the serde of values written as text, in one form or several.
//! - [`view`]: the views of a unit (channel, negative, neuron, diversity), each its own task.
#![warn(missing_docs)]

pub mod channels;
pub mod dead_letters;
pub mod geometry;
pub mod ids;
pub mod keys;
pub mod manifest;
pub mod plan;
pub mod probe;
pub mod rates;
pub mod result;
pub mod spec;
pub mod task;
mod text_forms;
pub mod versioned;
pub mod view;
pub mod work;

pub use channels::ChannelSelection;
pub use dead_letters::{DeadLetterReport, DeadProbeTask, DeadTask};
pub use ids::{IdError, LayerName, ModelId, RunId};
pub use keys::{KeyPrefix, Kind, ResultId, StoredKey, parse_key};
pub use manifest::{CheckpointRef, RunManifest};
pub use plan::{LayerWidths, Plan, PlanError};
pub use rates::{RatesError, RatesFile};
pub use result::{CopyOutcome, Provenance, RenderOutcome, ResultSidecar};
pub use spec::{
    InvalidField, ModelEntry, ModelLocation, NetworkRef, RenderSettings, SpecError, SweepSpec,
};
pub use task::TaskMessage;
pub use versioned::{DecodeError, Document};
pub use view::View;
pub use work::{Envelope, Work};
