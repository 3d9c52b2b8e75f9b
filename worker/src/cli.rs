//! The worker's one-off commands: `render` (a few channels to a folder, the notebook use case: a
//! one-layer `local` run, see [`RenderArgs::spec`]) and `demo-models` (`inspect` is
//! [`crate::inspect`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lucid_checkpoint::discover;
use lucid_proto::channels::ChannelSelection;
use lucid_proto::spec::{
    LayerSelection, ModelEntry, ModelLocation, NetworkRef, Objective, Param, Precision,
    QueueSection, RenderSection, RenderSettings, StorageKind, StorageSection, SweepSpec,
    Transforms, render_defaults,
};
use lucid_proto::{LayerName, ModelId, RunId, View};

use crate::device::DeviceChoice;

/// Arguments of `lucid-worker render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// A checkpoint prefix, a `.safetensors` file, or a folder of `training_seed_NN` sub-folders (every
    /// model found is rendered).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Layer to visualize: a tap of the network (conv1 … fc8 for alexnet_v2).
    #[arg(long)]
    pub layer: String,
    /// The network the models are: a built-in name, a `.toml` description (docs/networks.md), or
    /// `torchscript` with `--checkpoint` an export folder of `lucid-export`.
    #[arg(long, default_value = lucid_proto::spec::DEFAULT_NETWORK)]
    pub network: String,
    /// Channels: a list of indices and ranges, e.g. `0-7,12`, or `all`.
    #[arg(long, default_value = "0-7")]
    pub channels: String,
    /// Lucid's threshold: the image after `steps + 1` Adam updates.
    #[arg(long, default_value_t = render_defaults::DEFAULT_STEPS)]
    pub steps: u32,
    /// Image side in pixels.
    #[arg(long, default_value_t = render_defaults::DEFAULT_SIZE)]
    pub size: u32,
    /// channel, neuron or negative_channel (the one view rendered when `--views` is not given).
    #[arg(long, value_parser = parse_objective, default_value = "channel", conflicts_with = "views")]
    pub objective: Objective,
    /// The views to render of each channel, comma separated: channel, negative_channel, neuron,
    /// diversity:N (N copies optimised together, pushed apart by `--diversity-weight`).
    #[arg(long, value_delimiter = ',')]
    pub views: Vec<View>,
    /// λ of the diversity view: its copies maximise the channel minus λ times lucid's diversity term.
    #[arg(long, default_value_t = render_defaults::DEFAULT_DIVERSITY_WEIGHT)]
    pub diversity_weight: f64,
    /// Images per optimisation (0: 256 on CUDA and 8 on the CPU, as `local`).
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Image parameterisation: fft or pixel.
    #[arg(long, value_parser = parse_param, default_value = "fft")]
    pub param: Param,
    /// Skip lucid's colour decorrelation.
    #[arg(long)]
    pub no_decorrelate: bool,
    /// Transforms: standard or none.
    #[arg(long, value_parser = parse_transforms, default_value = "standard")]
    pub transforms: Transforms,
    /// Adam learning rate.
    #[arg(long, default_value_t = render_defaults::DEFAULT_LR)]
    pub lr: f64,
    /// Seed of the images' random streams (`render.run_seed`); with the model's label, layer and
    /// channel it fixes each image. `--seed` is its old name.
    #[arg(long, alias = "seed", default_value_t = render_defaults::DEFAULT_RUN_SEED)]
    pub run_seed: u64,
    /// Turn off lucid's ReLU gradient redirect of the first 17 updates.
    #[arg(long)]
    pub no_relu_redirect: bool,
    /// Apply the transforms step by step (pad, crop, resize, rotate, crop) instead of as one composed
    /// affine sample.
    #[arg(long)]
    pub unfused_transforms: bool,
    /// Arithmetic precision: fp32, tf32 (TF32 tensor cores on CUDA) or bf16 (the network in
    /// bfloat16); see the README's precision table.
    #[arg(long, value_parser = parse_precision, default_value = "tf32")]
    pub precision: Precision,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The run id: results go to `<out>/<run>/<model>/<layer>/<channel:04>.{png,json}`, with the
    /// run's `run.json`, as `local` and a sweep's bucket lay them out. Rendering again into the same
    /// run renders only what is missing, and refuses other settings.
    #[arg(long, default_value = "render")]
    pub run: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Also build the run's static gallery under `<out>/<run>/gallery/`.
    #[arg(long)]
    pub gallery: bool,
    /// Print the run's summary as one JSON document on stdout (`LocalSummary`) instead of prose.
    #[arg(long)]
    pub json: bool,
}

/// Parses a snake_case enum value the way the sweep spec spells it.
fn parse_snake<T: serde::de::DeserializeOwned>(
    s: &str,
    expected: &str,
) -> std::result::Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown value {s:?}: expected {expected}"))
}

fn parse_objective(s: &str) -> std::result::Result<Objective, String> {
    parse_snake(s, "channel, neuron or negative_channel")
}

fn parse_param(s: &str) -> std::result::Result<Param, String> {
    parse_snake(s, "fft or pixel")
}

/// Parses `fp32`, `tf32` or `bf16`.
pub fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    parse_snake(s, "fp32, tf32 or bf16")
}

fn parse_transforms(s: &str) -> std::result::Result<Transforms, String> {
    parse_snake(s, "standard or none")
}

impl RenderArgs {
    /// The render settings these arguments describe, as every task of the run carries them.
    pub fn settings(&self) -> RenderSettings {
        RenderSettings {
            steps: self.steps,
            size: self.size,
            objective: self.objective,
            run_seed: self.run_seed,
            param: self.param,
            decorrelate: !self.no_decorrelate,
            transforms: self.transforms,
            lr: self.lr,
            precision: self.precision,
            relu_redirect: !self.no_relu_redirect,
            fused_transforms: !self.unfused_transforms,
            diversity_weight: self.diversity_weight,
        }
    }

    /// The one-layer sweep these arguments describe: every model found at `--checkpoint`, the
    /// layer and channels, the settings, results in `--out`. `render` is `local` on this spec, so
    /// its output is a run like any other: sidecars of the proto schema, `run.json`, the same
    /// keys, read alike by a gallery, `verify` and a resume.
    pub fn spec(&self) -> Result<SweepSpec> {
        let network = NetworkRef::parse(&self.network)
            .map_err(anyhow::Error::msg)
            .context("--network")?;
        if network == NetworkRef::TorchScript {
            return self.spec_with(self.export_model()?);
        }
        let models = discover(&self.checkpoint)
            .with_context(|| format!("no model found at {}", self.checkpoint.display()))?
            .into_iter()
            .map(|found| {
                let label = ModelId::new(found.id.clone())
                    .with_context(|| format!("model {} at {}", found.id, found.path.display()))?;
                let entry = ModelEntry {
                    location: ModelLocation::Local(found.path),
                    network: network.clone(),
                };
                Ok((label, entry))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        self.spec_with(models)
    }

    /// A `lucid-export` folder as the one model, named after the folder.
    fn export_model(&self) -> Result<BTreeMap<ModelId, ModelEntry>> {
        let name = self
            .checkpoint
            .canonicalize()
            .with_context(|| format!("no export at {}", self.checkpoint.display()))?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = ModelId::new(name).context("the export folder's name as a model id")?;
        let entry = ModelEntry {
            location: ModelLocation::Local(self.checkpoint.clone()),
            network: NetworkRef::TorchScript,
        };
        Ok(BTreeMap::from([(id, entry)]))
    }

    fn spec_with(&self, models: BTreeMap<ModelId, ModelEntry>) -> Result<SweepSpec> {
        let layer = LayerName::new(self.layer.clone()).context("--layer")?;
        let channels = ChannelSelection::parse(&self.channels).context("--channels")?;
        // the default prefix is empty: keys start at the run, as `--run`'s doc says
        let storage = StorageSection {
            kind: StorageKind::Local,
            local_dir: Some(self.out.clone()),
            ..StorageSection::default()
        };
        let spec = SweepSpec {
            run_id: RunId::new(self.run.clone()).context("--run")?,
            models,
            layers: LayerSelection::Only(vec![layer]),
            channels,
            channels_per_layer: BTreeMap::new(),
            views: (!self.views.is_empty()).then(|| self.views.clone()),
            render: RenderSection {
                settings: self.settings(),
                batch: u32::try_from(self.batch).context("--batch")?,
            },
            storage,
            queue: QueueSection::default(),
            probe: None,
        };
        spec.validate().context("invalid render arguments")?;
        Ok(spec)
    }
}

/// `lucid-worker demo-probe-set`: the generated stimuli ([`lucid_probe::stimuli`]) as the files of a
/// probe set, gratings as PNG and colour fields as JPEG; returns how many were written.
pub fn demo_probe_set(out: &Path) -> Result<usize> {
    std::fs::create_dir_all(out).with_context(|| format!("failed to create {}", out.display()))?;
    let all = lucid_probe::stimuli::stimuli();
    for stimulus in &all {
        let path = out.join(stimulus.file_name());
        std::fs::write(&path, stimulus.encoded())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(all.len())
}

/// Writes `seeds` synthetic models as `<out>/training_seed_NN/model.safetensors`: the small demo
/// network, or random weights at the ecoset widths.
pub fn demo_models(out: &Path, seeds: u32, ecoset_widths: bool) -> Result<()> {
    use crate::synthetic::{ECOSET_WIDTHS, demo_filters, write_model, write_random_model};
    for seed in 1..=seeds {
        let path = out
            .join(format!("training_seed_{seed:02}"))
            .join("model.safetensors");
        if ecoset_widths {
            write_random_model(&path, ECOSET_WIDTHS, u64::from(seed))
        } else {
            write_model(&path, &demo_filters(), u64::from(seed))
        }
        .with_context(|| format!("failed to write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
