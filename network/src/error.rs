//! Why a description cannot be used: each error names the node, tensor or tap at fault.

/// A description that does not parse, does not form a graph, or does not fit its model file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetworkError {
    /// Not a valid description file.
    #[error("network description {origin}: {reason}")]
    Parse {
        /// The file (or `built-in <name>`).
        origin: String,
        /// The TOML parser's message, with line and column.
        reason: String,
    },
    /// Two nodes, or two taps, share a name.
    #[error("network {network}: {what} {name:?} is defined twice")]
    Duplicate {
        /// The network.
        network: Box<str>,
        /// `node` or `tap`.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A node reads a name that is neither a node nor the input.
    #[error("network {network}: node {node} reads {input:?}, which is not a node{}", suggest(.closest))]
    UnknownInput {
        /// The network.
        network: Box<str>,
        /// The reading node.
        node: String,
        /// The name it reads.
        input: String,
        /// The nearest node names, closest first.
        closest: Vec<String>,
    },
    /// The nodes read each other in a loop.
    #[error("network {network}: nodes {} form a cycle", .nodes.join(" → "))]
    Cycle {
        /// The network.
        network: Box<str>,
        /// The nodes of the cycle, in reading order.
        nodes: Vec<String>,
    },
    /// A node's parameters are not valid whatever the weights (a zero stride, a join of one input).
    #[error("network {network}: node {node}: {reason}")]
    InvalidNode {
        /// The network.
        network: Box<str>,
        /// The node.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// A weight tensor the description names is not in the model file.
    #[error("network {network}: node {node} needs tensor {tensor}, which {file} does not hold{}", suggest(.closest))]
    MissingWeight {
        /// The network.
        network: Box<str>,
        /// The node.
        node: String,
        /// The tensor's name.
        tensor: String,
        /// The model file.
        file: String,
        /// The nearest tensor names in the file, closest first.
        closest: Vec<String>,
    },
    /// A weight tensor of an element type the worker does not compute with.
    #[error(
        "network {network}: node {node}: tensor {tensor} is {dtype}; only float32 weights are supported"
    )]
    UnsupportedDtype {
        /// The network.
        network: Box<str>,
        /// The node.
        node: String,
        /// The tensor's name.
        tensor: String,
        /// Its element type.
        dtype: String,
    },
    /// A tensor's shape, or an input's shape, does not fit the node.
    #[error("network {network}: node {node}: {what} has shape {actual:?}, expected {expected}")]
    ShapeMismatch {
        /// The network.
        network: Box<str>,
        /// The node.
        node: String,
        /// The tensor name, or `input from <node>`.
        what: String,
        /// What was found.
        actual: Vec<usize>,
        /// What fits.
        expected: String,
    },
    /// A tap that the description does not list.
    #[error("network {network} has no layer {name:?}; its layers are {}", .valid.join(", "))]
    UnknownTap {
        /// The network.
        network: Box<str>,
        /// The name asked for.
        name: String,
        /// Every tap, closest to `name` first.
        valid: Vec<String>,
    },
    /// An input of `input` px leaves some node on the way to a tap with no output.
    #[error("network {network}: an input of {input} px leaves node {node} with no output")]
    InputTooSmall {
        /// The network.
        network: Box<str>,
        /// The first node without output.
        node: String,
        /// The input side.
        input: usize,
    },
    /// At this input size a linear layer gets a different number of features than its weights take.
    #[error(
        "network {network}: node {node} takes {expected} features, but an input of {input} px gives it {actual}"
    )]
    FeatureCount {
        /// The network.
        network: Box<str>,
        /// The linear node.
        node: String,
        /// The input side.
        input: usize,
        /// Its weights' input features.
        expected: usize,
        /// The features it receives.
        actual: usize,
    },
}

fn suggest(closest: &[String]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", closest.join(", "))
    }
}

/// Up to `n` of `candidates`, those closest to `name` first (Levenshtein distance, ties in the
/// candidates' order).
pub fn closest_first<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, usize, &str)> = candidates
        .into_iter()
        .enumerate()
        .map(|(i, c)| (strsim::levenshtein(name, c), i, c))
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, _, c)| c.to_owned()).collect()
}
