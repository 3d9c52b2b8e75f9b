//! The sweep spec: what to render (seeds, layers, channels), how (render settings) and where the tasks and
//! images go (queue, storage).
//!
//! # Sources and precedence
//!
//! [`SweepSpec::load`] merges, from weakest to strongest: the built-in defaults (the `Default` impls of
//! the sections, the render ones from the table in [`render_defaults`]), a TOML file, environment variables `{PREFIX}__SECTION__KEY` (double underscores;
//! `LUCID__RENDER__STEPS=64` sets `render.steps`), and `(key, value)` overrides from command-line flags
//! (`render.steps`, `64`). Environment keys are lower-cased, so a model id with capitals can only be set
//! from the file or an override. It is the only function of this crate that touches the outside world: it reads
//! the file and the environment through the `config` crate. Everything else here is pure.
//!
//! Unknown keys are rejected in every section. Credentials never live in the spec: the AMQP URI's password
//! comes from env [`AMQP_URI_ENV`] or `queue.uri_file`, S3 keys from `storage.credentials_file` or the
//! usual AWS environment; a spec whose URI carries a password fails validation.
//!
//! # Layout
//!
//! One file per section, each with its rules: `models` ([`ModelEntry`]: a [`ModelLocation`] and the
//! [`NetworkRef`] of `network`), `layers`
//! ([`LayerSelection`]), `render` ([`RenderSection`] and the wire form [`RenderSettings`], with their
//! defaults and limits in [`render_defaults`]), `storage` ([`StorageSection`]) and `queue`
//! ([`QueueSection`]). `overrides` splits `--set` arguments, `error` holds [`SpecError`] and
//! [`InvalidField`], `uri` finds credentials in URIs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::channels::ChannelSelection;
use crate::ids::{LayerName, ModelId, RunId};
use crate::view::View;
use uri::strip_userinfo;

mod error;
mod layers;
mod models;
mod network;
mod overrides;
mod probe;
mod queue;
mod render;
pub mod render_defaults;
mod storage;
mod uri;

pub use error::{InvalidField, SpecError};
pub use layers::LayerSelection;
pub use models::{ModelLocation, validate_bucket};
pub use network::{DEFAULT_NETWORK, ModelEntry, NetworkRef, TORCHSCRIPT};
pub use overrides::{parse_override, parse_overrides};
pub use probe::ProbeSection;
pub use queue::{AMQP_URI_ENV, QueueSection};
pub use render::{Objective, Param, Precision, RenderSection, RenderSettings, Transforms};
pub use render_defaults::MAX_BATCH;
pub use storage::{ChecksumMode, StorageKind, StorageSection};

/// The environment prefix the binaries use: `LUCID__SECTION__KEY`.
pub const DEFAULT_ENV_PREFIX: &str = "LUCID";

/// A whole sweep: the parsed, merged configuration of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Names the run; the second segment of every object key.
    pub run_id: RunId,
    /// The networks to render, by model id; iterated in id order.
    pub models: BTreeMap<ModelId, ModelEntry>,
    /// Which layers to render (default: all).
    #[serde(default)]
    pub layers: LayerSelection,
    /// Which channels to render in every selected layer (default: all).
    #[serde(default)]
    pub channels: ChannelSelection,
    /// Per-layer channel selections that replace `channels` for the named layers.
    #[serde(default)]
    pub channels_per_layer: BTreeMap<LayerName, ChannelSelection>,
    /// The views of each unit to render, each its own task (default: the one view of
    /// `render.objective`, which is `channel` unless set; see [`crate::view`]). Left out of the
    /// manifest's copy of the spec when not given, so that runs planned before views keep their
    /// manifest's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<Vec<View>>,
    /// Optimisation settings.
    #[serde(default)]
    pub render: RenderSection,
    /// Where images and sidecars are written.
    #[serde(default)]
    pub storage: StorageSection,
    /// The task queue topology and limits.
    #[serde(default)]
    pub queue: QueueSection,
    /// The probe set whose dataset examples the run computes (none by default). Left out of the
    /// manifest's copy of the spec when not given, so that runs planned before it keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSection>,
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
            return Err(InvalidField::new("models", "must name at least one model"));
        }
        for (model, entry) in &self.models {
            entry
                .validate()
                .map_err(|reason| InvalidField::new(format!("models.{model}"), reason))?;
        }
        self.layers.validate(self.channels_per_layer.keys())?;
        self.render.validate()?;
        self.validate_views()?;
        self.storage.validate()?;
        self.queue.validate()?;
        if let Some(probe) = &self.probe {
            probe.validate()?;
        }
        Ok(())
    }

    /// The render settings of this run; a task carries them with its view's objective
    /// ([`RenderSettings::for_view`]).
    pub fn settings(&self) -> RenderSettings {
        self.render.settings()
    }

    /// The views rendered of every unit, in the spec's order.
    pub fn views(&self) -> Vec<View> {
        self.views
            .clone()
            .unwrap_or_else(|| vec![View::of_objective(self.render.settings.objective)])
    }

    /// `views` lists each view once, and says alone what is maximised: with `views` given,
    /// `render.objective` must stay at its default.
    fn validate_views(&self) -> Result<(), InvalidField> {
        let Some(views) = &self.views else {
            return Ok(());
        };
        if views.is_empty() {
            return Err(InvalidField::new(
                "views",
                format!("must name at least one view: {}", crate::view::VALID_VIEWS),
            ));
        }
        if let Some((i, view)) = views
            .iter()
            .enumerate()
            .find(|(i, v)| views[..*i].contains(v))
        {
            return Err(InvalidField::new(
                format!("views[{i}]"),
                format!("{view} is listed twice"),
            ));
        }
        let objective = self.render.settings.objective;
        if objective != render_defaults::DEFAULT_OBJECTIVE {
            return Err(InvalidField::new(
                "render.objective",
                format!(
                    "{} conflicts with views: with views given, each view sets its objective; name {} in views instead",
                    View::of_objective(objective),
                    View::of_objective(objective)
                ),
            ));
        }
        Ok(())
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

#[cfg(test)]
pub(crate) mod test_support {
    //! The smallest valid spec, and helpers the section tests share.

    use super::SweepSpec;

    /// Inline tables, so that tests can append top-level keys and sections.
    pub(crate) const MINIMAL: &str = r#"
        run_id = "r1"
        models = { training_seed_01 = "/data/seed01" }
        storage = { bucket = "lucid-test" }
    "#;

    /// [`MINIMAL`], parsed.
    pub(crate) fn minimal() -> SweepSpec {
        SweepSpec::parse_toml(MINIMAL).unwrap()
    }

    /// The validation error of `spec`, as displayed.
    pub(crate) fn invalid(spec: &SweepSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    /// `(key, value)` overrides for [`SweepSpec::load`].
    pub(crate) fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{MINIMAL, invalid, minimal, overrides};
    use super::*;
    use std::io::Write;

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
        assert_eq!(spec.render.settings.steps, 512);
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
        assert_eq!(
            spec.render.settings.objective,
            Objective::Channel,
            "default"
        );
        assert_eq!(spec.render.settings.steps, 100, "file over default");
        assert_eq!(spec.render.batch, 8, "file over default");
        assert_eq!(spec.render.settings.size, 96, "env over file");
        assert!(!spec.render.settings.decorrelate, "env over default");
        assert_eq!(spec.queue.max_message_bytes, 4096, "env over default");
        assert_eq!(spec.render.settings.lr, 0.3, "override over env and file");
        assert_eq!(
            spec.layers,
            LayerSelection::Only(vec!["conv1".parse().unwrap(), "fc8".parse().unwrap()])
        );
        // without the env and the overrides the file wins
        let spec = SweepSpec::load(Some(file.path()), "LUCIDTESTUNUSEDPREFIX", &[]).unwrap();
        assert_eq!(
            (spec.render.settings.size, spec.render.settings.lr),
            (128, 0.1)
        );
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
        let seed: ModelId = "seed_a".parse().unwrap();
        assert_eq!(
            spec.models[&seed].location,
            ModelLocation::S3 {
                bucket: "models".into(),
                prefix: "alexnet/seed_a".into()
            }
        );
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
    fn example_specs_parse_and_validate() {
        let [fixture, ecoset] = [
            (
                "fixture-sweep.toml",
                include_str!("../../../examples/fixture-sweep.toml"),
            ),
            (
                "ecoset-sweep.toml",
                include_str!("../../../examples/ecoset-sweep.toml"),
            ),
        ]
        .map(|(name, text)| {
            let spec = SweepSpec::parse_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            spec.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            spec
        });
        let seeds_steps_size =
            |s: &SweepSpec| (s.models.len(), s.settings().steps, s.settings().size);
        assert_eq!(seeds_steps_size(&fixture), (2, 8, 224));
        assert_eq!(
            fixture.storage.endpoint.as_deref(),
            Some("http://127.0.0.1:8333")
        );
        assert_eq!(seeds_steps_size(&ecoset), (10, 512, 224));
        assert_eq!(ecoset.layers, LayerSelection::All);
        assert_eq!(ecoset.channels, ChannelSelection::All);
    }

    /// A spec that takes every custom serde path: layers as a list, channels as ranges and as a list
    /// with integers, per-layer channels (`all` and ranges), local and `s3://` model locations (with
    /// and without a prefix), every render enum off its default, `batch` beside the settings, S3
    /// storage with every option set.
    const EVERY_PATH_S3: &str = r#"
        run_id = "round_trip"
        layers = ["conv1", "fc8"]
        channels = "0-7,12"

        [models]
        local_seed = "fixtures/alexnet_small/training_seed_01"
        s3_seed = "s3://models/alexnet/seed_02/"
        bare_bucket = "s3://models-bucket"

        [channels_per_layer]
        conv1 = "all"
        fc8 = ["1", 7, "100-103"]

        [render]
        steps = 64
        size = 128
        objective = "negative_channel"
        batch = 16
        run_seed = 7
        param = "pixel"
        decorrelate = false
        transforms = "none"
        lr = 0.125
        precision = "bf16"
        relu_redirect = false
        fused_transforms = false
        diversity_weight = 12.5

        [storage]
        kind = "s3"
        endpoint = "https://store:8333"
        bucket = "lucid-test"
        prefix = "renders/v1"
        region = "eu-west-1"
        path_style = false
        checksum = "when_supported"
        credentials_file = "/etc/lucid/s3"
        ca_file = "/etc/lucid/ca.pem"
        retry_for_secs = 30

        [queue]
        uri = "amqps://lucid@rabbit:5671/%2f"
        uri_file = "/etc/lucid/amqp"
        tasks = "t"
        dead_letter_exchange = "x"
        dead_letter_queue = "d"
        prefetch = 8
        delivery_limit = 3
        max_message_bytes = 4096
    "#;

    /// The other side of each choice: layers and channels `all` as strings, local storage, the
    /// remaining enum values.
    const EVERY_PATH_LOCAL: &str = r#"
        run_id = "round_trip_local"
        layers = "all"
        channels = "all"

        [models]
        seed = "/data/checkpoints/seed 01"

        [render]
        objective = "neuron"
        precision = "fp32"

        [storage]
        kind = "local"
        local_dir = "/tmp/lucid-out"
        checksum = "when_required"
    "#;

    /// `spec` survives JSON (the manifest's form) and TOML (the spec file's form, read back the way
    /// [`SweepSpec::load`] reads it) unchanged.
    fn assert_round_trips(spec: &SweepSpec) {
        spec.validate().unwrap();
        let json = serde_json::to_string(spec).unwrap();
        let back: SweepSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, spec, "JSON: {json}");
        let toml = toml::to_string(spec).unwrap();
        let back = SweepSpec::parse_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(&back, spec, "TOML:\n{toml}");
    }

    #[test]
    fn spec_round_trips_through_json() {
        let layer = |s: &str| -> LayerName { s.parse().unwrap() };
        let seed = |s: &str| -> ModelId { s.parse().unwrap() };

        let spec = SweepSpec::parse_toml(EVERY_PATH_S3).unwrap();
        // what was parsed is what the file says, so that the round trip is not of defaults
        assert_eq!(
            spec.layers,
            LayerSelection::Only(vec![layer("conv1"), layer("fc8")])
        );
        assert_eq!(spec.channels, ChannelSelection::parse("0-7,12").unwrap());
        assert_eq!(spec.channels_for(&layer("conv1")), &ChannelSelection::All);
        assert_eq!(spec.channels_for(&layer("fc8")).to_string(), "1,7,100-103");
        assert_eq!(
            spec.models[&seed("local_seed")].location,
            ModelLocation::Local("fixtures/alexnet_small/training_seed_01".into())
        );
        assert_eq!(
            spec.models[&seed("s3_seed")].location,
            ModelLocation::S3 {
                bucket: "models".into(),
                prefix: "alexnet/seed_02".into()
            }
        );
        assert_eq!(
            spec.models[&seed("bare_bucket")].location,
            ModelLocation::S3 {
                bucket: "models-bucket".into(),
                prefix: String::new()
            }
        );
        let settings = RenderSettings {
            steps: 64,
            size: 128,
            objective: Objective::NegativeChannel,
            run_seed: 7,
            param: Param::Pixel,
            decorrelate: false,
            transforms: Transforms::None,
            lr: 0.125,
            precision: Precision::Bf16,
            relu_redirect: false,
            fused_transforms: false,
            diversity_weight: 12.5,
        };
        assert_eq!(
            spec.render,
            RenderSection {
                settings,
                batch: 16
            }
        );
        assert_eq!(spec.storage.checksum, ChecksumMode::WhenSupported);
        assert_eq!(
            spec.queue.uri_file.as_deref(),
            Some(Path::new("/etc/lucid/amqp"))
        );
        // the custom types serialise to their canonical forms
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["layers"], serde_json::json!(["conv1", "fc8"]));
        assert_eq!(json["channels"], "0-7,12");
        assert_eq!(json["channels_per_layer"]["conv1"], "all");
        assert_eq!(json["channels_per_layer"]["fc8"], "1,7,100-103");
        assert_eq!(json["models"]["s3_seed"], "s3://models/alexnet/seed_02");
        assert_eq!(json["models"]["bare_bucket"], "s3://models-bucket");
        assert_eq!(json["render"]["batch"], 16);
        assert_eq!(json["storage"]["kind"], "s3");
        assert_round_trips(&spec);

        let spec = SweepSpec::parse_toml(EVERY_PATH_LOCAL).unwrap();
        assert_eq!(spec.layers, LayerSelection::All);
        assert_eq!(spec.channels, ChannelSelection::All);
        assert_eq!(spec.storage.kind, StorageKind::Local);
        assert_eq!(
            (
                spec.render.settings.objective,
                spec.render.settings.precision
            ),
            (Objective::Neuron, Precision::Fp32)
        );
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            (&json["layers"], &json["channels"]),
            (&"all".into(), &"all".into())
        );
        assert_eq!(json["storage"]["kind"], "local");
        assert_round_trips(&spec);

        // and the smallest spec, all defaults
        assert_round_trips(&minimal());
    }

    #[test]
    fn spec_validation_messages_name_the_field() {
        let mut spec = minimal();
        spec.models.clear();
        assert_eq!(invalid(&spec), "models: must name at least one model");

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
    fn views_round_trip_and_default_to_the_objective() {
        let spec = SweepSpec::parse_toml(&format!(
            "{MINIMAL}\nviews = [\"channel\", \"negative_channel\", \"neuron\", \"diversity:4\"]\n[render]\ndiversity_weight = 50.0\n"
        ))
        .unwrap();
        assert_round_trips(&spec);
        assert_eq!(
            spec.views(),
            vec![
                View::Channel,
                View::NegativeChannel,
                View::Neuron,
                View::Diversity { copies: 4 }
            ]
        );
        assert_eq!(spec.settings().diversity_weight, 50.0);
        assert_eq!(
            spec.settings().for_view(View::Neuron).objective,
            Objective::Neuron
        );
        // without views: the one view of render.objective, and nothing new in the manifest's JSON
        let legacy =
            SweepSpec::parse_toml(&format!("{MINIMAL}\n[render]\nobjective = \"neuron\"\n"))
                .unwrap();
        assert_eq!(legacy.views(), vec![View::Neuron]);
        let json = serde_json::to_value(&legacy).unwrap();
        assert!(json.get("views").is_none(), "{json}");
        assert!(json["render"].get("diversity_weight").is_none(), "{json}");
    }

    #[test]
    fn bad_views_are_refused_naming_the_field() {
        let with = |extra: &str| SweepSpec::parse_toml(&format!("{MINIMAL}\n{extra}\n"));
        let unknown = with("views = [\"channel\", \"negative\"]")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown view \"negative\""), "{unknown}");
        assert!(unknown.contains(crate::view::VALID_VIEWS), "{unknown}");
        let twice = with("views = [\"neuron\", \"neuron\"]").unwrap();
        assert_eq!(invalid(&twice), "views[1]: neuron is listed twice");
        let none = with("views = []").unwrap();
        assert!(invalid(&none).starts_with("views: must name at least one view"));
        let both = with("views = [\"channel\"]\n[render]\nobjective = \"neuron\"").unwrap();
        assert!(invalid(&both).starts_with("render.objective: neuron conflicts with views"));
        let weight = with("[render]\ndiversity_weight = -1.0").unwrap();
        assert!(invalid(&weight).starts_with("render.diversity_weight: must be at least 0"));
    }
}
