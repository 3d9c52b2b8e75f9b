//! `lucid-coordinator match` (and `local` at the end of a probe pass over several seeds): which
//! channels recur across the seeds of a run (issue 16, docs/matching.md), computed from the probe
//! pass's stored means alone, so it can be run again with other options without probing again.
//!
//! Per layer every model's `probe/{model}/{layer}.means.safetensors` is read, every pair of seeds
//! correlated and matched (`lucid_match`, on the blocking pool: it is CPU work), and
//! `match/layers/{layer}.json` and `.csv` written; `match/summary.json` holds every layer's mean
//! matched correlation (the curve over depth) and consistency matrix.

use lucid_match::{LayerMatch, MatchOptions, SeedMeans, Timing, match_layer};
use lucid_probe::output::{ProbeReport, read_means};
use lucid_proto::keys::{MatchOutput, ProbeOutput};
use lucid_proto::{KeyPrefix, LayerName, SweepSpec};
use lucid_storage::Store;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::PlannedRun;

/// `match`'s choices besides the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchSettings {
    /// The reference model (default: the first).
    pub reference: Option<String>,
    /// Unique below this best correlation.
    pub unique_below: f32,
    /// `k` of the best buddies.
    pub buddies_k: usize,
    /// Images the RDMs are over.
    pub rdm_images: usize,
}

impl Default for MatchSettings {
    fn default() -> Self {
        let recommended = MatchOptions::recommended();
        MatchSettings {
            reference: None,
            unique_below: recommended.unique_below,
            buddies_k: recommended.buddies_k,
            rdm_images: recommended.rdm_images,
        }
    }
}

/// What `match` wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchRunOutput {
    /// The run.
    pub run_id: String,
    /// The models matched, in the order of every matrix.
    pub models: Vec<String>,
    /// The reference model.
    pub reference: String,
    /// Per layer, in network order.
    pub layers: Vec<LayerSummary>,
    /// The key of `match/summary.json` (this document's `layers`).
    pub summary_key: String,
}

/// One layer's results, as `match/summary.json` and the command's output list them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// The layer.
    pub layer: String,
    /// Probe images correlated over.
    pub images: usize,
    /// The mean over pairs of seeds of the assignment's mean correlation.
    pub mean_matched_correlation: f64,
    /// Per pair of seeds (`a`, `b`, mean assigned correlation).
    pub pairs: Vec<(String, String, f64)>,
    /// Reference channels whose partners agree in every pair of seeds.
    pub universal: usize,
    /// Channels unique to their seed.
    pub unique: usize,
    /// Pearson's r of every pair of seeds' RDMs.
    pub consistency: Vec<Vec<f64>>,
    /// Where the time went.
    pub timing: Timing,
    /// The key of the layer's JSON.
    pub key: String,
}

impl LayerSummary {
    fn of(m: &LayerMatch, key: String) -> Self {
        LayerSummary {
            layer: m.layer.clone(),
            images: m.images,
            mean_matched_correlation: m.mean_matched_correlation,
            pairs: m
                .pairs
                .iter()
                .map(|p| (p.a.clone(), p.b.clone(), p.mean_assigned))
                .collect(),
            universal: m.reference_rows.iter().filter(|r| r.universal).count(),
            unique: m.unique.len(),
            consistency: m.consistency.r.clone(),
            timing: m.timing,
            key,
        }
    }
}

impl std::fmt::Display for MatchRunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} models matched against {} → {}",
            self.models.len(),
            self.reference,
            self.summary_key
        )?;
        for l in &self.layers {
            let t = &l.timing;
            writeln!(
                f,
                "{}: mean matched r {:.3} over {} images, {} universal, {} unique; {:.1} s correlation, {:.1} s assignment, {:.1} s consistency",
                l.layer,
                l.mean_matched_correlation,
                l.images,
                l.universal,
                l.unique,
                t.correlation_seconds,
                t.assignment_seconds,
                t.consistency_seconds
            )?;
        }
        Ok(())
    }
}

/// Matches every layer the run's models share, from their stored means, and writes the outputs.
pub async fn run_match(
    spec: &SweepSpec,
    run: &PlannedRun,
    store: &Store,
    prefix: &KeyPrefix,
    settings: &MatchSettings,
) -> Result<MatchRunOutput> {
    if spec.probe.is_none() {
        return Err(Error::MatchInput {
            key: prefix.run_prefix(&spec.run_id),
            reason: "the spec has no [probe] section: there are no activations to match".into(),
        });
    }
    let models: Vec<String> = run
        .plan
        .models
        .iter()
        .map(|m| m.model_id.to_string())
        .collect();
    if models.len() < 2 {
        return Err(Error::MatchInput {
            key: prefix.run_prefix(&spec.run_id),
            reason: format!(
                "matching needs at least two models, the run has {}",
                models.len()
            ),
        });
    }
    let reference = reference_index(&models, settings.reference.as_deref())?;
    let options = MatchOptions {
        reference,
        unique_below: settings.unique_below,
        buddies_k: settings.buddies_k,
        rdm_images: settings.rdm_images,
    };
    let images = common_images(spec, run, store, prefix).await?;
    let mut layers = Vec::new();
    for layer in shared_layers(run) {
        let m = match_one(spec, run, store, prefix, (&layer, images), options).await?;
        let key = prefix.match_key(&spec.run_id, MatchOutput::Layer(&layer));
        put(
            store,
            &key,
            serde_json::to_vec(&m).unwrap_or_default(),
            "application/json",
        )
        .await?;
        let csv_key = prefix.match_key(&spec.run_id, MatchOutput::LayerCsv(&layer));
        put(store, &csv_key, m.csv().into_bytes(), "text/csv").await?;
        tracing::info!(layer = %layer, mean = m.mean_matched_correlation, "matched a layer across seeds");
        layers.push(LayerSummary::of(&m, key));
    }
    let summary_key = prefix.match_key(&spec.run_id, MatchOutput::Summary);
    let output = MatchRunOutput {
        run_id: spec.run_id.to_string(),
        reference: models[reference].clone(),
        models,
        layers,
        summary_key: summary_key.clone(),
    };
    let body = serde_json::to_vec_pretty(&output).unwrap_or_default();
    put(store, &summary_key, body, "application/json").await?;
    Ok(output)
}

fn reference_index(models: &[String], reference: Option<&str>) -> Result<usize> {
    let Some(name) = reference else {
        return Ok(0);
    };
    models
        .iter()
        .position(|m| m == name)
        .ok_or_else(|| Error::MatchInput {
            key: "--reference".into(),
            reason: format!("{name} is not a model of the run ({})", models.join(", ")),
        })
}

/// The layers every model has, in the first model's order.
fn shared_layers(run: &PlannedRun) -> Vec<LayerName> {
    let first = &run.plan.models[0];
    first
        .layers
        .iter()
        .map(|l| l.layer.clone())
        .filter(|layer| {
            run.plan
                .models
                .iter()
                .all(|m| m.layers.iter().any(|l| &l.layer == layer))
        })
        .collect()
}

/// The usable probe images, the same for every model (each model's `probe.json` lists them);
/// correlations over different images would compare nothing.
async fn common_images(
    spec: &SweepSpec,
    run: &PlannedRun,
    store: &Store,
    prefix: &KeyPrefix,
) -> Result<usize> {
    let mut first: Option<(String, Vec<String>)> = None;
    for model in &run.plan.models {
        let key = prefix.probe_output_key(&spec.run_id, &model.model_id, ProbeOutput::Report);
        let bytes = get_missing_as_input(store, &key).await?;
        let report: ProbeReport = serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        match &first {
            None => first = Some((key, report.probe_set.images)),
            Some((first_key, images)) if *images != report.probe_set.images => {
                return Err(Error::MatchInput {
                    key,
                    reason: format!(
                        "its usable probe images differ from those of {first_key}: the models must be probed over the same images"
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(0, |(_, images)| images.len()))
}

/// One layer: every model's means read, then matched on the blocking pool.
async fn match_one(
    spec: &SweepSpec,
    run: &PlannedRun,
    store: &Store,
    prefix: &KeyPrefix,
    (layer, images): (&LayerName, usize),
    options: MatchOptions,
) -> Result<LayerMatch> {
    let mut seeds: Vec<(String, ndarray::Array2<f32>)> = Vec::new();
    for model in &run.plan.models {
        let key = prefix.probe_output_key(&spec.run_id, &model.model_id, ProbeOutput::Means(layer));
        let bytes = get_missing_as_input(store, &key).await?;
        let (channels, values) =
            read_means(&bytes, images).map_err(|source| Error::ProbeShard {
                key: key.clone(),
                source,
            })?;
        let means = ndarray::Array2::from_shape_vec((images, channels), values).map_err(|e| {
            Error::Decode {
                key: key.clone(),
                reason: e.to_string(),
            }
        })?;
        seeds.push((model.model_id.to_string(), means));
    }
    let name = layer.to_string();
    tokio::task::spawn_blocking(move || {
        let views: Vec<SeedMeans<'_>> = seeds
            .iter()
            .map(|(model, means)| SeedMeans {
                model,
                means: means.view(),
            })
            .collect();
        match_layer(&name, &views, options).map_err(|source| Error::Match {
            layer: name.clone(),
            source,
        })
    })
    .await
    .map_err(|source| Error::BlockingTask {
        what: format!("matching layer {layer}"),
        source,
    })?
}

/// The body of `key`; a missing one names the command that makes it.
async fn get_missing_as_input(store: &Store, key: &str) -> Result<Vec<u8>> {
    store
        .get(key)
        .await
        .map_err(|e| Error::storage(format!("get {key}"), e))?
        .ok_or_else(|| Error::MatchInput {
            key: key.to_owned(),
            reason: "is not stored: merge the probe pass first (lucid-coordinator examples)".into(),
        })
}

async fn put(store: &Store, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
    store
        .put(key, bytes, content_type)
        .await
        .map_err(|e| Error::storage(format!("put {key}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_first_model_unless_named_and_must_be_one() {
        let models = vec!["s1".to_owned(), "s2".to_owned()];
        assert_eq!(reference_index(&models, None).unwrap(), 0);
        assert_eq!(reference_index(&models, Some("s2")).unwrap(), 1);
        let err = reference_index(&models, Some("s3"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s3 is not a model of the run (s1, s2)"),
            "{err}"
        );
    }
}
