//! The sweep spec: what to render (seeds, layers, channels), how (render settings) and where the tasks and
//! images go (queue, storage).
//!
//! # Sources and precedence
//!
//! [`SweepSpec::load`] merges, from weakest to strongest: the built-in defaults (the `Default` impls of
//! the sections below), a TOML file, environment variables `{PREFIX}__SECTION__KEY` (double underscores;
//! `LUCID__RENDER__STEPS=64` sets `render.steps`), and `(key, value)` overrides from command-line flags
//! (`render.steps`, `64`). Environment keys are lower-cased, so a seed id with capitals can only be set
//! from the file or an override. It is the only function of this crate that touches the outside world: it reads
//! the file and the environment through the `config` crate. Everything else here is pure.
//!
//! Unknown keys are rejected in every section. Credentials never live in the spec: the AMQP URI's password
//! comes from env [`AMQP_URI_ENV`] or `queue.uri_file`, S3 keys from `storage.credentials_file` or the
//! usual AWS environment; a spec whose URI carries a password fails validation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::channels::ChannelSelection;
use crate::ids::{LayerName, RunId, SeedId};
use crate::keys::KeyPrefix;

/// The environment variable holding the full AMQP URI, credentials included.
pub const AMQP_URI_ENV: &str = "LUCID_AMQP_URI";

/// The environment prefix the binaries use: `LUCID__SECTION__KEY`.
pub const DEFAULT_ENV_PREFIX: &str = "LUCID";

/// A spec field with a value that breaks a rule; displays as `field.path: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// Dotted path of the offending field, e.g. `render.steps`.
    pub field: String,
    /// What is wrong with it, including the value found.
    pub reason: String,
}

impl InvalidField {
    /// An error for `field` with `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why a spec could not be loaded or is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The sources could not be read or merged, or the merged result does not deserialise (unknown key,
    /// wrong type); the message names the key.
    #[error("failed to load sweep spec: {0}")]
    Load(String),
    /// A command-line override is not of the form `key=value`.
    #[error("invalid override {0:?}: expected key=value")]
    Override(String),
    /// A command-line override was refused by [`parse_overrides`]: malformed, or it would put a
    /// credential on the command line. Names the override's key (or its position), never its value.
    #[error("--set {key}: {reason}")]
    RefusedOverride {
        /// The override's key, or `(argument N)` when the argument has no `=`.
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// The spec deserialised but a value breaks a rule.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
}

impl From<config::ConfigError> for SpecError {
    fn from(e: config::ConfigError) -> Self {
        SpecError::Load(e.to_string())
    }
}

/// A whole sweep: the parsed, merged configuration of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Names the run; the second segment of every object key.
    pub run_id: RunId,
    /// The networks to render, by seed id; iterated in seed order.
    pub models: BTreeMap<SeedId, ModelLocation>,
    /// Which layers to render (default: all).
    #[serde(default)]
    pub layers: LayerSelection,
    /// Which channels to render in every selected layer (default: all).
    #[serde(default)]
    pub channels: ChannelSelection,
    /// Per-layer channel selections that replace `channels` for the named layers.
    #[serde(default)]
    pub channels_per_layer: BTreeMap<LayerName, ChannelSelection>,
    /// Optimisation settings.
    #[serde(default)]
    pub render: RenderSection,
    /// Where images and sidecars are written.
    #[serde(default)]
    pub storage: StorageSection,
    /// The task queue topology and limits.
    #[serde(default)]
    pub queue: QueueSection,
}

impl SweepSpec {
    /// Loads, merges and validates a spec: defaults < `file` (TOML) < environment
    /// `{env_prefix}__SECTION__KEY` < `overrides` (`("render.steps", "64")`).
    ///
    /// This is the one function of the crate that reads files and the environment.
    pub fn load(
        file: Option<&Path>,
        env_prefix: &str,
        overrides: &[(String, String)],
    ) -> Result<Self, SpecError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix(env_prefix)
                .prefix_separator("__")
                .separator("__"),
        );
        for (key, value) in overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let spec: SweepSpec = builder.build()?.try_deserialize()?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses a spec from TOML text, with defaults for what it leaves out; does not validate.
    pub fn parse_toml(text: &str) -> Result<Self, SpecError> {
        let spec = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        Ok(spec)
    }

    /// Checks every rule a deserialised spec can still break; the error names the field path.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.models.is_empty() {
            return Err(InvalidField::new("models", "must name at least one seed"));
        }
        for (seed, location) in &self.models {
            location
                .validate()
                .map_err(|reason| InvalidField::new(format!("models.{seed}"), reason))?;
        }
        if let LayerSelection::Only(layers) = &self.layers {
            if layers.is_empty() {
                return Err(InvalidField::new(
                    "layers",
                    "must be \"all\" or name at least one layer",
                ));
            }
            let mut seen = BTreeSet::new();
            for layer in layers {
                if !seen.insert(layer) {
                    return Err(InvalidField::new(
                        "layers",
                        format!("layer {layer} is listed twice"),
                    ));
                }
            }
            for layer in self.channels_per_layer.keys() {
                if !seen.contains(layer) {
                    return Err(InvalidField::new(
                        format!("channels_per_layer.{layer}"),
                        "layer is not selected in layers",
                    ));
                }
            }
        }
        self.render.validate()?;
        self.storage.validate()?;
        self.queue.validate()?;
        Ok(())
    }

    /// The render settings every task of this run carries.
    pub fn settings(&self) -> RenderSettings {
        self.render.settings()
    }

    /// The channel selection that applies to `layer`: its `channels_per_layer` entry, else `channels`.
    pub fn channels_for(&self, layer: &LayerName) -> &ChannelSelection {
        self.channels_per_layer.get(layer).unwrap_or(&self.channels)
    }

    /// A copy with any user info (credentials) removed from URIs, for writing into manifests and logs.
    /// A validated spec has none; this guards specs that skipped validation.
    pub fn redacted(&self) -> SweepSpec {
        let mut spec = self.clone();
        spec.queue.uri = strip_userinfo(&spec.queue.uri);
        if let Some(endpoint) = &spec.storage.endpoint {
            spec.storage.endpoint = Some(strip_userinfo(endpoint));
        }
        spec
    }
}

/// Splits a `key=value` command-line override; the key is a dotted spec path such as `render.steps`.
pub fn parse_override(arg: &str) -> Result<(String, String), SpecError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(SpecError::Override(arg.to_owned())),
    }
}

/// Words that mark an override key as a credential (matched case-insensitively anywhere in the key).
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "access_key", "session_key"];

/// Splits `--set key=value` arguments into overrides for [`SweepSpec::load`], refusing credentials.
///
/// Overrides come from the command line, where they end up in shell history and process listings, so
/// anything that looks like a credential is refused: keys naming a password, secret, token, access key
/// or session key, and values holding a URI with a password (`amqp://user:pass@host`). A malformed
/// argument is refused too. The error ([`SpecError::RefusedOverride`]) names the key, or the
/// argument's position when it has no `=`, and never echoes the value, which may be a pasted secret.
pub fn parse_overrides(args: &[String]) -> Result<Vec<(String, String)>, SpecError> {
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            let (key, value) = parse_override(arg).map_err(|_| SpecError::RefusedOverride {
                key: format!("(argument {})", i + 1),
                reason: "expected key=value".into(),
            })?;
            let lower = key.to_ascii_lowercase();
            if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                return Err(SpecError::RefusedOverride {
                    key,
                    reason: "credentials are not accepted on the command line; use env \
                             LUCID_AMQP_URI, queue.uri_file, storage.credentials_file or \
                             LUCID_S3_ACCESS_KEY_ID / LUCID_S3_SECRET_ACCESS_KEY"
                        .into(),
                });
            }
            if has_password(&value) {
                return Err(SpecError::RefusedOverride {
                    key,
                    reason: "the value holds a URI with a password; put the full URI in env \
                             LUCID_AMQP_URI or in the file named by queue.uri_file"
                        .into(),
                });
            }
            Ok((key, value))
        })
        .collect()
}

/// Whether `value` looks like `scheme://user:password@host…`.
fn has_password(value: &str) -> bool {
    value.contains("://") && userinfo(value).is_some_and(|user| user.contains(':'))
}

// ------------------------------------------------------------------------------------------ models

/// Where a seed's checkpoint lives: a local directory or an S3 prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelLocation {
    /// A local path (file or directory).
    Local(PathBuf),
    /// `s3://bucket/prefix`; `prefix` has no leading or trailing `/` and may be empty.
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix inside the bucket.
        prefix: String,
    },
}

impl ModelLocation {
    /// Parses `s3://bucket/prefix` or a non-empty local path.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let location = ModelLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            };
            location.validate()?;
            Ok(location)
        } else if s.trim().is_empty() {
            Err("model location must not be empty".into())
        } else if s.contains("://") {
            Err(format!(
                "model location {s:?} must be a local path or s3://bucket/prefix"
            ))
        } else {
            Ok(ModelLocation::Local(PathBuf::from(s)))
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            ModelLocation::Local(path) if path.as_os_str().is_empty() => {
                Err("model location must not be empty".into())
            }
            ModelLocation::Local(_) => Ok(()),
            ModelLocation::S3 { bucket, prefix } => {
                validate_bucket(bucket)?;
                if prefix.split('/').any(str::is_empty) && !prefix.is_empty() {
                    return Err(format!("s3 prefix {prefix:?} has an empty segment"));
                }
                if prefix.chars().any(char::is_control) {
                    return Err(format!("s3 prefix {prefix:?} contains a control character"));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for ModelLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelLocation::Local(path) => write!(f, "{}", path.display()),
            ModelLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            ModelLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl FromStr for ModelLocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl Serialize for ModelLocation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelLocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ModelLocation::parse(&s).map_err(de::Error::custom)
    }
}

/// Checks an S3 bucket name: 3 to 63 characters of `[a-z0-9.-]`, starting and ending alphanumeric.
pub fn validate_bucket(bucket: &str) -> Result<(), String> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "bucket {bucket:?} must be 3 to 63 characters of [a-z0-9.-], starting and ending with a letter or digit"
        ))
    }
}

// ------------------------------------------------------------------------------------------ layers

/// Which layers of each network to render.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LayerSelection {
    /// Every layer the checkpoint has, in network order.
    #[default]
    All,
    /// Only these layers (rendered in network order, not list order).
    Only(Vec<LayerName>),
}

impl LayerSelection {
    /// Whether `layer` is selected.
    pub fn contains(&self, layer: &LayerName) -> bool {
        match self {
            LayerSelection::All => true,
            LayerSelection::Only(layers) => layers.contains(layer),
        }
    }

    fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let layers = items
            .into_iter()
            .map(|s| LayerName::new(s.trim()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LayerSelection::Only(layers))
    }
}

/// Serialises as `"all"` or a list of names.
impl Serialize for LayerSelection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LayerSelection::All => s.serialize_str("all"),
            LayerSelection::Only(layers) => layers.serialize(s),
        }
    }
}

/// Accepts `"all"`, a comma-separated string (`"conv1,fc8"`, handy in env vars and flags) or a list.
impl<'de> Deserialize<'de> for LayerSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LayerSelection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\" or a list of layer names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LayerSelection, E> {
                if v.trim().eq_ignore_ascii_case("all") {
                    Ok(LayerSelection::All)
                } else {
                    LayerSelection::from_items(v.split(',')).map_err(E::custom)
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LayerSelection, A::Error> {
                let mut items: Vec<String> = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                LayerSelection::from_items(items.iter().map(String::as_str))
                    .map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

// ------------------------------------------------------------------------------------------ render

/// What the optimisation maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Mean activation of the channel over all positions.
    Channel,
    /// Activation of the channel at the centre position.
    Neuron,
    /// Minus the mean activation of the channel.
    NegativeChannel,
}

/// How the image is parameterised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    /// Scaled Fourier coefficients.
    Fft,
    /// Raw pixels.
    Pixel,
}

/// Robustness transforms applied before each forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transforms {
    /// Lucid's standard jitter, scale and rotate stack.
    Standard,
    /// No transforms.
    None,
}

/// Arithmetic precision of the network's forward and backward passes (the parameterisation,
/// transforms, objective and optimiser are always fp32, and reported objectives are measured in
/// full fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Full fp32: TF32 off for convolutions and matrix multiplies.
    Fp32,
    /// fp32 storage with TF32 tensor cores for convolutions and matrix multiplies on CUDA (the
    /// default; the same as `fp32` on the CPU).
    Tf32,
    /// The network's weights and activations in bfloat16.
    Bf16,
}

/// The `[render]` section: everything about the optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderSection {
    /// Optimisation steps per image.
    pub steps: u32,
    /// Image side in pixels.
    pub size: u32,
    /// What is maximised.
    pub objective: Objective,
    /// Images optimised together on one GPU; 0 lets the worker choose (256 on CUDA, 8 on the CPU; a
    /// batch that does not fit in GPU memory is rendered in halves).
    pub batch: u32,
    /// Seed of the image initialisation; with the task it fixes the random stream.
    pub run_seed: u64,
    /// Image parameterisation.
    pub param: Param,
    /// Whether colours are decorrelated.
    pub decorrelate: bool,
    /// Robustness transforms.
    pub transforms: Transforms,
    /// Adam learning rate.
    pub lr: f64,
    /// Arithmetic precision.
    pub precision: Precision,
}

impl Default for RenderSection {
    fn default() -> Self {
        Self {
            steps: 512,
            size: 224,
            objective: Objective::Channel,
            batch: 0,
            run_seed: 0,
            param: Param::Fft,
            decorrelate: true,
            transforms: Transforms::Standard,
            lr: 0.05,
            precision: Precision::Tf32,
        }
    }
}

impl RenderSection {
    /// The values that affect the image, as carried by every task.
    pub fn settings(&self) -> RenderSettings {
        RenderSettings {
            steps: self.steps,
            size: self.size,
            objective: self.objective,
            run_seed: self.run_seed,
            param: self.param,
            decorrelate: self.decorrelate,
            transforms: self.transforms,
            lr: self.lr,
            precision: self.precision,
        }
    }

    fn validate(&self) -> Result<(), InvalidField> {
        self.settings().validate("render")?;
        check_range("render.batch", self.batch, 0, MAX_BATCH)
    }
}

/// Largest accepted `render.batch`.
pub const MAX_BATCH: u32 = 4096;

/// The render values that affect the image; two tasks with equal settings can share a batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderSettings {
    /// Optimisation steps.
    pub steps: u32,
    /// Image side in pixels.
    pub size: u32,
    /// What is maximised.
    pub objective: Objective,
    /// Seed of the image initialisation.
    pub run_seed: u64,
    /// Image parameterisation.
    pub param: Param,
    /// Whether colours are decorrelated.
    pub decorrelate: bool,
    /// Robustness transforms.
    pub transforms: Transforms,
    /// Adam learning rate.
    pub lr: f64,
    /// Arithmetic precision.
    pub precision: Precision,
}

impl RenderSettings {
    /// A stable short id of these settings: FNV-1a 64 of their canonical JSON, as 16 hex digits.
    ///
    /// Canonical JSON is the serde form with fields in declaration order, so the value only changes
    /// when a field or its value does; workers group tasks into batches by it.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        format!("{:016x}", fnv1a64(&canonical))
    }

    /// Checks the value ranges; `section` is the field path prefix used in errors (`render`, `settings`).
    pub fn validate(&self, section: &str) -> Result<(), InvalidField> {
        check_range(&format!("{section}.steps"), self.steps, 1, 100_000)?;
        check_range(&format!("{section}.size"), self.size, 16, 4096)?;
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(InvalidField::new(
                format!("{section}.lr"),
                format!("must be greater than 0 and at most 10, got {}", self.lr),
            ));
        }
        Ok(())
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn check_range<T: PartialOrd + fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), InvalidField> {
    if value < min || value > max {
        return Err(InvalidField::new(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------ storage

/// Which object store backs a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// An S3-compatible store.
    S3,
    /// A local directory (tests, single-box runs).
    Local,
}

/// When the S3 client computes and validates request/response checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// Only where the operation requires one (safe with most S3-compatible stores).
    WhenRequired,
    /// Wherever the SDK supports one (AWS default since aws-sdk-s3 1.69).
    WhenSupported,
}

/// The `[storage]` section. Holds no credentials, only `credentials_file`, a path to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// S3 or local.
    pub kind: StorageKind,
    /// S3 endpoint URL (`http://127.0.0.1:8333`); unset means AWS.
    pub endpoint: Option<String>,
    /// S3 bucket; required when `kind` is s3.
    pub bucket: Option<String>,
    /// Key prefix before the run id; may be empty. Segments must be valid identifiers.
    pub prefix: String,
    /// S3 region.
    pub region: String,
    /// Whether to use path-style addressing (needed by most S3-compatible stores).
    pub path_style: bool,
    /// Checksum behaviour of the S3 client.
    pub checksum: ChecksumMode,
    /// Root directory when `kind` is local.
    pub local_dir: Option<PathBuf>,
    /// Path of a file with the S3 access key and secret; unset means the AWS default chain.
    pub credentials_file: Option<PathBuf>,
    /// PEM bundle of the CA certificates an `https://` endpoint is verified against, instead of the
    /// platform's roots (a private CA); unset means env `LUCID_CA_FILE`, else the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// How long one S3 operation keeps retrying transient failures (connection refused, timeouts, 5xx,
    /// throttling) before giving up, in seconds; sized to ride out a store restart.
    pub retry_for_secs: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            kind: StorageKind::S3,
            endpoint: None,
            bucket: None,
            prefix: String::new(),
            region: "us-east-1".into(),
            path_style: true,
            checksum: ChecksumMode::WhenRequired,
            local_dir: None,
            credentials_file: None,
            ca_file: None,
            retry_for_secs: 120,
        }
    }
}

impl StorageSection {
    /// The validated key prefix.
    pub fn key_prefix(&self) -> Result<KeyPrefix, InvalidField> {
        KeyPrefix::parse(&self.prefix)
            .map_err(|e| InvalidField::new("storage.prefix", e.to_string()))
    }

    fn validate(&self) -> Result<(), InvalidField> {
        self.key_prefix()?;
        if !(1..=86_400).contains(&self.retry_for_secs) {
            return Err(InvalidField::new(
                "storage.retry_for_secs",
                format!("must be 1 to 86400, got {}", self.retry_for_secs),
            ));
        }
        match self.kind {
            StorageKind::S3 => {
                let bucket = self.bucket.as_deref().ok_or_else(|| {
                    InvalidField::new("storage.bucket", "required when storage.kind is s3")
                })?;
                validate_bucket(bucket).map_err(|r| InvalidField::new("storage.bucket", r))?;
                if self.region.trim().is_empty() {
                    return Err(InvalidField::new("storage.region", "must not be empty"));
                }
                if let Some(endpoint) = &self.endpoint {
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        return Err(InvalidField::new(
                            "storage.endpoint",
                            format!("must start with http:// or https://, got {endpoint:?}"),
                        ));
                    }
                    if userinfo(endpoint).is_some() {
                        return Err(InvalidField::new(
                            "storage.endpoint",
                            "must not contain credentials; use storage.credentials_file or the AWS environment",
                        ));
                    }
                }
            }
            StorageKind::Local => {
                if self.local_dir.is_none() {
                    return Err(InvalidField::new(
                        "storage.local_dir",
                        "required when storage.kind is local",
                    ));
                }
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------ queue

/// The `[queue]` section: broker address, queue names and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// AMQP URI without a password; see [`QueueSection::resolve_uri`] for where credentials come from.
    pub uri: String,
    /// Path of a file holding the full AMQP URI, credentials included.
    pub uri_file: Option<PathBuf>,
    /// Name of the (quorum) task queue.
    pub tasks: String,
    /// Exchange that receives tasks that exhausted their delivery limit.
    pub dead_letter_exchange: String,
    /// Queue bound to the dead-letter exchange.
    pub dead_letter_queue: String,
    /// Per-consumer prefetch (unacked deliveries per worker).
    pub prefetch: u16,
    /// Deliveries of one task before it is dead-lettered (`x-delivery-limit`).
    pub delivery_limit: u32,
    /// Largest task message accepted, in bytes.
    pub max_message_bytes: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            uri: "amqp://127.0.0.1:5672/%2f".into(),
            uri_file: None,
            tasks: "lucid.tasks".into(),
            dead_letter_exchange: "lucid.dlx".into(),
            dead_letter_queue: "lucid.dead".into(),
            prefetch: 256,
            delivery_limit: 5,
            max_message_bytes: 65_536,
        }
    }
}

impl QueueSection {
    /// The URI to connect with: `env_uri` (the value of [`AMQP_URI_ENV`]) if set, else the trimmed
    /// contents of `queue.uri_file` if read, else `queue.uri`. The caller does the reading.
    pub fn resolve_uri(&self, env_uri: Option<&str>, file_contents: Option<&str>) -> String {
        env_uri
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or_else(|| file_contents.map(str::trim).filter(|s| !s.is_empty()))
            .unwrap_or(&self.uri)
            .to_owned()
    }

    fn validate(&self) -> Result<(), InvalidField> {
        if !(self.uri.starts_with("amqp://") || self.uri.starts_with("amqps://")) {
            return Err(InvalidField::new(
                "queue.uri",
                format!(
                    "must start with amqp:// or amqps://, got {:?}",
                    strip_userinfo(&self.uri)
                ),
            ));
        }
        if userinfo(&self.uri).is_some_and(|u| u.contains(':')) {
            return Err(InvalidField::new(
                "queue.uri",
                format!(
                    "must not contain a password; put the full URI in env {AMQP_URI_ENV} or in the file named by queue.uri_file"
                ),
            ));
        }
        for (field, name) in [
            ("queue.tasks", &self.tasks),
            ("queue.dead_letter_exchange", &self.dead_letter_exchange),
            ("queue.dead_letter_queue", &self.dead_letter_queue),
        ] {
            if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                return Err(InvalidField::new(
                    field,
                    format!("must be 1 to 255 bytes without control characters, got {name:?}"),
                ));
            }
            if name.starts_with("amq.") {
                return Err(InvalidField::new(
                    field,
                    format!("names starting with amq. are reserved by the broker, got {name:?}"),
                ));
            }
        }
        check_range("queue.prefetch", self.prefetch, 1, u16::MAX)?;
        check_range("queue.delivery_limit", self.delivery_limit, 1, 1000)?;
        check_range(
            "queue.max_message_bytes",
            self.max_message_bytes,
            1024,
            128 << 20,
        )?;
        Ok(())
    }
}

/// The user-info part (`user:pass`) of a URI's authority, if any.
fn userinfo(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(user, _)| user)
}

fn strip_userinfo(uri: &str) -> String {
    match (uri.split_once("://"), userinfo(uri)) {
        (Some((scheme, rest)), Some(user)) => {
            format!("{scheme}://{}", &rest[user.len() + 1..])
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    // inline tables, so that tests can append top-level keys and sections
    const MINIMAL: &str = r#"
        run_id = "r1"
        models = { training_seed_01 = "/data/seed01" }
        storage = { bucket = "lucid-test" }
    "#;

    fn minimal() -> SweepSpec {
        SweepSpec::parse_toml(MINIMAL).unwrap()
    }

    fn invalid(spec: &SweepSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let spec = minimal();
        spec.validate().unwrap();
        assert_eq!(spec.render, RenderSection::default());
        assert_eq!(spec.queue, QueueSection::default());
        assert_eq!(spec.layers, LayerSelection::All);
        assert_eq!(spec.channels, ChannelSelection::All);
        assert_eq!(spec.storage.region, "us-east-1");
        assert_eq!(spec.queue.max_message_bytes, 65_536);
        assert_eq!(spec.render.steps, 512);
    }

    #[test]
    fn precedence_default_file_env_override() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(
            file,
            "{MINIMAL}\n[render]\nsteps = 100\nsize = 128\nlr = 0.1\nbatch = 8\n"
        )
        .unwrap();
        // a prefix no other test (or process) uses, so setting it cannot disturb anyone
        let prefix = "LUCIDTESTPRECEDENCE";
        // SAFETY: only this test reads or writes variables with this prefix.
        unsafe {
            std::env::set_var(format!("{prefix}__RENDER__SIZE"), "96");
            std::env::set_var(format!("{prefix}__RENDER__LR"), "0.2");
            std::env::set_var(format!("{prefix}__RENDER__DECORRELATE"), "false");
            std::env::set_var(format!("{prefix}__QUEUE__MAX_MESSAGE_BYTES"), "4096");
        }
        let flags = overrides(&[("render.lr", "0.3"), ("layers", "conv1,fc8")]);
        let spec = SweepSpec::load(Some(file.path()), prefix, &flags).unwrap();
        assert_eq!(spec.render.objective, Objective::Channel, "default");
        assert_eq!(spec.render.steps, 100, "file over default");
        assert_eq!(spec.render.batch, 8, "file over default");
        assert_eq!(spec.render.size, 96, "env over file");
        assert!(!spec.render.decorrelate, "env over default");
        assert_eq!(spec.queue.max_message_bytes, 4096, "env over default");
        assert_eq!(spec.render.lr, 0.3, "override over env and file");
        assert_eq!(
            spec.layers,
            LayerSelection::Only(vec!["conv1".parse().unwrap(), "fc8".parse().unwrap()])
        );
        // without the env and the overrides the file wins
        let spec = SweepSpec::load(Some(file.path()), "LUCIDTESTUNUSEDPREFIX", &[]).unwrap();
        assert_eq!((spec.render.size, spec.render.lr), (128, 0.1));
    }

    #[test]
    fn load_without_file_uses_env_and_overrides() {
        let flags = overrides(&[
            ("run_id", "flags-only"),
            ("models.seed_a", "s3://models/alexnet/seed_a"),
            ("storage.kind", "local"),
            ("storage.local_dir", "/tmp/out"),
        ]);
        let spec = SweepSpec::load(None, "LUCIDTESTNOFILE", &flags).unwrap();
        assert_eq!(spec.run_id.as_str(), "flags-only");
        let seed: SeedId = "seed_a".parse().unwrap();
        assert_eq!(
            spec.models[&seed],
            ModelLocation::S3 {
                bucket: "models".into(),
                prefix: "alexnet/seed_a".into()
            }
        );
    }

    fn args(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_overrides_pass() {
        let parsed = parse_overrides(&args(&[
            "render.steps=64",
            "queue.uri=amqp://lucid@h/%2f",
            "storage.endpoint=http://h:8333",
        ]))
        .expect("plain overrides");
        assert_eq!(parsed[0], ("render.steps".into(), "64".into()));
        assert_eq!(parsed[1].1, "amqp://lucid@h/%2f");
        assert_eq!(parsed[2].1, "http://h:8333");
        assert_eq!(parse_overrides(&[]).expect("no overrides"), Vec::new());
    }

    #[test]
    fn credential_overrides_are_refused_without_echoing_them() {
        for (arg, key) in [
            ("queue.uri=amqp://guest:hunter2@h/%2f", "queue.uri"),
            (
                "storage.secret_access_key=hunter2",
                "storage.secret_access_key",
            ),
            ("queue.password=hunter2", "queue.password"),
            ("storage.Access_Key_Id=hunter2", "storage.Access_Key_Id"),
            (
                "storage.endpoint=http://ak:hunter2@h:8333",
                "storage.endpoint",
            ),
        ] {
            let err = parse_overrides(&args(&["render.steps=8", arg])).expect_err(arg);
            assert!(
                matches!(&err, SpecError::RefusedOverride { key: k, .. } if k == key),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.starts_with(&format!("--set {key}: ")), "{text}");
        }
    }

    #[test]
    fn malformed_overrides_are_refused_by_position() {
        let err = parse_overrides(&args(&["render.steps=8", "hunter2"])).expect_err("no =");
        assert_eq!(err.to_string(), "--set (argument 2): expected key=value");
        assert!(parse_overrides(&args(&["=value"])).is_err());
    }

    #[test]
    fn load_validates_and_names_the_field() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "{MINIMAL}\n[render]\nsteps = 0\n").unwrap();
        let err = SweepSpec::load(Some(file.path()), "LUCIDTESTVALIDATE", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "render.steps: must be between 1 and 100000, got 0"
        );
        let missing = SweepSpec::load(
            Some(Path::new("/nonexistent/lucid/spec.toml")),
            "LUCIDTESTVALIDATE",
            &[],
        )
        .unwrap_err();
        assert!(matches!(missing, SpecError::Load(_)), "{missing}");
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        for (extra, key) in [
            ("[render]\nstepz = 3\n", "stepz"),
            ("[queue]\npassword = \"x\"\n", "password"),
            ("colour = 1\n", "colour"),
        ] {
            let err = SweepSpec::parse_toml(&format!("{MINIMAL}\n{extra}")).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = SweepSpec::load(
            None,
            "LUCIDTESTUNKNOWN",
            &overrides(&[("render.stepz", "1")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("stepz"), "{err}");
    }

    #[test]
    fn wrong_values_are_rejected() {
        for extra in [
            "[render]\nobjective = \"max\"\n",
            "[render]\nsteps = \"many\"\n",
            "channels = \"0-x\"\n",
            "layers = [\"../x\"]\n",
        ] {
            assert!(
                SweepSpec::parse_toml(&format!("{MINIMAL}\n{extra}")).is_err(),
                "{extra}"
            );
        }
        assert!(SweepSpec::parse_toml("run_id = \"a/b\"\n[models]\ns = \"/x\"").is_err());
    }

    #[test]
    fn validation_messages_name_the_field() {
        let mut spec = minimal();
        spec.render.size = 8;
        assert_eq!(
            invalid(&spec),
            "render.size: must be between 16 and 4096, got 8"
        );

        let mut spec = minimal();
        spec.render.lr = f64::NAN;
        assert!(invalid(&spec).starts_with("render.lr: must be greater than 0"));

        let mut spec = minimal();
        spec.render.batch = 5000;
        assert_eq!(
            invalid(&spec),
            "render.batch: must be between 0 and 4096, got 5000"
        );

        let mut spec = minimal();
        spec.models.clear();
        assert_eq!(invalid(&spec), "models: must name at least one seed");

        let mut spec = minimal();
        spec.storage.bucket = None;
        assert_eq!(
            invalid(&spec),
            "storage.bucket: required when storage.kind is s3"
        );

        let mut spec = minimal();
        spec.storage.bucket = Some("Bad_Bucket".into());
        assert!(invalid(&spec).starts_with("storage.bucket: bucket \"Bad_Bucket\""));

        let mut spec = minimal();
        spec.storage.prefix = "renders/../x".into();
        assert!(
            invalid(&spec).starts_with("storage.prefix: "),
            "{}",
            invalid(&spec)
        );

        let mut spec = minimal();
        spec.storage.endpoint = Some("http://ak:sk@127.0.0.1:8333".into());
        assert!(invalid(&spec).starts_with("storage.endpoint: must not contain credentials"));

        let mut spec = minimal();
        spec.storage.kind = StorageKind::Local;
        assert_eq!(
            invalid(&spec),
            "storage.local_dir: required when storage.kind is local"
        );

        let mut spec = minimal();
        spec.queue.prefetch = 0;
        assert_eq!(
            invalid(&spec),
            "queue.prefetch: must be between 1 and 65535, got 0"
        );

        let mut spec = minimal();
        spec.queue.delivery_limit = 0;
        assert!(invalid(&spec).starts_with("queue.delivery_limit: "));

        let mut spec = minimal();
        spec.queue.tasks = "amq.tasks".into();
        assert!(invalid(&spec).starts_with("queue.tasks: names starting with amq."));

        let mut spec = minimal();
        spec.layers = LayerSelection::Only(vec!["conv1".parse().unwrap(); 2]);
        assert_eq!(invalid(&spec), "layers: layer conv1 is listed twice");

        let mut spec = minimal();
        spec.layers = LayerSelection::Only(vec!["conv1".parse().unwrap()]);
        spec.channels_per_layer
            .insert("fc8".parse().unwrap(), ChannelSelection::All);
        assert_eq!(
            invalid(&spec),
            "channels_per_layer.fc8: layer is not selected in layers"
        );
    }

    #[test]
    fn uri_with_password_is_rejected_with_a_pointer_to_env_and_file() {
        let flags = overrides(&[("queue.uri", "amqp://guest:guest@127.0.0.1:5672/%2f")]);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "{MINIMAL}").unwrap();
        let err = SweepSpec::load(Some(file.path()), "LUCIDTESTURI", &flags).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("queue.uri: must not contain a password"),
            "{msg}"
        );
        assert!(
            msg.contains("LUCID_AMQP_URI") && msg.contains("queue.uri_file"),
            "{msg}"
        );
        assert!(!msg.contains("guest:guest"), "{msg}");

        // a user name alone is fine
        let mut spec = minimal();
        spec.queue.uri = "amqp://lucid@rabbit:5672/%2f".into();
        spec.validate().unwrap();
    }

    #[test]
    fn resolve_uri_prefers_env_then_file_then_spec() {
        let q = QueueSection::default();
        assert_eq!(
            q.resolve_uri(Some("amqp://a:b@h/"), Some("amqp://c:d@h/")),
            "amqp://a:b@h/"
        );
        assert_eq!(
            q.resolve_uri(Some(" "), Some("amqp://c:d@h/\n")),
            "amqp://c:d@h/"
        );
        assert_eq!(q.resolve_uri(None, None), "amqp://127.0.0.1:5672/%2f");
    }

    #[test]
    fn redacted_removes_credentials() {
        let mut spec = minimal();
        spec.queue.uri = "amqp://u:p@host:5672/%2f".into();
        spec.storage.endpoint = Some("http://k:s@store:8333/x".into());
        let r = spec.redacted();
        assert_eq!(r.queue.uri, "amqp://host:5672/%2f");
        assert_eq!(r.storage.endpoint.as_deref(), Some("http://store:8333/x"));
    }

    #[test]
    fn channels_per_layer_overrides_channels() {
        let spec = SweepSpec::parse_toml(&format!(
            "{MINIMAL}\nchannels = \"0-3\"\n[channels_per_layer]\nconv1 = \"0-15\"\nfc8 = [\"1\", 7]\n"
        ))
        .unwrap();
        spec.validate().unwrap();
        let conv1: LayerName = "conv1".parse().unwrap();
        let conv2: LayerName = "conv2".parse().unwrap();
        let fc8: LayerName = "fc8".parse().unwrap();
        assert_eq!(spec.channels_for(&conv1).to_string(), "0-15");
        assert_eq!(spec.channels_for(&conv2).to_string(), "0-3");
        assert_eq!(spec.channels_for(&fc8).to_string(), "1,7");
    }

    #[test]
    fn key_case_is_preserved() {
        let spec = SweepSpec::parse_toml(
            "run_id = \"Run_A\"\nstorage = { bucket = \"lucid-test\" }\n[models]\nSeed_A = \"/x\"\n[channels_per_layer]\nConv1 = \"0\"\n",
        )
        .unwrap();
        assert_eq!(spec.run_id.as_str(), "Run_A");
        assert!(
            spec.models.keys().any(|s| s.as_str() == "Seed_A"),
            "{:?}",
            spec.models
        );
        assert!(
            spec.channels_per_layer
                .keys()
                .any(|l| l.as_str() == "Conv1")
        );
    }

    #[test]
    fn model_locations() {
        assert_eq!(
            ModelLocation::parse("s3://bucket-1/a/b/")
                .unwrap()
                .to_string(),
            "s3://bucket-1/a/b"
        );
        assert_eq!(
            ModelLocation::parse("s3://bucket-1").unwrap().to_string(),
            "s3://bucket-1"
        );
        assert!(ModelLocation::parse("s3://B/x").is_err());
        assert!(ModelLocation::parse("s3://bucket/a//b").is_err());
        assert!(ModelLocation::parse("").is_err());
        assert!(ModelLocation::parse("http://x/y").is_err());
        assert_eq!(
            ModelLocation::parse("fixtures/alexnet_small/training_seed_01").unwrap(),
            ModelLocation::Local("fixtures/alexnet_small/training_seed_01".into())
        );
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let a = RenderSection::default().settings();
        // pinned: the fingerprint is part of the wire contract between coordinator and workers
        assert_eq!(a.fingerprint(), a.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        let mut b = a;
        b.steps += 1;
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a;
        c.precision = Precision::Bf16;
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = minimal();
        let json = serde_json::to_string(&spec).unwrap();
        let back: SweepSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn override_parsing() {
        assert_eq!(
            parse_override("render.steps=64").unwrap(),
            ("render.steps".to_owned(), "64".to_owned())
        );
        assert_eq!(parse_override("a=b=c").unwrap().1, "b=c");
        assert!(parse_override("=1").is_err());
        assert!(parse_override("steps").is_err());
    }

    #[test]
    fn example_specs_parse_and_validate() {
        for (name, text) in [
            (
                "fixture-sweep.toml",
                include_str!("../../examples/fixture-sweep.toml"),
            ),
            (
                "ecoset-sweep.toml",
                include_str!("../../examples/ecoset-sweep.toml"),
            ),
        ] {
            let spec = SweepSpec::parse_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            spec.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let fixture =
            SweepSpec::parse_toml(include_str!("../../examples/fixture-sweep.toml")).unwrap();
        assert_eq!(fixture.models.len(), 2);
        assert_eq!((fixture.render.steps, fixture.render.size), (8, 224));
        assert_eq!(
            fixture.storage.endpoint.as_deref(),
            Some("http://127.0.0.1:8333")
        );
        let ecoset =
            SweepSpec::parse_toml(include_str!("../../examples/ecoset-sweep.toml")).unwrap();
        assert_eq!(ecoset.models.len(), 10);
        assert_eq!((ecoset.render.steps, ecoset.render.size), (512, 224));
        assert_eq!(ecoset.layers, LayerSelection::All);
        assert_eq!(ecoset.channels, ChannelSelection::All);
    }
}
