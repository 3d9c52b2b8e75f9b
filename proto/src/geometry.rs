//! The geometry of lucid's standard transforms: pure arithmetic, shared by the worker, which applies
//! the transforms, and the coordinator, which checks before publishing that a render size leaves
//! every planned layer a non-empty output.
//!
//! Steps: pad 12 px → crop 8 (jitter) → scale by one of `1 + (i − 5)/50`, truncated as TF1's
//! `tf.cast(scale * shape, int32)` → rotate (same size) → crop 4 (jitter).

use std::collections::BTreeMap;

use crate::ids::{IdError, LayerName, ModelId};
use crate::plan::{LayerWidths, Plan, PlanError};
use crate::spec::{SweepSpec, Transforms};

/// Padding of the first step, in pixels.
pub const PAD: i64 = 12;
/// Crop of the second step.
pub const JITTER_1: i64 = 8;
/// Crop of the last step.
pub const JITTER_2: i64 = 4;

/// Side of the scale step's input for `size` px images: after the pad and the first jitter.
pub fn scale_input_side(size: usize) -> i64 {
    size as i64 + 2 * PAD - JITTER_1
}

/// The eleven scale factors `1 + (i − 5)/50`.
pub fn scales() -> [f64; 11] {
    std::array::from_fn(|i| 1.0 + (i as f64 - 5.0) / 50.0)
}

/// The side after scaling `side` by `scale`, truncated as TF's `tf.cast(scale * shape, int32)` in
/// float32.
pub fn scaled_side(side: i64, scale: f64) -> i64 {
    ((scale as f32) * (side as f32)) as i64
}

/// The smallest side the network is shown for `size` px images under `transforms` (the smallest
/// scale, then the last crop).
pub fn min_network_side(transforms: Transforms, size: usize) -> i64 {
    match transforms {
        Transforms::Standard => scaled_side(scale_input_side(size), scales()[0]) - JITTER_2,
        Transforms::None => size as i64,
    }
}

/// What the planner needs from one network: each layer's width and the smallest square input for
/// which it has an output, in network order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerTable {
    /// Output channels per layer.
    pub widths: LayerWidths,
    /// The smallest square input per layer.
    pub min_sides: BTreeMap<LayerName, usize>,
}

impl LayerTable {
    /// The table of `(name, width, smallest input side)` triples, the names validated.
    pub fn from_layers<'a>(
        layers: impl IntoIterator<Item = (&'a str, usize, usize)>,
    ) -> Result<Self, IdError> {
        let mut table = Self::default();
        for (name, width, min_side) in layers {
            let name = LayerName::new(name)?;
            table.min_sides.insert(name.clone(), min_side);
            table.widths.push((name, width));
        }
        Ok(table)
    }
}

/// The plan of `spec` over each model's layer table ([`crate::plan::plan`] over the widths), checked
/// with [`check_sides`]: the one planning step of the coordinator and of the worker's local mode.
pub fn plan_checked(
    spec: &SweepSpec,
    tables: &BTreeMap<ModelId, LayerTable>,
) -> Result<Plan, PlanError> {
    let widths: BTreeMap<ModelId, LayerWidths> = tables
        .iter()
        .map(|(model, table)| (model.clone(), table.widths.clone()))
        .collect();
    let plan = crate::plan::plan(spec, &widths)?;
    check_sides(&plan, tables)?;
    Ok(plan)
}

/// Checks that `plan`'s render size leaves every planned layer a non-empty output after the
/// transforms, with `tables` giving each model's smallest input per layer (a model or layer missing
/// from `tables` is not checked).
pub fn check_sides(plan: &Plan, tables: &BTreeMap<ModelId, LayerTable>) -> Result<(), PlanError> {
    let settings = &plan.settings;
    let seen = min_network_side(settings.transforms, settings.size as usize);
    for model in &plan.models {
        let Some(table) = tables.get(&model.model_id) else {
            continue;
        };
        for layer in &model.layers {
            let needed = table.min_sides.get(&layer.layer).copied().unwrap_or(0);
            if seen < needed as i64 {
                return Err(PlanError::SizeTooSmall {
                    model: model.model_id.clone(),
                    layer: layer.layer.clone(),
                    size: settings.size,
                    seen,
                    needed,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_side_follows_lucid_steps() {
        // 224 + 24 − 8 = 240, × 0.9 = 216, − 4 = 212
        assert_eq!(scale_input_side(224), 240);
        assert_eq!(min_network_side(Transforms::Standard, 224), 212);
        assert_eq!(min_network_side(Transforms::None, 224), 224);
        assert_eq!(scales()[0], 0.9);
        assert_eq!(scales()[10], 1.1);
    }

    #[test]
    fn sizes_too_small_for_a_planned_layer_are_refused_naming_it() {
        use crate::plan::{LayerPlan, ModelPlan};
        use crate::spec::{ModelLocation, RenderSection};
        let seed = ModelId::new("training_seed_01").expect("seed");
        let table =
            LayerTable::from_layers([("conv1", 64, 63), ("fc6", 4096, 195)]).expect("table");
        assert_eq!(table.widths.len(), 2);
        assert!(LayerTable::from_layers([("../x", 1, 1)]).is_err());
        let layer = |name: &str| LayerPlan {
            layer: LayerName::new(name).expect("layer"),
            width: 1,
            channels: vec![0],
        };
        let mut plan = Plan {
            run_id: crate::RunId::new("r").expect("run"),
            settings: RenderSection::default().settings(),
            views: vec![crate::View::Channel],
            models: vec![ModelPlan {
                model_id: seed.clone(),
                location: ModelLocation::Local("m".into()),
                network: crate::spec::NetworkRef::default(),
                layers: vec![layer("conv1"), layer("fc6")],
            }],
        };
        let tables = BTreeMap::from([(seed, table)]);
        plan.settings.size = 224;
        assert_eq!(check_sides(&plan, &tables), Ok(()));
        plan.settings.size = 128;
        let err = check_sides(&plan, &tables).expect_err("128 px is too small for fc6");
        assert_eq!(
            err.to_string(),
            "render.size = 128 px is too small for layer fc6 of model training_seed_01: after the \
             transforms the network sees 125 px, and fc6 needs at least 195 px; raise render.size \
             or leave fc6 out of layers"
        );
        plan.models[0].layers.pop();
        assert_eq!(check_sides(&plan, &tables), Ok(()), "conv1 alone fits");
    }
}
