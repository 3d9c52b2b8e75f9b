//! The coordinator library's error type: every variant names the file, key, field or service involved.

use std::path::PathBuf;

/// A boxed error from a dependency whose concrete type does not matter to callers (storage, queue).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a coordinator operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sweep spec could not be loaded or is invalid; the message names the file or field.
    #[error("sweep spec {path}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// What is wrong, naming the field.
        source: lucid_proto::SpecError,
    },
    /// A `--set` override was refused (malformed, or it would put a credential on the command line).
    #[error("--set {key}: {reason}")]
    Override {
        /// The override's key (never its value, which may be a secret).
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// The tasks could not be enumerated from the spec and the checkpoints' layer widths.
    #[error("cannot plan run")]
    Plan(#[from] lucid_proto::PlanError),
    /// A checkpoint could not be found, opened, read or digested.
    #[error("checkpoint of model {model} at {location}")]
    Checkpoint {
        /// The model whose checkpoint failed.
        model: String,
        /// Where the model was looked for.
        location: String,
        /// The reader's error, naming the file (boxed: it is large).
        source: Box<lucid_checkpoint::Error>,
    },
    /// A network description that cannot be read, or a checkpoint that does not fit it (a missing
    /// weight, a wrong shape).
    #[error("network of model {model} ({location})")]
    Network {
        /// The model.
        model: String,
        /// Where the model was looked for.
        location: String,
        /// Names the node and tensor at fault (boxed: it is large).
        source: Box<lucid_network::NetworkError>,
    },
    /// A local file or folder operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done (`failed to write`, `failed to create cache folder`).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An object-store operation failed.
    #[error("storage: failed to {action}")]
    Storage {
        /// What was being done, naming the key or prefix.
        action: String,
        /// The storage crate's error.
        source: BoxError,
    },
    /// A broker operation failed.
    #[error("queue: failed to {action}")]
    Queue {
        /// What was being done, naming the queue.
        action: String,
        /// The queue crate's error.
        source: BoxError,
    },
    /// A metrics endpoint could not be read.
    #[error("cannot read metrics from {url}: {message}")]
    MetricsRead {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The stored run manifest disagrees with the run about to be submitted.
    #[error("run manifest {key} conflicts with this spec: {difference}; use a new run_id")]
    ManifestConflict {
        /// The manifest's key.
        key: String,
        /// What differs.
        difference: String,
    },
    /// A stored object could not be decoded.
    #[error("cannot decode {key}: {reason}")]
    Decode {
        /// The object's key.
        key: String,
        /// The decoder's message.
        reason: String,
    },
    /// A rates file (`plan --rates`) is malformed.
    #[error("rates file {path}: field `{field}`: {reason}")]
    RateFile {
        /// The file.
        path: PathBuf,
        /// The offending field's JSON path (`layers[2].images_per_second`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A model location cannot be used (an S3 listing with no usable files, an unsafe key).
    #[error("model {location}: {reason}")]
    Model {
        /// The model location.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The run's gallery could not be built or uploaded.
    #[error("gallery of run {run}")]
    Gallery {
        /// The run.
        run: String,
        /// What failed, naming the key.
        source: lucid_gallery::GalleryError,
    },
    /// Setting up the metrics registry or HTTP listener failed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The probe set holds no file: nothing was published, no index written.
    #[error(
        "probe set {location} holds no files (hidden files do not count); nothing was published"
    )]
    EmptyProbeSet {
        /// `probe.images`.
        location: String,
    },
    /// The probe set listed now differs from the one the run was started on.
    #[error(
        "probe set index {key} conflicts with this spec or the set listed now: {difference}; use a new run_id"
    )]
    ProbeSetChanged {
        /// The index's key.
        key: String,
        /// What differs.
        difference: String,
    },
    /// The probe side leaves a probed layer no output.
    #[error(
        "probe.side {side} is too small for layer {layer} of model {model}: it needs at least {needs} px"
    )]
    ProbeSideTooSmall {
        /// The model.
        model: String,
        /// The layer.
        layer: String,
        /// `probe.side`.
        side: u32,
        /// The smallest input side with an output at the layer.
        needs: u32,
    },
    /// A shard's task would exceed the queue's message limit.
    #[error(
        "probe task {task_id} is {bytes} bytes, over queue.max_message_bytes {max}: lower probe.shard"
    )]
    ProbeTaskTooLarge {
        /// The task.
        task_id: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Some shards of a model's probe pass are not stored yet.
    #[error(
        "the probe pass of model {model} is not complete: {missing} of {shards} shards are not stored (first: {first}); let the workers finish, or submit again to republish them"
    )]
    ProbeIncomplete {
        /// The model.
        model: String,
        /// Shards not stored.
        missing: usize,
        /// Shards in all.
        shards: u32,
        /// The first missing shard's number.
        first: u32,
    },
    /// A model would share its probe folder with the prepared probe images.
    #[error(
        "model {model} of a run with [probe] cannot be named {model:?}: probe/{model}/ holds the run's prepared probe images; rename the model"
    )]
    ProbeModelReserved {
        /// The model id.
        model: String,
    },
    /// A probe image that a worker decoded could not be decoded again for the gallery (the file
    /// changed since): its examples would show another picture.
    #[error("probe image {file} of {location} cannot be prepared for the gallery")]
    ProbePreview {
        /// The file, relative to the probe set.
        file: String,
        /// `probe.images`.
        location: String,
        /// The decoder's error.
        source: lucid_probe::ProbeImageError,
    },
    /// Work handed to the blocking pool did not come back (cancelled at shutdown, or it panicked).
    #[error("{what}: the blocking task did not finish: {source}")]
    BlockingTask {
        /// What it was doing.
        what: String,
        /// Why it did not finish.
        source: tokio::task::JoinError,
    },
    /// What the cross-seed matching reads is missing or unusable.
    #[error("cannot match channels across seeds: {key} {reason}")]
    MatchInput {
        /// The object (or argument) at fault.
        key: String,
        /// Why.
        reason: String,
    },
    /// A layer could not be matched.
    #[error("matching layer {layer} across seeds")]
    Match {
        /// The layer.
        layer: String,
        /// Why.
        source: lucid_match::MatchError,
    },
    /// A stored shard's data does not match its sidecar, or cannot be merged.
    #[error("probe shard {key}")]
    ProbeShard {
        /// The data's key.
        key: String,
        /// Why.
        source: lucid_probe::shard::ShardError,
    },
}

impl Error {
    /// A storage error for `action` (which names the key or prefix).
    pub fn storage(action: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Storage {
            action: action.into(),
            source: source.into(),
        }
    }

    /// A queue error for `action` (which names the queue).
    pub fn queue(action: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Queue {
            action: action.into(),
            source: source.into(),
        }
    }

    /// An I/O error for `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

pub use lucid_telemetry::error_chain as chain;

/// The coordinator library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
