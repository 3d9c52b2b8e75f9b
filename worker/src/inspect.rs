//! `lucid-worker inspect`: each model's visualizable layers — the taps of its network's description,
//! with the tapped node's kernel, stride and padding where it has them, its channels and the smallest
//! input it needs — read from the model files, printed as a table or, with `--json`, as one
//! [`InspectReport`] document.
//!
//! # JSON schema (version 2)
//!
//! `{ "schema_version": 2, "network", "seeds": [ { "seed", "path", "layers": [ { "layer", "node",
//! "at" ("output" | "pre_bias"), "op", "kernel" ([h, w] or null), "stride" ([h, w] or null),
//! "padding" ("SAME" | "VALID" | "p" | "[t, b, l, r]" or null), "in_channels" (or null),
//! "out_channels", "min_input_side" } ], "total_channels" } ], "total_channels" }`, models in
//! discovery order and layers in the description's order. `seeds` and `seed` are the names the model
//! list and the model id have in every stored document (tasks, sidecars, manifests). Version 1 (before
//! descriptions) had plain numbers for `kernel` and `stride` and no `node`, `at`, `op` or
//! `min_input_side`.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use lucid_checkpoint::{ModelFile, discover};
use lucid_network::description::{NamedPadding, Node, Padding, Tap, TapPoint};
use lucid_network::graph::Source;
use lucid_network::shape::Extent;
use lucid_network::{Description, Network, builtin};
use serde::{Deserialize, Serialize};

/// The version of [`InspectReport`] documents this build prints.
pub const INSPECT_SCHEMA_VERSION: u32 = 2;

/// What `inspect` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectReport {
    /// Always [`INSPECT_SCHEMA_VERSION`] for reports of this build.
    pub schema_version: u32,
    /// The description's name.
    pub network: String,
    /// Every model found, in discovery order.
    #[serde(rename = "seeds")]
    pub models: Vec<ModelLayers>,
    /// Output channels over all models and layers.
    pub total_channels: usize,
}

/// One model's layer table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelLayers {
    /// The model's id (`training_seed_01`).
    #[serde(rename = "seed")]
    pub model_id: String,
    /// The model file read.
    pub path: String,
    /// Its taps in the description's order.
    pub layers: Vec<LayerShape>,
    /// Output channels over its layers.
    pub total_channels: usize,
}

/// One visualizable layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerShape {
    /// The tap's name, as a spec's `layers` lists it.
    pub layer: String,
    /// The tapped node.
    pub node: String,
    /// Which value of the node (`output` or `pre_bias`).
    pub at: String,
    /// The node's op (`conv`, `relu`, `add`, …).
    pub op: String,
    /// `[h, w]` of a convolution's or pool's window.
    pub kernel: Option<[usize; 2]>,
    /// `[h, w]` of its stride.
    pub stride: Option<[usize; 2]>,
    /// `SAME`, `VALID`, a symmetric pad or `[top, bottom, left, right]`.
    pub padding: Option<String>,
    /// A convolution's input channels.
    pub in_channels: Option<usize>,
    /// The tap's channels (or features), read from the weights.
    pub out_channels: usize,
    /// The smallest square input for which the tap has an output.
    pub min_input_side: Option<usize>,
}

/// Which description `inspect` reads the models with: a built-in name or a TOML file.
pub fn load_description(network: &str) -> Result<Description> {
    let path = Path::new(network);
    if path.extension().is_some_and(|e| e == "toml") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read network description {}", path.display()))?;
        return Ok(Description::parse_toml(&text, &path.display().to_string())?);
    }
    Ok(builtin::by_name(network)?)
}

/// Reads the layer table of every model found at `path` (a checkpoint prefix, a `.safetensors` file
/// or a folder of `training_seed_NN` sub-folders) through `description`.
pub fn inspect(path: &Path, description: &Description) -> Result<InspectReport> {
    let found = discover(path).with_context(|| format!("no model found at {}", path.display()))?;
    let mut out = Vec::with_capacity(found.len());
    for model in &found {
        let file = ModelFile::open(&model.path)?;
        let network = Network::resolve(description.clone(), &file)
            .with_context(|| format!("model {} at {}", model.id, model.path.display()))?;
        let layers: Vec<LayerShape> = network
            .description
            .taps
            .iter()
            .map(|t| layer_shape(&network, t))
            .collect();
        out.push(ModelLayers {
            model_id: model.id.to_string(),
            path: model.path.display().to_string(),
            total_channels: layers.iter().map(|l| l.out_channels).sum(),
            layers,
        });
    }
    Ok(InspectReport {
        schema_version: INSPECT_SCHEMA_VERSION,
        network: description.name.clone(),
        total_channels: out.iter().map(|s| s.total_channels).sum(),
        models: out,
    })
}

fn layer_shape(network: &Network, tap: &Tap) -> LayerShape {
    let i = network.tap_node(tap);
    let node = &network.graph.nodes[i];
    let hw = |p: lucid_network::description::Pair| {
        let (h, w) = p.hw();
        [h, w]
    };
    let (kernel, stride, padding) = match node {
        Node::Conv(c) => {
            let kernel = match network.shapes[i].params {
                lucid_network::shape::Params::Conv { kernel: (h, w), .. } => Some([h, w]),
                _ => None,
            };
            (kernel, Some(hw(c.stride)), Some(padding_text(c.padding)))
        }
        Node::MaxPool(p) | Node::AvgPool(p) => (
            Some(hw(p.kernel)),
            Some(hw(p.stride.unwrap_or(p.kernel))),
            Some(padding_text(p.padding)),
        ),
        _ => (None, None, None),
    };
    let in_channels = match (node, network.graph.sources[i].first()) {
        (Node::Conv(_), Some(Source::Input)) => Some(network.description.input.channels as usize),
        (Node::Conv(_), Some(Source::Node(j))) => match network.shapes[*j].out {
            Extent::Channels(c) => Some(c),
            Extent::Features(_) => None,
        },
        _ => None,
    };
    LayerShape {
        layer: tap.name.clone(),
        node: tap.node.clone(),
        at: match tap.at {
            TapPoint::Output => "output",
            TapPoint::PreBias => "pre_bias",
        }
        .to_owned(),
        op: op_name(node).to_owned(),
        kernel,
        stride,
        padding,
        in_channels,
        out_channels: network.width(tap),
        min_input_side: network.min_input_side(tap),
    }
}

fn padding_text(padding: Padding) -> String {
    match padding {
        Padding::Named(NamedPadding::Same) => "SAME".into(),
        Padding::Named(NamedPadding::Valid) => "VALID".into(),
        Padding::Symmetric(p) => p.to_string(),
        Padding::Explicit(p) => format!("{p:?}"),
    }
}

fn op_name(node: &Node) -> &'static str {
    match node {
        Node::Conv(_) => "conv",
        Node::MaxPool(_) => "max_pool",
        Node::AvgPool(_) => "avg_pool",
        Node::AdaptiveAvgPool(_) => "adaptive_avg_pool",
        Node::Relu(_) => "relu",
        Node::Activation(_) => "activation",
        Node::BatchNorm(_) => "batch_norm",
        Node::Lrn(_) => "lrn",
        Node::Flatten(_) => "flatten",
        Node::Linear(_) => "linear",
        Node::Add(_) => "add",
        Node::Concat(_) => "concat",
    }
}

/// `[h, w]` as `hxw`, or `-`.
fn window(v: Option<[usize; 2]>) -> String {
    v.map_or("-".into(), |[h, w]| format!("{h}x{w}"))
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for model in &self.models {
            writeln!(f, "{} ({}, {})", model.model_id, self.network, model.path)?;
            writeln!(
                f,
                "  {:<10} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8}",
                "layer", "kernel", "stride", "padding", "in", "channels", "min side"
            )?;
            for l in &model.layers {
                let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                writeln!(
                    f,
                    "  {:<10} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8}",
                    l.layer,
                    window(l.kernel),
                    l.stride.map_or("-".into(), |[h, w]| if h == w {
                        h.to_string()
                    } else {
                        format!("{h}x{w}")
                    }),
                    or_dash(l.padding.clone()),
                    or_dash(l.in_channels.map(|c| c.to_string())),
                    l.out_channels,
                    or_dash(l.min_input_side.map(|s| s.to_string())),
                )?;
            }
            writeln!(f, "  total channels: {}", model.total_channels)?;
        }
        writeln!(
            f,
            "{} model(s), {} channels in all",
            self.models.len(),
            self.total_channels
        )
    }
}

/// The layers of a `lucid-export` folder, from its descriptor (`op` is `torchscript`).
pub fn inspect_export(folder: &Path) -> Result<InspectReport> {
    let (descriptor, _) = lucid_network::torchscript::Descriptor::read(folder)?;
    let layers: Vec<LayerShape> = descriptor
        .layers
        .iter()
        .map(|l| LayerShape {
            layer: l.name.clone(),
            node: l.name.clone(),
            at: "output".into(),
            op: lucid_proto::spec::TORCHSCRIPT.into(),
            kernel: None,
            stride: None,
            padding: None,
            in_channels: None,
            out_channels: l.channels,
            min_input_side: Some(l.min_input_side),
        })
        .collect();
    let total_channels = layers.iter().map(|l| l.out_channels).sum();
    Ok(InspectReport {
        schema_version: INSPECT_SCHEMA_VERSION,
        network: descriptor.name.clone(),
        models: vec![ModelLayers {
            model_id: folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: folder.display().to_string(),
            layers,
            total_channels,
        }],
        total_channels,
    })
}

/// `inspect`: the report of `path` read through `network` (a built-in name, a description file, or
/// `torchscript` for an export folder) on `out`, as text or (with `json`) one JSON document.
pub fn run(path: &Path, network: &str, json: bool, out: &mut impl std::io::Write) -> Result<()> {
    let report = if network == lucid_proto::spec::TORCHSCRIPT {
        inspect_export(path)?
    } else {
        inspect(path, &load_description(network)?)?
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text table, as people read it.
    #[test]
    fn text_report() {
        let report = InspectReport {
            schema_version: INSPECT_SCHEMA_VERSION,
            network: "alexnet_v2".into(),
            models: vec![ModelLayers {
                model_id: "s1".into(),
                path: "/m/model.safetensors".into(),
                layers: vec![LayerShape {
                    layer: "conv1".into(),
                    node: "conv1".into(),
                    at: "pre_bias".into(),
                    op: "conv".into(),
                    kernel: Some([11, 11]),
                    stride: Some([4, 4]),
                    padding: Some("VALID".into()),
                    in_channels: Some(3),
                    out_channels: 16,
                    min_input_side: Some(11),
                }],
                total_channels: 16,
            }],
            total_channels: 16,
        };
        assert_eq!(
            report.to_string(),
            "s1 (alexnet_v2, /m/model.safetensors)\n  \
             layer       kernel stride padding     in channels min side\n  \
             conv1        11x11      4   VALID      3       16       11\n  \
             total channels: 16\n1 model(s), 16 channels in all\n"
        );
    }
}
