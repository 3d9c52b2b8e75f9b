//! The probe pass of a run (issue 15, docs/dataset-examples.md), coordinated like its renders: the
//! probe set listed once into the run's index (`probe/images.json`), one task per model × shard
//! for every shard whose sidecar is not stored, and the merge of each model's shards into its
//! examples, means matrices and `probe.json` — the same files `lucid-worker probe` writes for one
//! model on one machine. `submit` and `local` plan through [`plan_probe`]; `examples` and `local`
//! merge through [`merge`].
//!
//! Merging is exact, not approximate: a shard's lists count its own usable images from 0 and are
//! shifted by the usable images of the shards before it, which keeps their order (the lists' order
//! is total), so the merged lists equal one pass over the whole set; the means rows are concatenated
//! in shard order.

use futures::{StreamExt, TryStreamExt};
use lucid_network::Network;
use lucid_probe::output::{
    self, LayerReport, ModelReport, ProbeReport, ProbeSetReport, ProbeTiming,
};
use lucid_probe::shard::{self, Expected};
use lucid_probe::{ChannelExamples, Preprocessing};
use lucid_proto::keys::{PROBE_IMAGES_DIR, ProbeOutput, ShardPart};
use lucid_proto::probe::{ProbeIndex, ProbeModel, ProbeTask, ShardSidecar, Skipped};
use lucid_proto::spec::ProbeSection;
use lucid_proto::{Envelope, KeyPrefix, SweepSpec};
use lucid_storage::{FileSet, Store};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::PlannedRun;
use crate::progress::{StoredRun, get_listed};

/// A run's probe tasks, as planned against what is stored.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    /// The probe set as the run lists it.
    pub index: ProbeIndex,
    /// Whether this call wrote the index (the run's first submit).
    pub wrote_index: bool,
    /// Tasks in all: models × shards.
    pub expected: u64,
    /// The tasks whose shard is not stored yet.
    pub missing: Vec<ProbeTask>,
}

/// The probe tasks of `run` that `stored` does not have yet, the index written on the first call and
/// checked against a fresh listing on every later one; `None` for a spec without `[probe]`. An
/// empty probe set, a side too small for a layer or a task too large for the queue is refused
/// before anything is written.
pub async fn plan_probe(
    spec: &SweepSpec,
    run: &PlannedRun,
    store: &Store,
    prefix: &KeyPrefix,
    stored: &StoredRun,
) -> Result<Option<ProbePlan>> {
    let Some(section) = &spec.probe else {
        return Ok(None);
    };
    let models = probe_models(section, run)?;
    let (index, wrote_index) =
        ensure_index(spec, section, store, prefix, stored.probe_index).await?;
    let mut missing = Vec::new();
    // shard by shard, every model's task of a shard together: a worker receiving them together
    // reads the shard once for all of them
    for (shard, files) in index.shards() {
        for model in &models {
            if stored
                .probe_shards
                .contains(&(model.model_id.clone(), shard))
            {
                continue;
            }
            let task = ProbeTask::new(spec.run_id.clone(), model, section, shard, files.to_vec());
            let bytes = task.encode().len();
            if bytes > spec.queue.max_message_bytes {
                return Err(Error::ProbeTaskTooLarge {
                    task_id: task.task_id().to_owned(),
                    bytes,
                    max: spec.queue.max_message_bytes,
                });
            }
            missing.push(task);
        }
    }
    Ok(Some(ProbePlan {
        expected: models.len() as u64 * u64::from(index.shard_count()),
        index,
        wrote_index,
        missing,
    }))
}

/// Each planned model with the layers it renders, every one checked to have an output at the probe
/// side.
fn probe_models(section: &ProbeSection, run: &PlannedRun) -> Result<Vec<ProbeModel>> {
    let mut models = Vec::new();
    for (model, checkpoint) in run.plan.models.iter().zip(&run.checkpoints) {
        if model.model_id.as_str() == PROBE_IMAGES_DIR {
            return Err(Error::ProbeModelReserved {
                model: model.model_id.to_string(),
            });
        }
        for layer in &model.layers {
            let needs = checkpoint
                .table
                .min_sides
                .get(&layer.layer)
                .copied()
                .unwrap_or(0);
            if (section.side as usize) < needs {
                return Err(Error::ProbeSideTooSmall {
                    model: model.model_id.to_string(),
                    layer: layer.layer.to_string(),
                    side: section.side,
                    needs: needs as u32,
                });
            }
        }
        models.push(ProbeModel {
            model_id: model.model_id.clone(),
            location: model.location.clone(),
            network: model.network.clone(),
            layers: model.layers.iter().map(|l| l.layer.clone()).collect(),
        });
    }
    Ok(models)
}

/// The probe set listed now, as an index; written when the run has none, else checked against the
/// stored one (a set changed under a run would mix two sets in one ranking).
async fn ensure_index(
    spec: &SweepSpec,
    section: &ProbeSection,
    store: &Store,
    prefix: &KeyPrefix,
    stored: bool,
) -> Result<(ProbeIndex, bool)> {
    let location = section.images.to_string();
    let set = FileSet::open(&section.images, &spec.storage)
        .await
        .map_err(|e| Error::storage(format!("open probe set {location}"), e))?;
    let listed = set
        .list()
        .await
        .map_err(|e| Error::storage(format!("list probe set {location}"), e))?;
    let fresh = ProbeIndex::new(section, listed);
    if fresh.files.is_empty() {
        return Err(Error::EmptyProbeSet { location });
    }
    let key = prefix.probe_index_key(&spec.run_id);
    if !stored {
        store
            .put(&key, fresh.encode(), "application/json")
            .await
            .map_err(|e| Error::storage(format!("put {key}"), e))?;
        tracing::info!(%key, files = fresh.files.len(), shards = fresh.shard_count(), "wrote probe set index");
        return Ok((fresh, true));
    }
    let bytes = get_listed(store, &key).await?;
    let existing = ProbeIndex::decode(&bytes).map_err(|e| Error::Decode {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    match index_difference(&existing, &fresh) {
        Some(difference) => Err(Error::ProbeSetChanged { key, difference }),
        None => Ok((existing, false)),
    }
}

/// What differs between the stored index and the one listed now, if anything.
fn index_difference(stored: &ProbeIndex, now: &ProbeIndex) -> Option<String> {
    if stored.probe_set != now.probe_set {
        return Some(format!(
            "probe.images was {}, is {}",
            stored.probe_set, now.probe_set
        ));
    }
    if stored.shard != now.shard {
        return Some(format!(
            "probe.shard was {}, is {}",
            stored.shard, now.shard
        ));
    }
    if stored.files != now.files {
        let first = stored
            .files
            .iter()
            .zip(&now.files)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("{a} is now {b}"))
            .unwrap_or_else(|| "one list is longer".into());
        return Some(format!(
            "the set held {} files, it holds {} now ({first})",
            stored.files.len(),
            now.files.len()
        ));
    }
    None
}

/// What [`merge`] wrote for one model.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MergedModel {
    /// The model.
    pub model: String,
    /// Usable images (rows of each means matrix).
    pub images: usize,
    /// Files set aside, at listing or by a worker.
    pub skipped: Vec<Skipped>,
    /// Shards merged.
    pub shards: u32,
    /// The key of its `probe.json`.
    pub report_key: String,
}

/// What [`merge`] wrote: each model's outputs and the prepared images its examples show.
#[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct Merged {
    /// Per model.
    pub models: Vec<MergedModel>,
    /// The prepared probe images (`probe/images/…`) the examples refer to.
    pub previews: PreviewCount,
}

/// The prepared probe images the gallery shows: one per probe file that is any channel's example
/// in any model, written once (a merge again writes only the missing ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct PreviewCount {
    /// Written by this merge.
    pub written: usize,
    /// Stored before it.
    pub already_stored: usize,
}

impl std::fmt::Display for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for model in &self.models {
            writeln!(
                f,
                "{}: {} images from {} shards ({} files set aside) → {}",
                model.model,
                model.images,
                model.shards,
                model.skipped.len(),
                model.report_key
            )?;
            for skipped in &model.skipped {
                writeln!(f, "  set aside {}: {}", skipped.file, skipped.reason)?;
            }
        }
        writeln!(
            f,
            "prepared probe images for the gallery: {} written, {} already stored",
            self.previews.written, self.previews.already_stored
        )
    }
}

/// Probe files prepared at once while writing previews: decoding is CPU work on the blocking pool,
/// reading waits on the store.
const PREVIEW_CONCURRENCY: usize = 16;

/// Merges every model's shards into its outputs (`probe/{model}/…`), then stores the prepared
/// picture of every probe file any example refers to (`probe/images/{file:06}.jpg`, for the
/// gallery); refused, naming the first missing shard, while any shard of a model is not stored.
/// Writing the same outputs again gives the same bytes, except `probe.json`'s timing.
pub async fn merge(
    spec: &SweepSpec,
    run: &PlannedRun,
    store: &Store,
    prefix: &KeyPrefix,
) -> Result<Merged> {
    let Some(section) = &spec.probe else {
        return Ok(Merged::default());
    };
    let (_, stored) = StoredRun::list(store, &prefix.run_prefix(&spec.run_id)).await?;
    let index_key = prefix.probe_index_key(&spec.run_id);
    let index =
        ProbeIndex::decode(&get_listed(store, &index_key).await?).map_err(|e| Error::Decode {
            key: index_key.clone(),
            reason: e.to_string(),
        })?;
    let models = probe_models(section, run)?;
    let mut merged = Vec::new();
    let mut referenced = std::collections::BTreeSet::new();
    for ((model, checkpoint), planned) in models.iter().zip(&run.checkpoints).zip(&run.plan.models)
    {
        let widths: Vec<(String, usize)> = planned
            .layers
            .iter()
            .map(|l| (l.layer.to_string(), l.width))
            .collect();
        let shards = index.shard_count();
        let missing: Vec<u32> = (0..shards)
            .filter(|s| !stored.probe_shards.contains(&(model.model_id.clone(), *s)))
            .collect();
        if let Some(&first) = missing.first() {
            return Err(Error::ProbeIncomplete {
                model: model.model_id.to_string(),
                missing: missing.len(),
                shards,
                first,
            });
        }
        let source = MergeSource {
            store,
            prefix,
            spec,
            section,
        };
        let (model_merge, shown) = source
            .model(model, &widths, &index, checkpoint.geometry.as_ref())
            .await?;
        referenced.extend(shown);
        merged.push(model_merge);
    }
    let previews =
        write_previews(spec, section, store, prefix, &index, &referenced, &stored).await?;
    Ok(Merged {
        models: merged,
        previews,
    })
}

/// Stores `probe/images/{file:06}.jpg` for every file named in `referenced` that is not stored yet,
/// [`PREVIEW_CONCURRENCY`] at a time.
async fn write_previews(
    spec: &SweepSpec,
    section: &ProbeSection,
    store: &Store,
    prefix: &KeyPrefix,
    index: &ProbeIndex,
    referenced: &std::collections::BTreeSet<String>,
    stored: &StoredRun,
) -> Result<PreviewCount> {
    let files: Vec<u32> = referenced
        .iter()
        .filter_map(|name| index.files.binary_search(name).ok())
        .map(|i| i as u32)
        .collect();
    let missing: Vec<u32> = files
        .iter()
        .copied()
        .filter(|f| !stored.probe_images.contains(f))
        .collect();
    let count = PreviewCount {
        written: missing.len(),
        already_stored: files.len() - missing.len(),
    };
    if missing.is_empty() {
        return Ok(count);
    }
    let location = section.images.to_string();
    let set = FileSet::open(&section.images, &spec.storage)
        .await
        .map_err(|e| Error::storage(format!("open probe set {location}"), e))?;
    let how = Preprocessing::for_side(section.side);
    let one = |file: u32| {
        let (set, location) = (&set, &location);
        let name = index.files[file as usize].clone();
        let key = prefix.probe_image_key(&spec.run_id, file);
        async move {
            let bytes = set
                .read(&name)
                .await
                .map_err(|e| Error::storage(format!("read probe image {name}"), e))?;
            let jpeg = tokio::task::spawn_blocking({
                let name = name.clone();
                move || {
                    lucid_probe::preview_jpeg(
                        &name,
                        &bytes,
                        how,
                        lucid_probe::DecodeLimits::default(),
                    )
                }
            })
            .await
            .map_err(|source| Error::BlockingTask {
                what: format!("preparing probe image {name} for the gallery"),
                source,
            })?
            .map_err(|source| Error::ProbePreview {
                file: name.clone(),
                location: location.clone(),
                source,
            })?;
            store
                .put(&key, jpeg, "image/jpeg")
                .await
                .map_err(|e| Error::storage(format!("put {key}"), e))
        }
    };
    futures::stream::iter(missing.into_iter().map(one))
        .buffer_unordered(PREVIEW_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::info!(
        written = count.written,
        already_stored = count.already_stored,
        "wrote prepared probe images"
    );
    Ok(count)
}

/// Where one model's shards are read from and its outputs written to.
struct MergeSource<'a> {
    store: &'a Store,
    prefix: &'a KeyPrefix,
    spec: &'a SweepSpec,
    section: &'a ProbeSection,
}

/// One layer's merged lists and means.
struct LayerMerge {
    width: usize,
    channels: Vec<ChannelExamples>,
    means: Vec<f32>,
}

/// One model's shards, merged so far.
struct ModelMerge {
    layers: Vec<LayerMerge>,
    images: Vec<String>,
    skipped: Vec<Skipped>,
    read_seconds: f64,
    forward_seconds: f64,
}

impl MergeSource<'_> {
    /// Reads every shard of `model` in order, merges them and writes its outputs.
    async fn model(
        &self,
        model: &ProbeModel,
        widths: &[(String, usize)],
        index: &ProbeIndex,
        geometry: Option<&Network>,
    ) -> Result<(MergedModel, Vec<String>)> {
        let k = self.section.k as usize;
        let mut acc = ModelMerge {
            layers: widths
                .iter()
                .map(|(_, width)| LayerMerge {
                    width: *width,
                    channels: vec![ChannelExamples::new(k); *width],
                    means: Vec::new(),
                })
                .collect(),
            images: Vec::new(),
            skipped: index.skipped.clone(),
            read_seconds: 0.0,
            forward_seconds: 0.0,
        };
        for shard in 0..index.shard_count() {
            self.add_shard(model, shard, widths, &mut acc).await?;
        }
        let shown: std::collections::BTreeSet<u32> = acc
            .layers
            .iter()
            .flat_map(|layer| &layer.channels)
            .flat_map(ChannelExamples::images)
            .collect();
        let names = shown
            .into_iter()
            .filter_map(|i| acc.images.get(i as usize).cloned())
            .collect();
        let written = self
            .write(model, acc, geometry, index.shard_count())
            .await?;
        Ok((written, names))
    }

    /// Reads shard `shard` and merges it into `acc`.
    async fn add_shard(
        &self,
        model: &ProbeModel,
        shard: u32,
        widths: &[(String, usize)],
        acc: &mut ModelMerge,
    ) -> Result<()> {
        let run = &self.spec.run_id;
        let sidecar_key =
            self.prefix
                .probe_shard_key(run, &model.model_id, shard, ShardPart::Sidecar);
        let data_key = self
            .prefix
            .probe_shard_key(run, &model.model_id, shard, ShardPart::Data);
        let sidecar =
            ShardSidecar::decode(&get_listed(self.store, &sidecar_key).await?).map_err(|e| {
                Error::Decode {
                    key: sidecar_key.clone(),
                    reason: e.to_string(),
                }
            })?;
        check_sidecar(&sidecar, widths, self.section).map_err(|reason| Error::Decode {
            key: sidecar_key.clone(),
            reason,
        })?;
        let data = get_listed(self.store, &data_key).await?;
        let expected = Expected {
            layers: widths,
            images: sidecar.images.len(),
            k: self.section.k as usize,
        };
        let layers = shard::decode(&data, expected).map_err(|source| Error::ProbeShard {
            key: data_key.clone(),
            source,
        })?;
        let offset = acc.images.len() as u32;
        for (merged, layer) in acc.layers.iter_mut().zip(layers) {
            let channels = std::mem::take(&mut merged.channels);
            merged.channels = channels
                .into_iter()
                .zip(&layer.channels)
                .map(|(so_far, more)| so_far.merge(&more.shifted(offset)))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::ProbeShard {
                    key: data_key.clone(),
                    source: shard::ShardError::Ranking {
                        tensor: layer.layer.clone(),
                        source: e,
                    },
                })?;
            merged.means.extend_from_slice(&layer.means);
        }
        acc.images.extend(sidecar.images);
        acc.skipped.extend(sidecar.skipped);
        acc.read_seconds += sidecar.read_seconds;
        acc.forward_seconds += sidecar.forward_seconds;
        Ok(())
    }

    /// Writes each layer's examples and means, then `probe.json`.
    async fn write(
        &self,
        model: &ProbeModel,
        acc: ModelMerge,
        geometry: Option<&Network>,
        shards: u32,
    ) -> Result<MergedModel> {
        let run = &self.spec.run_id;
        let side = self.section.side as usize;
        let images = acc.images.len();
        let mut reports = Vec::new();
        for (layer, merged) in model.layers.iter().zip(&acc.layers) {
            let field = match geometry {
                Some(network) => Some(
                    network
                        .tap(layer.as_str())
                        .and_then(|tap| network.receptive_field(tap, side))
                        .map_err(|source| Error::Network {
                            model: model.model_id.to_string(),
                            location: model.location.to_string(),
                            source: Box::new(source),
                        })?,
                ),
                None => None,
            };
            let examples = output::examples_json(&merged.channels, field, side);
            self.put(
                self.prefix
                    .probe_output_key(run, &model.model_id, ProbeOutput::Examples(layer)),
                examples,
                "application/json",
            )
            .await?;
            let means = output::means_safetensors(images, merged.width, &merged.means).map_err(
                |source| Error::ProbeShard {
                    key: layer.to_string(),
                    source,
                },
            )?;
            self.put(
                self.prefix
                    .probe_output_key(run, &model.model_id, ProbeOutput::Means(layer)),
                means,
                "application/octet-stream",
            )
            .await?;
            reports.push(LayerReport {
                layer: layer.to_string(),
                channels: merged.width,
                receptive_field: field.map(Into::into),
            });
        }
        let report = ProbeReport {
            schema_version: output::REPORT_SCHEMA_VERSION,
            model: ModelReport {
                label: model.model_id.to_string(),
                network: model.network.to_string(),
            },
            layers: reports,
            probe_set: ProbeSetReport {
                images: acc.images,
                preprocessing: Preprocessing::for_side(self.section.side),
                skipped: acc.skipped.clone(),
            },
            timing: ProbeTiming::of(images, acc.read_seconds, acc.forward_seconds),
        };
        let report_key = self
            .prefix
            .probe_output_key(run, &model.model_id, ProbeOutput::Report);
        let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
        self.put(report_key.clone(), body, "application/json")
            .await?;
        tracing::info!(model = %model.model_id, images, shards, "merged probe pass");
        Ok(MergedModel {
            model: model.model_id.to_string(),
            images,
            skipped: acc.skipped,
            shards,
            report_key,
        })
    }

    async fn put(&self, key: String, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        self.store
            .put(&key, bytes, content_type)
            .await
            .map_err(|e| Error::storage(format!("put {key}"), e))
    }
}

/// A sidecar's layers, `k` and side must be the ones planned: a shard from another plan would merge
/// into the wrong lists.
fn check_sidecar(
    sidecar: &ShardSidecar,
    widths: &[(String, usize)],
    section: &ProbeSection,
) -> std::result::Result<(), String> {
    let layers: Vec<(String, usize)> = sidecar
        .layers
        .iter()
        .map(|l| (l.layer.to_string(), l.channels as usize))
        .collect();
    if layers != widths {
        return Err(format!(
            "the shard has layers {layers:?}, the run plans {widths:?}"
        ));
    }
    if (sidecar.k, sidecar.side) != (section.k, section.side) {
        return Err(format!(
            "the shard was probed with k {} at side {}, the run asks for k {} at side {}",
            sidecar.k, sidecar.side, section.k, section.side
        ));
    }
    Ok(())
}
