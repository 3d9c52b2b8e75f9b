//! Building a run's plan from its spec and the real checkpoints: layer widths are read from each model's
//! model file, never assumed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lucid_network::Network;
use lucid_network::torchscript::Descriptor;
use lucid_proto::geometry::{LayerTable, plan_checked};
use lucid_proto::{CheckpointRef, ModelId, ModelLocation, Plan, SweepSpec};

use crate::error::{Error, Result};
use crate::estimate::Estimate;
use crate::models::{LoadedNetwork, ModelCache, load_network, open_local};

/// Whether [`read_checkpoints`] hashes each checkpoint (needed for the run manifest, slow for big ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digests {
    /// Compute each checkpoint's content digest.
    Compute,
    /// Only read the layer widths.
    Skip,
}

/// What was read from one model's checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCheckpoint {
    /// The model.
    pub model_id: ModelId,
    /// Where the spec says its model lives.
    pub location: ModelLocation,
    /// Output channels and smallest input side per layer, in network order.
    pub table: LayerTable,
    /// The checkpoint's content digest, when asked for.
    pub digest: Option<String>,
    /// The digest of its network description.
    pub network_digest: String,
    /// The network resolved against the checkpoint, for its geometry (the receptive fields a
    /// dataset example's crop is cut to); `None` for a TorchScript export, which carries none.
    pub geometry: Option<Network>,
}

/// A plan together with the checkpoints it was made from.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// Every task of the run.
    pub plan: Plan,
    /// One entry per model, in model id order.
    pub checkpoints: Vec<ModelCheckpoint>,
}

impl PlannedRun {
    /// The manifest's checkpoint table; models without a digest get an empty one.
    pub fn checkpoint_refs(&self) -> BTreeMap<ModelId, CheckpointRef> {
        self.checkpoints
            .iter()
            .map(|c| {
                (
                    c.model_id.clone(),
                    CheckpointRef {
                        location: c.location.clone(),
                        digest: c.digest.clone().unwrap_or_default(),
                        network_digest: c.network_digest.clone(),
                    },
                )
            })
            .collect()
    }
}

/// Reads every model's checkpoint (downloading S3 ones into `cache`) and returns its layer widths and,
/// with [`Digests::Compute`], its digest. File reading and hashing run on blocking threads.
pub async fn read_checkpoints(
    spec: &SweepSpec,
    cache: &ModelCache,
    digests: Digests,
) -> Result<Vec<ModelCheckpoint>> {
    let mut out = Vec::with_capacity(spec.models.len());
    for (model, entry) in &spec.models {
        let location = &entry.location;
        let path = cache
            .materialize(location, &spec.storage)
            .await
            .map_err(|e| Error::storage(format!("fetch model {location}"), e))?;
        let network = load_network(model, &entry.network, &spec.storage, cache).await?;
        let model = model.clone();
        let location = location.clone();
        let read = tokio::task::spawn_blocking(move || match network {
            Some(network) => read_one(&model, &location, &path, network, digests),
            None => read_export(&model, &location, &path, digests),
        })
        .await
        .map_err(|e| Error::Model {
            location: "checkpoint reader".into(),
            reason: format!("reader thread failed: {e}"),
        })??;
        tracing::info!(
            model = %read.model_id,
            location = %read.location,
            layers = read.table.widths.len(),
            digest = read.digest.as_deref().unwrap_or("-"),
            "read checkpoint"
        );
        out.push(read);
    }
    Ok(out)
}

fn read_one(
    model: &ModelId,
    location: &ModelLocation,
    path: &std::path::Path,
    network: LoadedNetwork,
    digests: Digests,
) -> Result<ModelCheckpoint> {
    let opened = open_local(model, location, path)?;
    let checkpoint_error = |source| Error::Checkpoint {
        model: model.to_string(),
        location: location.to_string(),
        source: Box::new(source),
    };
    let net = Network::resolve(network.description, &opened.file)
        .map_err(|source| network_error(model, location, source))?;
    let table = layer_table(&net.layer_table(), location)?;
    let digest = match digests {
        Digests::Compute => Some(opened.file.digest().map_err(checkpoint_error)?),
        Digests::Skip => None,
    };
    Ok(ModelCheckpoint {
        model_id: model.clone(),
        location: location.clone(),
        table,
        digest,
        network_digest: network.digest,
        geometry: Some(net),
    })
}

fn network_error(
    model: &ModelId,
    location: &ModelLocation,
    source: lucid_network::NetworkError,
) -> Error {
    Error::Network {
        model: model.to_string(),
        location: location.to_string(),
        source: Box::new(source),
    }
}

/// `(layer, width, smallest input side)` rows as planning's table; a layer name that is not a valid
/// identifier is the model's fault.
fn layer_table(rows: &[(String, usize, usize)], location: &ModelLocation) -> Result<LayerTable> {
    LayerTable::from_layers(
        rows.iter()
            .map(|(name, width, min)| (name.as_str(), *width, *min)),
    )
    .map_err(|e| Error::Model {
        location: location.to_string(),
        reason: e.to_string(),
    })
}

/// The layer table of a TorchScript export, from its descriptor (`path` is the export folder); the
/// descriptor's digest (which covers every module's SHA-256) stands for the checkpoint's.
fn read_export(
    model: &ModelId,
    location: &ModelLocation,
    path: &std::path::Path,
    digests: Digests,
) -> Result<ModelCheckpoint> {
    let (descriptor, digest) =
        Descriptor::read(path).map_err(|source| network_error(model, location, source))?;
    let table = layer_table(&descriptor.layer_table(), location)?;
    Ok(ModelCheckpoint {
        model_id: model.clone(),
        location: location.clone(),
        table,
        digest: (digests == Digests::Compute).then(|| digest.clone()),
        network_digest: digest,
        geometry: None,
    })
}

/// The plan of `spec` over the layer tables in `checkpoints`; refused when the render size leaves a
/// planned layer no output (every one of its tasks would be dead-lettered by the workers).
pub fn build_plan(spec: &SweepSpec, checkpoints: Vec<ModelCheckpoint>) -> Result<PlannedRun> {
    let tables: BTreeMap<ModelId, LayerTable> = checkpoints
        .iter()
        .map(|c| (c.model_id.clone(), c.table.clone()))
        .collect();
    let plan = plan_checked(spec, &tables)?;
    Ok(PlannedRun { plan, checkpoints })
}

/// Reads the checkpoints and plans the run in one step.
pub async fn plan_run(
    spec: &SweepSpec,
    cache: &ModelCache,
    digests: Digests,
) -> Result<PlannedRun> {
    let checkpoints = read_checkpoints(spec, cache, digests).await?;
    build_plan(spec, checkpoints)
}

/// What `plan` prints: the run's tasks and their estimated GPU time.
#[derive(Debug, Clone)]
pub struct PlanReport {
    /// Every task of the run.
    pub plan: Plan,
    /// Its single-GPU time at the rates used.
    pub estimate: Estimate,
}

impl std::fmt::Display for PlanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render_report(&self.plan, &self.estimate))
    }
}

/// The `plan` command's report: tasks per model and layer, the total, and the GPU time estimate with
/// the measurement it used (device, precision, batch, date, and which file).
pub fn render_report(plan: &Plan, estimate: &Estimate) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}: settings {} ({} steps, {} px)",
        plan.run_id,
        plan.settings.fingerprint(),
        plan.settings.steps,
        plan.settings.size
    );
    let views = plan.views.len() as u64;
    if views > 1 {
        let names: Vec<String> = plan.views.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "views: {} (each its own task)", names.join(", "));
    }
    for model in plan.counts() {
        let _ = writeln!(out, "model {}: {} tasks", model.model_id, model.tasks);
        for layer in &model.layers {
            let per_view = if views > 1 {
                format!(" x {views} views")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<8} {:>6} of {:>6} channels{per_view}",
                layer.layer.as_str(),
                layer.tasks / views.max(1),
                layer.width
            );
        }
    }
    let _ = writeln!(
        out,
        "total: {} tasks, {} images",
        plan.task_count(),
        plan.image_count()
    );
    let rates = &estimate.rates;
    let _ = writeln!(
        out,
        "estimated GPU time (engine rates: {}; {}):",
        rates.file.label(),
        rates.origin_label()
    );
    for layer in &estimate.layers {
        let _ = writeln!(
            out,
            "  {:<8} {:>7} images at {:>7.2} img/s = {}{}",
            layer.layer.as_str(),
            layer.images,
            layer.images_per_second,
            crate::estimate::format_duration(layer.seconds),
            if layer.measured {
                ""
            } else {
                " (not measured: mean of the measured layers)"
            }
        );
    }
    let _ = writeln!(
        out,
        "  total {} on one GPU",
        crate::estimate::format_duration(estimate.total_seconds)
    );
    if plan.settings.precision != rates.file.precision {
        let _ = writeln!(
            out,
            "  (this run renders in {}; the rates were measured in {})",
            precision_name(plan.settings.precision),
            precision_name(rates.file.precision)
        );
    }
    out
}

/// `bf16`, as the spec spells it.
fn precision_name(precision: lucid_proto::spec::Precision) -> String {
    serde_json::to_value(precision)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::{RateTable, RatesOrigin, estimate};

    /// The text report, as people read it: counts, the estimate and the rates' provenance.
    #[test]
    fn report_prose_names_counts_rates_and_provenance() {
        let spec = SweepSpec::parse_toml(
            "run_id = \"r1\"\nchannels = \"0-1\"\nlayers = \"conv1,fc8\"\nmodels = { s1 = \"/m\" }\n\
             [render]\nprecision = \"tf32\"\n[storage]\nkind = \"local\"\nlocal_dir = \"/out\"\n",
        )
        .expect("spec");
        let model = spec.models.keys().next().cloned().expect("model");
        let table = LayerTable::from_layers([("conv1", 4, 1), ("fc8", 3, 1)]).expect("table");
        let plan = plan_checked(&spec, &[(model, table)].into()).expect("plan");
        let built_in = RateTable::built_in().expect("built-in rates");
        let text = render_report(&plan, &estimate(&plan, &built_in));
        for line in [
            "model s1: 4 tasks",
            "  conv1         2 of      4 channels",
            "total: 4 tasks, 4 images",
            "estimated GPU time (engine rates: NVIDIA H200, bf16, B=512, 512 steps, 224 px, measured \
             2026-11-26; built in: docs/measurements/rates-h200-2026-11-26-bf16.json):",
            "  (this run renders in tf32; the rates were measured in bf16)",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("not measured"), "{text}");

        // a file without fc8 stands in its mean, and says so
        let mut file = built_in.file.clone();
        file.layers.retain(|l| l.layer.as_str() != "fc8");
        let partial = RateTable {
            file,
            origin: RatesOrigin::File("my-gpu.json".into()),
        };
        let text = render_report(&plan, &estimate(&plan, &partial));
        assert!(text.contains("; my-gpu.json):"), "{text}");
        let fc8 = text
            .lines()
            .find(|l| l.trim_start().starts_with("fc8") && l.contains("img/s"))
            .expect("fc8 estimate line");
        assert!(
            fc8.ends_with("(not measured: mean of the measured layers)"),
            "{fc8}"
        );
    }

    /// Every view's images are counted: neuron and negative images cost what channel images do,
    /// each diversity copy is an image.
    #[test]
    fn the_estimate_counts_every_views_images() {
        let spec = SweepSpec::parse_toml(
            "run_id = \"r1\"\nchannels = \"0-1\"\nlayers = \"conv1\"\nmodels = { s1 = \"/m\" }\n\
             views = [\"channel\", \"neuron\", \"diversity:4\"]\n\
             [storage]\nkind = \"local\"\nlocal_dir = \"/out\"\n",
        )
        .expect("spec");
        let model = spec.models.keys().next().cloned().expect("model");
        let table = LayerTable::from_layers([("conv1", 4, 1)]).expect("table");
        let plan = plan_checked(&spec, &[(model, table)].into()).expect("plan");
        let built_in = RateTable::built_in().expect("built-in rates");
        let one_view = {
            let mut single = plan.clone();
            single.views = vec![lucid_proto::View::Channel];
            estimate(&single, &built_in)
        };
        let all = estimate(&plan, &built_in);
        assert_eq!((all.layers[0].tasks, all.layers[0].images), (6, 12));
        let ratio = all.total_seconds / one_view.total_seconds;
        assert!((ratio - 6.0).abs() < 1e-9, "{ratio}");
        let text = render_report(&plan, &all);
        for line in [
            "views: channel, neuron, diversity:4 (each its own task)",
            "  conv1         2 of      4 channels x 3 views",
            "total: 6 tasks, 12 images",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
