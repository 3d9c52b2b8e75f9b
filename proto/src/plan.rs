//! Pure task enumeration: a spec plus each model's layer widths gives the ordered list of tasks.
//!
//! Order is model (sorted by id), then layer in network order (the order of the widths given, whatever
//! order `layers` lists them in), then view in the spec's order, then channel ascending: the tasks of
//! one layer and view, which a worker batches together, are consecutive. The coordinator reads the widths from the
//! checkpoints; this module never looks at a file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::channels::ChannelBoundsError;
use crate::ids::{LayerName, ModelId, RunId};
use crate::spec::{
    InvalidField, LayerSelection, ModelEntry, ModelLocation, NetworkRef, RenderSettings, SweepSpec,
};
use crate::task::TaskMessage;
use crate::view::View;

/// Layer widths of one network in network order: `(layer, number of channels)`.
pub type LayerWidths = Vec<(LayerName, usize)>;

/// Why a spec cannot be planned against the given widths.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The spec itself is invalid.
    #[error(transparent)]
    Spec(#[from] InvalidField),
    /// A model of the spec has no widths.
    #[error("models.{model}: no layer widths were given for this model")]
    MissingModel {
        /// The model.
        model: ModelId,
    },
    /// Widths were given for a model the spec does not name.
    #[error("layer widths were given for model {model}, which is not in models")]
    UnexpectedModel {
        /// The model.
        model: ModelId,
    },
    /// The widths of a model list a layer twice.
    #[error("layer {layer} appears twice in the layer widths of model {model}")]
    DuplicateLayer {
        /// The model.
        model: ModelId,
        /// The repeated layer.
        layer: LayerName,
    },
    /// The spec names a layer the network does not have; `known` lists the network's, closest first.
    #[error("{field}: unknown layer {layer} for model {model}; the network has {known}")]
    UnknownLayer {
        /// Where the spec names it (`layers` or `channels_per_layer.{layer}`).
        field: String,
        /// The model whose network lacks it.
        model: ModelId,
        /// The unknown layer.
        layer: LayerName,
        /// The network's layers, comma-separated.
        known: String,
    },
    /// A channel range reaches past a layer's width.
    #[error("model {model}: {source}")]
    Channels {
        /// The model.
        model: ModelId,
        /// Names the layer and range.
        source: ChannelBoundsError,
    },
    /// `render.size` leaves a planned layer no output: after the transforms the network sees `seen`
    /// px and the layer needs `needed` (see [`crate::geometry::check_sides`]).
    #[error(
        "render.size = {size} px is too small for layer {layer} of model {model}: after the transforms the network sees {seen} px, and {layer} needs at least {needed} px; raise render.size or leave {layer} out of layers"
    )]
    SizeTooSmall {
        /// The model.
        model: ModelId,
        /// The layer.
        layer: LayerName,
        /// `render.size`.
        size: u32,
        /// The smallest side the network is shown.
        seen: i64,
        /// The smallest input the layer needs.
        needed: usize,
    },
}

/// One selected layer of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// The layer.
    pub layer: LayerName,
    /// Its number of channels.
    pub width: usize,
    /// The selected channels, ascending.
    pub channels: Vec<u32>,
}

/// The selected layers of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPlan {
    /// The model.
    pub model_id: ModelId,
    /// Its checkpoint.
    pub location: ModelLocation,
    /// Which network it is.
    pub network: NetworkRef,
    /// Selected layers in network order.
    pub layers: Vec<LayerPlan>,
}

/// Everything a run renders.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The run.
    pub run_id: RunId,
    /// Settings shared by all tasks (each task carries them with its view's objective).
    pub settings: RenderSettings,
    /// The views rendered of every planned channel, in the spec's order.
    pub views: Vec<View>,
    /// Per-model plans, sorted by model id.
    pub models: Vec<ModelPlan>,
}

/// Task count of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerCount {
    /// The layer.
    pub layer: LayerName,
    /// Its number of channels.
    pub width: usize,
    /// Tasks planned for it: its selected channels times the views.
    pub tasks: u64,
}

/// Task counts of one model; stored in the manifest, whose field keeps its first name `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCounts {
    /// The model.
    #[serde(rename = "seed")]
    pub model_id: ModelId,
    /// Per selected layer, in network order.
    pub layers: Vec<LayerCount>,
    /// Sum over the layers.
    pub tasks: u64,
}

/// Plans `spec` against each model's layer widths (network order).
pub fn plan(spec: &SweepSpec, widths: &BTreeMap<ModelId, LayerWidths>) -> Result<Plan, PlanError> {
    spec.validate()?;
    if let Some(model) = widths.keys().find(|m| !spec.models.contains_key(*m)) {
        return Err(PlanError::UnexpectedModel {
            model: model.clone(),
        });
    }
    let mut models = Vec::with_capacity(spec.models.len());
    for (model, entry) in &spec.models {
        let layer_widths = widths.get(model).ok_or_else(|| PlanError::MissingModel {
            model: model.clone(),
        })?;
        models.push(plan_model(spec, model, entry, layer_widths)?);
    }
    Ok(Plan {
        run_id: spec.run_id.clone(),
        settings: spec.settings(),
        views: spec.views(),
        models,
    })
}

fn plan_model(
    spec: &SweepSpec,
    model: &ModelId,
    entry: &ModelEntry,
    widths: &[(LayerName, usize)],
) -> Result<ModelPlan, PlanError> {
    let mut known = BTreeSet::new();
    for (layer, _) in widths {
        if !known.insert(layer) {
            return Err(PlanError::DuplicateLayer {
                model: model.clone(),
                layer: layer.clone(),
            });
        }
    }
    let unknown = |field: String, layer: &LayerName| PlanError::UnknownLayer {
        field,
        model: model.clone(),
        layer: layer.clone(),
        known: closest_first(layer.as_str(), widths.iter().map(|(l, _)| l.as_str())).join(", "),
    };
    if let LayerSelection::Only(selected) = &spec.layers
        && let Some(layer) = selected.iter().find(|l| !known.contains(l))
    {
        return Err(unknown("layers".into(), layer));
    }
    if let Some(layer) = spec.channels_per_layer.keys().find(|l| !known.contains(l)) {
        return Err(unknown(format!("channels_per_layer.{layer}"), layer));
    }
    let layers = widths
        .iter()
        .filter(|(layer, _)| spec.layers.contains(layer))
        .map(|(layer, width)| {
            let channels = spec
                .channels_for(layer)
                .expand(layer.as_str(), *width)
                .map_err(|source| PlanError::Channels {
                    model: model.clone(),
                    source,
                })?;
            Ok(LayerPlan {
                layer: layer.clone(),
                width: *width,
                channels,
            })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    Ok(ModelPlan {
        model_id: model.clone(),
        location: entry.location.clone(),
        network: entry.network.clone(),
        layers,
    })
}

/// `candidates`, those closest to `name` first (Levenshtein distance, ties in their given order), so
/// that a mistyped layer's message starts with what was meant.
fn closest_first<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(usize, usize, &str)> = candidates
        .enumerate()
        .map(|(i, c)| (strsim::levenshtein(name, c), i, c))
        .collect();
    scored.sort_unstable();
    scored.into_iter().map(|(_, _, c)| c).collect()
}

impl Plan {
    /// Every task, in (model, layer, view, channel) order; built lazily.
    pub fn tasks(&self) -> impl Iterator<Item = TaskMessage> + '_ {
        self.models.iter().flat_map(move |s| {
            s.layers.iter().flat_map(move |l| {
                self.views.iter().flat_map(move |&view| {
                    l.channels.iter().map(move |&channel| {
                        TaskMessage::new(
                            self.run_id.clone(),
                            s.model_id.clone(),
                            l.layer.clone(),
                            channel,
                            self.settings,
                            s.location.clone(),
                        )
                        .with_network(s.network.clone())
                        .with_view(view)
                    })
                })
            })
        })
    }

    /// Every result the plan makes, in task order.
    pub fn results(&self) -> impl Iterator<Item = crate::keys::ResultId> + '_ {
        self.tasks().map(|t| t.result_id())
    }

    /// Images each planned channel makes over all views: a view with copies makes several.
    pub fn images_per_channel(&self) -> u64 {
        self.views.iter().map(|v| u64::from(v.images())).sum()
    }

    /// Images the plan makes.
    pub fn image_count(&self) -> u64 {
        let per_channel = self.images_per_channel();
        let channels: u64 = self
            .models
            .iter()
            .flat_map(|m| &m.layers)
            .map(|l| l.channels.len() as u64)
            .sum();
        per_channel * channels
    }

    /// Total number of tasks.
    pub fn task_count(&self) -> u64 {
        self.counts().iter().map(|s| s.tasks).sum()
    }

    /// Task counts per model and layer.
    pub fn counts(&self) -> Vec<ModelCounts> {
        self.models
            .iter()
            .map(|s| {
                let layers: Vec<LayerCount> = s
                    .layers
                    .iter()
                    .map(|l| LayerCount {
                        layer: l.layer.clone(),
                        width: l.width,
                        tasks: (l.channels.len() * self.views.len()) as u64,
                    })
                    .collect();
                ModelCounts {
                    model_id: s.model_id.clone(),
                    tasks: layers.iter().map(|l| l.tasks).sum(),
                    layers,
                }
            })
            .collect()
    }
}

/// The ecoset AlexNet's layers and their widths (`shared/docs/lucid-reference.md`): the shape of the
/// reference sweep (10 seeds of these are 100,370 tasks), for benchmarks and tests of plans at scale.
pub const ECOSET_ALEXNET_LAYERS: [(&str, usize); 8] = [
    ("conv1", 64),
    ("conv2", 192),
    ("conv3", 384),
    ("conv4", 384),
    ("conv5", 256),
    ("fc6", 4096),
    ("fc7", 4096),
    ("fc8", 565),
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::channels::ChannelSelection;

    pub(crate) const ALEXNET: [(&str, usize); 8] = ECOSET_ALEXNET_LAYERS;

    pub(crate) fn alexnet() -> LayerWidths {
        ALEXNET
            .iter()
            .map(|(l, w)| (l.parse().unwrap(), *w))
            .collect()
    }

    pub(crate) fn spec(models: &[&str]) -> SweepSpec {
        let models: String = models
            .iter()
            .map(|s| format!("{s} = \"/data/{s}\"\n"))
            .collect();
        SweepSpec::parse_toml(&format!(
            "run_id = \"r\"\n[storage]\nbucket = \"lucid-test\"\n[models]\n{models}"
        ))
        .unwrap()
    }

    pub(crate) fn widths_for(spec: &SweepSpec) -> BTreeMap<ModelId, LayerWidths> {
        spec.models.keys().map(|s| (s.clone(), alexnet())).collect()
    }

    #[test]
    fn full_alexnet_counts() {
        let spec = spec(&["training_seed_02", "training_seed_01"]);
        let plan = plan(&spec, &widths_for(&spec)).unwrap();
        let counts = plan.counts();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[0].model_id.as_str(), "training_seed_01");
        for c in &counts {
            assert_eq!(c.tasks, 10037);
            assert_eq!(c.layers.len(), 8);
            assert_eq!(c.layers[7].tasks, 565);
        }
        assert_eq!(plan.task_count(), 2 * 10037);
        assert_eq!(plan.tasks().count(), 2 * 10037);
    }

    #[test]
    fn every_view_of_every_channel_is_a_task_in_layer_then_view_order() {
        let mut spec = spec(&["s1"]);
        spec.layers = LayerSelection::Only(vec!["conv1".parse().unwrap(), "fc8".parse().unwrap()]);
        spec.channels = ChannelSelection::parse("0-1").unwrap();
        spec.views = Some(vec![
            View::Channel,
            View::NegativeChannel,
            View::Neuron,
            View::Diversity { copies: 4 },
        ]);
        let plan = plan(&spec, &widths_for(&spec)).unwrap();
        assert_eq!(plan.task_count(), 2 * 2 * 4);
        assert_eq!(plan.counts()[0].layers[0].tasks, 8);
        // a diversity task makes four images
        assert_eq!(plan.image_count(), 2 * 2 * (1 + 1 + 1 + 4));
        let ids: Vec<String> = plan.tasks().map(|t| t.task_id).collect();
        assert_eq!(
            &ids[..8],
            [
                "r/s1/conv1/0000",
                "r/s1/conv1/0001",
                "r/s1/conv1/0000.negative_channel",
                "r/s1/conv1/0001.negative_channel",
                "r/s1/conv1/0000.neuron",
                "r/s1/conv1/0001.neuron",
                "r/s1/conv1/0000.diversity-4",
                "r/s1/conv1/0001.diversity-4",
            ]
        );
        assert!(
            plan.tasks()
                .all(|t| t.view.objective() == t.settings.objective)
        );
        // every result is distinct
        let results: BTreeSet<_> = plan.results().collect();
        assert_eq!(results.len(), 16);
    }

    #[test]
    fn ordering_is_model_layer_channel() {
        let mut spec = spec(&["b", "a"]);
        spec.channels = ChannelSelection::parse("0-1").unwrap();
        // listed out of network order: tasks still follow the network
        spec.layers = LayerSelection::Only(vec!["fc8".parse().unwrap(), "conv2".parse().unwrap()]);
        let plan = plan(&spec, &widths_for(&spec)).unwrap();
        let ids: Vec<String> = plan.tasks().map(|t| t.task_id).collect();
        assert_eq!(
            ids,
            [
                "r/a/conv2/0000",
                "r/a/conv2/0001",
                "r/a/fc8/0000",
                "r/a/fc8/0001",
                "r/b/conv2/0000",
                "r/b/conv2/0001",
                "r/b/fc8/0000",
                "r/b/fc8/0001",
            ]
        );
        let first = plan.tasks().next().unwrap();
        assert_eq!(first.model_location, ModelLocation::Local("/data/a".into()));
        assert_eq!(first.settings, spec.settings());
    }

    #[test]
    fn per_layer_channels() {
        let mut spec = spec(&["a"]);
        spec.channels = ChannelSelection::parse("0-3").unwrap();
        spec.channels_per_layer.insert(
            "conv1".parse().unwrap(),
            ChannelSelection::parse("0-15").unwrap(),
        );
        let plan = plan(&spec, &widths_for(&spec)).unwrap();
        let counts = plan.counts();
        assert_eq!(counts[0].layers[0].tasks, 16);
        assert_eq!(counts[0].tasks, 16 + 7 * 4);
    }

    #[test]
    fn errors_name_the_layer() {
        let mut s = spec(&["a"]);
        s.layers = LayerSelection::Only(vec!["conv9".parse().unwrap()]);
        let err = plan(&s, &widths_for(&s)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "layers: unknown layer conv9 for model a; the network has conv1, conv2"
            ),
            "{err}"
        );

        let mut s = spec(&["a"]);
        s.channels_per_layer
            .insert("pool1".parse().unwrap(), ChannelSelection::All);
        let err = plan(&s, &widths_for(&s)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("channels_per_layer.pool1: unknown layer pool1"),
            "{err}"
        );

        let mut s = spec(&["a"]);
        s.channels = ChannelSelection::parse("0-100").unwrap();
        let err = plan(&s, &widths_for(&s)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model a: channels of layer conv1: range 0-100 is beyond the layer width 64"
        );

        let s = spec(&["a", "b"]);
        let mut w = widths_for(&s);
        w.remove(&"b".parse().unwrap());
        assert_eq!(
            plan(&s, &w).unwrap_err().to_string(),
            "models.b: no layer widths were given for this model"
        );
        w.insert("b".parse().unwrap(), alexnet());
        w.insert("c".parse().unwrap(), alexnet());
        assert!(matches!(
            plan(&s, &w),
            Err(PlanError::UnexpectedModel { .. })
        ));

        let s = spec(&["a"]);
        let mut w = widths_for(&s);
        w.values_mut()
            .for_each(|v| v.push(("conv1".parse().unwrap(), 3)));
        assert!(matches!(
            plan(&s, &w),
            Err(PlanError::DuplicateLayer { .. })
        ));

        let mut s = spec(&["a"]);
        s.render.settings.steps = 0;
        assert!(matches!(plan(&s, &widths_for(&s)), Err(PlanError::Spec(_))));
    }
}
