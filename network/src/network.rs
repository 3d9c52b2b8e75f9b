//! A description resolved against a model file: every weight found and shaped as its node needs,
//! channel counts chained through the graph, and each tap's width and smallest input known.

use std::collections::BTreeMap;

use lucid_checkpoint::ModelFile;

use crate::description::{ConvLayout, Description, LinearLayout, Node, Tap, TapPoint};
use crate::error::{NetworkError, closest_first};
use crate::graph::{Graph, Source};
use crate::shape::{Extent, NodeShape, Shape, output_shape};

/// The largest input side searched for a tap's smallest input.
const MAX_SIDE: usize = 4096;

/// Where a description's weights come from: their shapes by name.
pub trait WeightShapes {
    /// The shape of `name`, outermost axis first, or `None` if the file lacks it.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The element type of `name` when the worker cannot compute with it (it reads float32 only).
    fn unsupported_dtype(&self, _name: &str) -> Option<String> {
        None
    }
    /// Every tensor name, for suggestions.
    fn names(&self) -> Vec<String>;
    /// The file, for messages.
    fn origin(&self) -> String;
}

impl WeightShapes for ModelFile {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.info(name).ok().map(|t| t.shape)
    }
    fn unsupported_dtype(&self, name: &str) -> Option<String> {
        let dtype = self.info(name).ok()?.dtype;
        (dtype != lucid_checkpoint::DType::F32).then(|| dtype.to_string())
    }
    fn names(&self) -> Vec<String> {
        self.tensors().into_iter().map(|t| t.name).collect()
    }
    fn origin(&self) -> String {
        self.path().display().to_string()
    }
}

/// Shapes by name, for descriptions checked without a file (and for tests).
impl WeightShapes for BTreeMap<String, Vec<usize>> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
    fn origin(&self) -> String {
        "the given weights".into()
    }
}

/// A description that fits its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// What was written.
    pub description: Description,
    /// Its nodes in evaluation order.
    pub graph: Graph,
    /// Per node (graph order): kernel and channel counts read from the weights.
    pub shapes: Vec<NodeShape>,
}

impl Network {
    /// Checks `description` against `weights`: a graph without cycles, every weight present with the
    /// shape its node needs, channel counts that chain, taps that name nodes.
    pub fn resolve(
        description: Description,
        weights: &dyn WeightShapes,
    ) -> Result<Self, NetworkError> {
        let graph = Graph::build(&description)?;
        let input = Extent::Channels(description.input.channels as usize);
        let mut shapes: Vec<NodeShape> = Vec::with_capacity(graph.nodes.len());
        for (node, sources) in graph.nodes.iter().zip(&graph.sources) {
            let inputs: Vec<(String, Extent)> = sources
                .iter()
                .map(|s| match s {
                    Source::Input => ("the input".to_owned(), input),
                    Source::Node(j) => (graph.nodes[*j].name().to_owned(), shapes[*j].out),
                })
                .collect();
            let shape = NodeShape::of(
                node,
                &inputs,
                &Lookup::new(&description.name, node, weights),
            )?;
            shapes.push(shape);
        }
        let network = Self {
            description,
            graph,
            shapes,
        };
        network.check_taps()?;
        Ok(network)
    }

    fn check_taps(&self) -> Result<(), NetworkError> {
        let mut names = BTreeMap::new();
        for tap in &self.description.taps {
            if names.insert(tap.name.as_str(), ()).is_some() {
                return Err(NetworkError::Duplicate {
                    network: self.name().into(),
                    what: "tap",
                    name: tap.name.clone(),
                });
            }
            let Some(i) = self.graph.position(&tap.node) else {
                return Err(self.invalid(&tap.node, format!("tap {} names no such node", tap.name)));
            };
            if tap.at == TapPoint::PreBias && !has_bias(&self.graph.nodes[i]) {
                return Err(self.invalid(
                    &tap.node,
                    format!("tap {} reads it before its bias, but it has none", tap.name),
                ));
            }
            if matches!(self.shapes[i].out, Extent::Features(None)) {
                return Err(self.invalid(
                    &tap.node,
                    format!("tap {}: its width depends on the input size", tap.name),
                ));
            }
        }
        Ok(())
    }

    fn invalid(&self, node: &str, reason: String) -> NetworkError {
        NetworkError::InvalidNode {
            network: self.name().into(),
            node: node.to_owned(),
            reason,
        }
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// The tap called `name`; [`NetworkError::UnknownTap`] lists every tap, closest first.
    pub fn tap(&self, name: &str) -> Result<&Tap, NetworkError> {
        let taps = &self.description.taps;
        taps.iter()
            .find(|t| t.name == name)
            .ok_or_else(|| NetworkError::UnknownTap {
                network: self.name().into(),
                name: name.to_owned(),
                valid: closest_first(name, taps.iter().map(|t| t.name.as_str())),
            })
    }

    /// The graph index of `tap`'s node (checked when resolved).
    pub fn tap_node(&self, tap: &Tap) -> usize {
        self.graph.position(&tap.node).unwrap_or(0)
    }

    /// The number of channels (or features) `tap` has.
    pub fn width(&self, tap: &Tap) -> usize {
        match self.shapes[self.tap_node(tap)].out {
            Extent::Channels(c) | Extent::Features(Some(c)) => c,
            Extent::Features(None) => 0,
        }
    }

    /// `tap`'s output for a square input of `side` px: every node it depends on evaluated.
    pub fn tap_shape(&self, tap: &Tap, side: usize) -> Result<Shape, NetworkError> {
        let target = self.tap_node(tap);
        Ok(self.node_shapes(target, side)?[&target])
    }

    /// The output of node `target` and of every node it depends on (by graph index, so in
    /// evaluation order) for a square input of `side` px.
    pub(crate) fn node_shapes(
        &self,
        target: usize,
        side: usize,
    ) -> Result<BTreeMap<usize, Shape>, NetworkError> {
        let mut shapes: BTreeMap<usize, Shape> = BTreeMap::new();
        for i in self.graph.ancestors(target) {
            let inputs: Vec<Shape> = self.graph.sources[i]
                .iter()
                .map(|s| match s {
                    Source::Input => self.input_shape(side),
                    Source::Node(j) => shapes[j],
                })
                .collect();
            let out = output_shape(&self.graph.nodes[i], &self.shapes[i], &inputs)
                .map_err(|e| e.into_error(self.name(), self.graph.nodes[i].name(), side))?;
            shapes.insert(i, out);
        }
        Ok(shapes)
    }

    /// The image's shape at `side` px.
    pub(crate) fn input_shape(&self, side: usize) -> Shape {
        Shape::square(self.description.input.channels as usize, side)
    }

    /// The smallest square input for which `tap` has an output (`None` if none up to 4096 px).
    pub fn min_input_side(&self, tap: &Tap) -> Option<usize> {
        (1..=MAX_SIDE).find(|&n| self.tap_shape(tap, n).is_ok())
    }

    /// `(tap, width, smallest input side)` of every tap, in the description's order: what planning
    /// needs of a network.
    pub fn layer_table(&self) -> Vec<(String, usize, usize)> {
        self.description
            .taps
            .iter()
            .map(|t| {
                let min = self.min_input_side(t).unwrap_or(usize::MAX);
                (t.name.clone(), self.width(t), min)
            })
            .collect()
    }
}

fn has_bias(node: &Node) -> bool {
    match node {
        Node::Conv(c) => c.bias.is_some(),
        Node::Linear(l) => l.bias.is_some(),
        _ => false,
    }
}

/// A node's view of the weights: lookups that fail name the node and the tensor.
pub(crate) struct Lookup<'a> {
    network: &'a str,
    node: &'a Node,
    weights: &'a dyn WeightShapes,
}

impl<'a> Lookup<'a> {
    fn new(network: &'a str, node: &'a Node, weights: &'a dyn WeightShapes) -> Self {
        Self {
            network,
            node,
            weights,
        }
    }

    /// The shape of `tensor`, which must be present and float32.
    pub(crate) fn shape(&self, tensor: &str) -> Result<Vec<usize>, NetworkError> {
        if let Some(dtype) = self.weights.unsupported_dtype(tensor) {
            return Err(NetworkError::UnsupportedDtype {
                network: self.network.into(),
                node: self.node.name().to_owned(),
                tensor: tensor.to_owned(),
                dtype,
            });
        }
        self.weights
            .shape(tensor)
            .ok_or_else(|| NetworkError::MissingWeight {
                network: self.network.into(),
                node: self.node.name().to_owned(),
                tensor: tensor.to_owned(),
                file: self.weights.origin(),
                closest: closest_first(tensor, self.weights.names().iter().map(String::as_str))
                    .into_iter()
                    .take(3)
                    .collect(),
            })
    }

    /// `tensor` must be `[len]`.
    pub(crate) fn vector(&self, tensor: &str, len: usize) -> Result<(), NetworkError> {
        let shape = self.shape(tensor)?;
        if shape == [len] {
            Ok(())
        } else {
            Err(self.mismatch(tensor, shape, format!("[{len}]")))
        }
    }

    pub(crate) fn mismatch(
        &self,
        what: &str,
        actual: Vec<usize>,
        expected: String,
    ) -> NetworkError {
        NetworkError::ShapeMismatch {
            network: self.network.into(),
            node: self.node.name().to_owned(),
            what: what.to_owned(),
            actual,
            expected,
        }
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> NetworkError {
        NetworkError::InvalidNode {
            network: self.network.into(),
            node: self.node.name().to_owned(),
            reason: reason.into(),
        }
    }
}

/// `[out, in/groups, kh, kw]` of a convolution's weights, whatever their layout.
pub(crate) fn conv_dims(layout: ConvLayout, shape: &[usize]) -> Option<[usize; 4]> {
    match (layout, shape) {
        (ConvLayout::Hwio, &[h, w, i, o]) => Some([o, i, h, w]),
        (ConvLayout::Oihw, &[o, i, h, w]) => Some([o, i, h, w]),
        _ => None,
    }
}

/// `(out, in)` of a linear layer's weights.
pub(crate) fn linear_dims(layout: LinearLayout, shape: &[usize]) -> Option<(usize, usize)> {
    match (layout, shape) {
        (LinearLayout::Io, &[i, o]) => Some((o, i)),
        (LinearLayout::Oi, &[o, i]) => Some((o, i)),
        _ => None,
    }
}
