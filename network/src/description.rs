//! The description file: what a user writes (TOML) to tell lucid-sweep how a network computes.
//!
//! A description is a list of nodes, each naming its inputs, and a list of taps, the nodes one may
//! visualize. Shapes are not written down: they are read from the model file's weights and chained
//! through the graph by [`crate::Network::resolve`], so a description fits every width of one
//! architecture (the ecoset AlexNets and the narrow test fixtures share one).

use serde::{Deserialize, Serialize};

/// The graph input's name, which a node lists as its input to read the image.
pub const INPUT: &str = "input";

/// A whole description file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// The network's name, e.g. `alexnet_v2` (part of its identity in tasks and manifests).
    pub name: String,
    /// What the network expects to see.
    pub input: InputSpec,
    /// The computation, in any order (the graph is sorted when resolved).
    #[serde(rename = "node")]
    pub nodes: Vec<Node>,
    /// The nodes one may visualize, in the order a sweep lists them.
    #[serde(rename = "tap")]
    pub taps: Vec<Tap>,
}

impl Description {
    /// The identity of a description's text: `sha256:` and its hex SHA-256, stored in manifests so that
    /// a resumed run notices a changed description.
    pub fn digest(text: &str) -> String {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(text.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Parses a TOML description; `origin` names it in errors (a path or `built-in alexnet_v2`).
    pub fn parse_toml(text: &str, origin: &str) -> Result<Self, crate::NetworkError> {
        toml::from_str(text).map_err(|e| crate::NetworkError::Parse {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// The network's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// 3 (RGB) or 1 (greyscale: the rendered RGB image is shown to the network as its luminance).
    pub channels: u32,
    /// The value range the network's first layer expects; the rendered image in [0, 1] is mapped
    /// linearly onto it (alexnet_v2 from the ecoset runs: [-1, 1]).
    #[serde(default = "unit_range")]
    pub range: [f64; 2],
    /// Per-channel mean subtracted after the range mapping (ImageNet models: `[0.485, 0.456, 0.406]`).
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation divided by after the mean.
    #[serde(default)]
    pub std: Option<Vec<f64>>,
}

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

/// One computation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Node {
    /// A 2-D convolution, optionally with a bias.
    Conv(Conv),
    /// Max pooling.
    MaxPool(Pool),
    /// Average pooling (padding, if any, not counted in the mean).
    AvgPool(Pool),
    /// Average pooling to a fixed output side (torchvision's `AdaptiveAvgPool2d`).
    AdaptiveAvgPool(AdaptivePool),
    /// `max(x, 0)`. Kept apart from other activations: the ReLU redirect of the first steps acts on
    /// these nodes.
    Relu(Unary),
    /// Any other elementwise activation.
    Activation(Activation),
    /// Inference-mode batch norm; folded into the convolution feeding it when the worker loads.
    BatchNorm(BatchNorm),
    /// Local response normalisation across channels.
    Lrn(Lrn),
    /// `[N, C, H, W]` → `[N, C·H·W]`.
    Flatten(Unary),
    /// A fully connected layer on flattened features.
    Linear(Linear),
    /// The elementwise sum of equally shaped inputs (residual connections).
    Add(Join),
    /// Inputs stacked along the channel axis (Inception branches).
    Concat(Join),
}

impl Node {
    /// The node's name, unique in the graph.
    pub fn name(&self) -> &str {
        match self {
            Node::Conv(n) => &n.name,
            Node::MaxPool(n) | Node::AvgPool(n) => &n.name,
            Node::AdaptiveAvgPool(n) => &n.name,
            Node::Relu(n) | Node::Flatten(n) => &n.name,
            Node::Activation(n) => &n.name,
            Node::BatchNorm(n) => &n.name,
            Node::Lrn(n) => &n.name,
            Node::Linear(n) => &n.name,
            Node::Add(n) | Node::Concat(n) => &n.name,
        }
    }

    /// The names this node reads, in order.
    pub fn inputs(&self) -> Vec<&str> {
        match self {
            Node::Conv(n) => vec![n.input.as_str()],
            Node::MaxPool(n) | Node::AvgPool(n) => vec![n.input.as_str()],
            Node::AdaptiveAvgPool(n) => vec![n.input.as_str()],
            Node::Relu(n) | Node::Flatten(n) => vec![n.input.as_str()],
            Node::Activation(n) => vec![n.input.as_str()],
            Node::BatchNorm(n) => vec![n.input.as_str()],
            Node::Lrn(n) => vec![n.input.as_str()],
            Node::Linear(n) => vec![n.input.as_str()],
            Node::Add(n) | Node::Concat(n) => n.inputs.iter().map(String::as_str).collect(),
        }
    }

    /// The weight tensors this node reads from the model file.
    pub fn weight_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        match self {
            Node::Conv(c) => {
                out.push(c.weights.as_str());
                out.extend(c.bias.as_deref());
            }
            Node::Linear(l) => {
                out.push(l.weights.as_str());
                out.extend(l.bias.as_deref());
            }
            Node::BatchNorm(b) => {
                out.extend(b.scale.as_deref());
                out.extend(b.offset.as_deref());
                out.push(b.mean.as_str());
                out.push(b.variance.as_str());
            }
            _ => {}
        }
        out
    }
}

/// Height and width of a kernel, stride or dilation: one number for a square one, or `[h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pair {
    /// The same in both directions.
    Square(u32),
    /// `[h, w]`.
    Rect([u32; 2]),
}

impl Pair {
    /// `(h, w)`.
    pub fn hw(self) -> (usize, usize) {
        match self {
            Pair::Square(n) => (n as usize, n as usize),
            Pair::Rect([h, w]) => (h as usize, w as usize),
        }
    }
}

fn one() -> Pair {
    Pair::Square(1)
}

/// How a convolution or pool pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Padding {
    /// TensorFlow's `"same"` or `"valid"`.
    Named(NamedPadding),
    /// The same number of zeros on every side (PyTorch's `padding=p`).
    Symmetric(u32),
    /// `[top, bottom, left, right]`.
    Explicit([u32; 4]),
}

/// TensorFlow's padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedPadding {
    /// Output side `ceil(in / stride)`, the extra zero (if odd) at the bottom and right.
    Same,
    /// No padding.
    Valid,
}

fn valid() -> Padding {
    Padding::Named(NamedPadding::Valid)
}

/// How a weight tensor's axes are ordered in the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvLayout {
    /// TensorFlow: `[kh, kw, in / groups, out]`.
    Hwio,
    /// PyTorch: `[out, in / groups, kh, kw]`.
    Oihw,
}

/// How a linear layer's weight axes are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearLayout {
    /// TensorFlow: `[in, out]`.
    Io,
    /// PyTorch: `[out, in]`.
    Oi,
}

/// A convolution; its kernel side and channel counts come from the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv {
    /// The node's name.
    pub name: String,
    /// The node it reads.
    pub input: String,
    /// The weights tensor.
    pub weights: String,
    /// Their axis order.
    pub layout: ConvLayout,
    /// The bias tensor, `[out]`, if any.
    #[serde(default)]
    pub bias: Option<String>,
    /// The kernel the weights must have; read from them when absent.
    #[serde(default)]
    pub kernel: Option<Pair>,
    /// Default 1.
    #[serde(default = "one")]
    pub stride: Pair,
    /// Default `"valid"`.
    #[serde(default = "valid")]
    pub padding: Padding,
    /// Default 1.
    #[serde(default = "one")]
    pub dilation: Pair,
    /// Default 1; the input channels must divide into them.
    #[serde(default = "one_group")]
    pub groups: u32,
}

fn one_group() -> u32 {
    1
}

/// A max or average pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The node's name.
    pub name: String,
    /// The node it reads.
    pub input: String,
    /// The window.
    pub kernel: Pair,
    /// Default: the window.
    #[serde(default)]
    pub stride: Option<Pair>,
    /// Default `"valid"`.
    #[serde(default = "valid")]
    pub padding: Padding,
    /// PyTorch's `ceil_mode` (GoogLeNet's pools): a last partial window counts.
    #[serde(default)]
    pub ceil_mode: bool,
}

/// Average pooling to a fixed side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptivePool {
    /// The node's name.
    pub name: String,
    /// The node it reads.
    pub input: String,
    /// The output side (square).
    pub output: u32,
}

/// A node with one input and no parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unary {
    /// The node's name.
    pub name: String,
    /// The node it reads.
    pub input: String,
}

/// The elementwise activations besides ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationFn {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// The exact (erf) GELU.
    Gelu,
    /// `min(max(x, 0), 6)` (MobileNets).
    Relu6,
    /// `x · sigmoid(x)`.
    Silu,
}

/// An activation node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// The node's name.
    pub name: String,
    /// The node it reads.
    pub input: String,
    /// Which function.
    pub function: ActivationFn,
}

/// Inference-mode batch norm: `(x − mean) / sqrt(variance + epsilon) · scale + offset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNorm {
    /// The node's name.
    pub name: String,
    /// The node it reads.
    pub input: String,
    /// γ, `[C]`; 1 when absent.
    #[serde(default)]
    pub scale: Option<String>,
    /// β, `[C]`; 0 when absent.
    #[serde(default)]
    pub offset: Option<String>,
    /// Running mean, `[C]`.
    pub mean: String,
    /// Running variance, `[C]`.
    pub variance: String,
    /// Added to the variance (PyTorch's default 1e-5).
    #[serde(default = "bn_epsilon")]
    pub epsilon: f64,
}

fn bn_epsilon() -> f64 {
    1e-5
}

/// Local response normalisation, PyTorch's definition: `x / (bias + alpha/size · Σ x²)^beta` over
/// `size` neighbouring channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lrn {
    /// The node's name.
    pub name: String,
    /// The node it reads.
    pub input: String,
    /// Channels in the window.
    pub size: u32,
    /// Default 1e-4.
    #[serde(default = "lrn_alpha")]
    pub alpha: f64,
    /// Default 0.75.
    #[serde(default = "lrn_beta")]
    pub beta: f64,
    /// Default 1.
    #[serde(default = "lrn_bias")]
    pub bias: f64,
}

fn lrn_alpha() -> f64 {
    1e-4
}
fn lrn_beta() -> f64 {
    0.75
}
fn lrn_bias() -> f64 {
    1.0
}

/// A fully connected layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    /// The node's name.
    pub name: String,
    /// The node it reads (flattened features).
    pub input: String,
    /// The weights tensor.
    pub weights: String,
    /// Their axis order.
    pub layout: LinearLayout,
    /// The bias tensor, `[out]`, if any.
    #[serde(default)]
    pub bias: Option<String>,
}

/// A node over several inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The node's name.
    pub name: String,
    /// The nodes it reads, at least two.
    pub inputs: Vec<String>,
}

/// A visualizable point of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tap {
    /// The name a sweep uses (`layers = ["conv1"]`), unique among taps; may equal a node's name.
    pub name: String,
    /// The node whose output is tapped.
    pub node: String,
    /// Which value of the node.
    #[serde(default)]
    pub at: TapPoint,
}

/// What a tap reads of its node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapPoint {
    /// The node's output.
    #[default]
    Output,
    /// A convolution's or linear layer's output before its bias is added: what the ecoset script
    /// visualizes (TensorFlow's `…/Conv2D`). Only for a node with a bias.
    PreBias,
}
