//! Shapes through the graph: what each node's weights fix (kernel, channels), and the spatial sides
//! that follow from an input size, with TensorFlow's SAME/VALID and PyTorch's explicit-padding rules.

use crate::description::{NamedPadding, Node, Padding, Pair};
use crate::error::NetworkError;
use crate::network::{Lookup, conv_dims, linear_dims};

/// A node's output, as far as it is known without an input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// A `[C, H, W]` map with this many channels.
    Channels(usize),
    /// Flat features: their count, or `None` when it depends on the input size (a flattened map).
    Features(Option<usize>),
}

/// What a node's weights fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    /// No weights that shape anything.
    None,
    /// A convolution: `[out, in / groups, kh, kw]`.
    Conv {
        /// Output channels.
        out: usize,
        /// Kernel height and width.
        kernel: (usize, usize),
    },
    /// A linear layer.
    Linear {
        /// Output features.
        out: usize,
        /// Input features.
        inputs: usize,
    },
}

/// A node's static shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeShape {
    /// Its output.
    pub out: Extent,
    /// Its weights' dimensions.
    pub params: Params,
}

/// A value's shape for one input size (batch axis left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `[channels, h, w]`.
    Spatial {
        /// Channels.
        channels: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// `[features]`.
    Flat(usize),
}

impl Shape {
    /// A map of `channels` × `side` × `side`: what a square input gives every layer before the head.
    pub fn square(channels: usize, side: usize) -> Shape {
        Shape::Spatial {
            channels,
            h: side,
            w: side,
        }
    }
}

impl NodeShape {
    /// The static shape of `node`, reading `inputs` (name, extent) and its weights through `lookup`.
    pub(crate) fn of(
        node: &Node,
        inputs: &[(String, Extent)],
        lookup: &Lookup<'_>,
    ) -> Result<Self, NetworkError> {
        let plain = |out| NodeShape {
            out,
            params: Params::None,
        };
        let first = inputs
            .first()
            .map(|(_, e)| *e)
            .unwrap_or(Extent::Channels(0));
        match node {
            Node::Conv(c) => conv_shape(c, inputs, lookup),
            Node::Linear(l) => linear_shape(l, inputs, lookup),
            Node::BatchNorm(b) => {
                let channels = map_channels(inputs, lookup)?;
                for tensor in [&b.scale, &b.offset].into_iter().flatten() {
                    lookup.vector(tensor, channels)?;
                }
                lookup.vector(&b.mean, channels)?;
                lookup.vector(&b.variance, channels)?;
                Ok(plain(first))
            }
            Node::MaxPool(p) | Node::AvgPool(p) => {
                check_positive(lookup, &[p.kernel, p.stride.unwrap_or(p.kernel)])?;
                Ok(plain(Extent::Channels(map_channels(inputs, lookup)?)))
            }
            Node::AdaptiveAvgPool(_) | Node::Lrn(_) => {
                Ok(plain(Extent::Channels(map_channels(inputs, lookup)?)))
            }
            Node::Relu(_) | Node::Activation(_) => Ok(plain(first)),
            Node::Flatten(_) => Ok(plain(match first {
                Extent::Channels(_) => Extent::Features(None),
                flat => flat,
            })),
            Node::Add(_) => join_shape(inputs, lookup, false).map(plain),
            Node::Concat(_) => join_shape(inputs, lookup, true).map(plain),
        }
    }
}

fn check_positive(lookup: &Lookup<'_>, pairs: &[Pair]) -> Result<(), NetworkError> {
    if pairs.iter().any(|p| {
        let (h, w) = p.hw();
        h == 0 || w == 0
    }) {
        return Err(lookup.invalid("kernel, stride and dilation must be at least 1"));
    }
    Ok(())
}

/// The channels of a node's single map input.
fn map_channels(inputs: &[(String, Extent)], lookup: &Lookup<'_>) -> Result<usize, NetworkError> {
    match inputs {
        [(_, Extent::Channels(c))] => Ok(*c),
        [(from, Extent::Features(n))] => Err(lookup.mismatch(
            &format!("input from {from}"),
            n.iter().copied().collect(),
            "a [C, H, W] map (this node cannot follow a flatten or linear node)".into(),
        )),
        _ => Err(lookup.invalid("expected one input")),
    }
}

fn conv_shape(
    c: &crate::description::Conv,
    inputs: &[(String, Extent)],
    lookup: &Lookup<'_>,
) -> Result<NodeShape, NetworkError> {
    check_positive(lookup, &[c.stride, c.dilation])?;
    let in_channels = map_channels(inputs, lookup)?;
    let groups = c.groups as usize;
    if groups == 0 || in_channels % groups != 0 {
        return Err(lookup.invalid(format!(
            "groups = {groups} does not divide its {in_channels} input channels"
        )));
    }
    let shape = lookup.shape(&c.weights)?;
    let layout_text = match c.layout {
        crate::description::ConvLayout::Hwio => "HWIO",
        crate::description::ConvLayout::Oihw => "OIHW",
    };
    let want_kernel = c.kernel.map(Pair::hw);
    let dims = conv_dims(c.layout, &shape).filter(|&[o, i, h, w]| {
        o > 0
            && o % groups == 0
            && i == in_channels / groups
            && want_kernel.is_none_or(|k| k == (h, w))
    });
    let Some([out, _, kh, kw]) = dims else {
        let (kh, kw) = want_kernel.map_or(("kh".to_owned(), "kw".to_owned()), |(h, w)| {
            (h.to_string(), w.to_string())
        });
        let i = in_channels / groups;
        let expected = match c.layout {
            crate::description::ConvLayout::Hwio => {
                format!("[{kh}, {kw}, {i}, out] ({layout_text})")
            }
            crate::description::ConvLayout::Oihw => {
                format!("[out, {i}, {kh}, {kw}] ({layout_text})")
            }
        };
        return Err(lookup.mismatch(&c.weights, shape, expected));
    };
    if let Some(bias) = &c.bias {
        lookup.vector(bias, out)?;
    }
    Ok(NodeShape {
        out: Extent::Channels(out),
        params: Params::Conv {
            out,
            kernel: (kh, kw),
        },
    })
}

fn linear_shape(
    l: &crate::description::Linear,
    inputs: &[(String, Extent)],
    lookup: &Lookup<'_>,
) -> Result<NodeShape, NetworkError> {
    let incoming = match inputs {
        [(_, Extent::Features(n))] => *n,
        [(from, Extent::Channels(c))] => {
            return Err(lookup.mismatch(
                &format!("input from {from}"),
                vec![*c],
                "flat features (put a flatten node before it)".into(),
            ));
        }
        _ => return Err(lookup.invalid("expected one input")),
    };
    let shape = lookup.shape(&l.weights)?;
    let dims =
        linear_dims(l.layout, &shape).filter(|&(o, i)| o > 0 && incoming.is_none_or(|n| n == i));
    let Some((out, inputs)) = dims else {
        let i = incoming.map_or("in".to_owned(), |n| n.to_string());
        let expected = match l.layout {
            crate::description::LinearLayout::Io => format!("[{i}, out] (IO)"),
            crate::description::LinearLayout::Oi => format!("[out, {i}] (OI)"),
        };
        return Err(lookup.mismatch(&l.weights, shape, expected));
    };
    if let Some(bias) = &l.bias {
        lookup.vector(bias, out)?;
    }
    Ok(NodeShape {
        out: Extent::Features(Some(out)),
        params: Params::Linear { out, inputs },
    })
}

/// Add (equal channels) or concat (channels summed) of two or more maps.
fn join_shape(
    inputs: &[(String, Extent)],
    lookup: &Lookup<'_>,
    concat: bool,
) -> Result<Extent, NetworkError> {
    if inputs.len() < 2 {
        return Err(lookup.invalid("a join needs at least two inputs"));
    }
    let mut channels = Vec::with_capacity(inputs.len());
    for input in inputs {
        channels.push(map_channels(std::slice::from_ref(input), lookup)?);
    }
    if concat {
        return Ok(Extent::Channels(channels.iter().sum()));
    }
    if let Some(((from, _), found)) = inputs
        .iter()
        .zip(&channels)
        .find(|(_, c)| **c != channels[0])
    {
        return Err(lookup.mismatch(
            &format!("input from {from}"),
            vec![*found],
            format!("{} channels, as its first input", channels[0]),
        ));
    }
    Ok(Extent::Channels(channels[0]))
}

/// Why a node has no output for one input size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SideError {
    /// A window larger than its padded input.
    TooSmall,
    /// A linear layer's features.
    Features {
        /// What its weights take.
        expected: usize,
        /// What it gets.
        actual: usize,
    },
    /// A join of maps whose sides differ.
    Sides(Vec<usize>),
}

impl SideError {
    pub(crate) fn into_error(self, network: &str, node: &str, input: usize) -> NetworkError {
        match self {
            SideError::TooSmall => NetworkError::InputTooSmall {
                network: network.into(),
                node: node.to_owned(),
                input,
            },
            SideError::Features { expected, actual } => NetworkError::FeatureCount {
                network: network.into(),
                node: node.to_owned(),
                input,
                expected,
                actual,
            },
            SideError::Sides(actual) => NetworkError::ShapeMismatch {
                network: network.into(),
                node: node.to_owned(),
                what: format!("at an input of {input} px, its inputs' sides"),
                actual,
                expected: "equal sides".into(),
            },
        }
    }
}

/// The output of `node` for inputs of `inputs`' shapes (channel counts were checked when resolved).
pub(crate) fn output_shape(
    node: &Node,
    fixed: &NodeShape,
    inputs: &[Shape],
) -> Result<Shape, SideError> {
    let first = inputs.first().copied().unwrap_or(Shape::Flat(0));
    let Shape::Spatial { channels, h, w } = first else {
        return flat_output(node, fixed, first);
    };
    let out = |h, w| Shape::Spatial { channels, h, w };
    match node {
        Node::Conv(c) => {
            let Params::Conv { out: o, kernel } = fixed.params else {
                return Err(SideError::TooSmall);
            };
            let (h, w) = window(
                (h, w),
                kernel,
                c.stride.hw(),
                c.dilation.hw(),
                c.padding,
                false,
            )?;
            Ok(Shape::Spatial { channels: o, h, w })
        }
        Node::MaxPool(p) | Node::AvgPool(p) => {
            let stride = p.stride.unwrap_or(p.kernel).hw();
            let (h, w) = window(
                (h, w),
                p.kernel.hw(),
                stride,
                (1, 1),
                p.padding,
                p.ceil_mode,
            )?;
            Ok(out(h, w))
        }
        Node::AdaptiveAvgPool(a) => Ok(out(a.output as usize, a.output as usize)),
        Node::Flatten(_) => Ok(Shape::Flat(channels * h * w)),
        Node::Linear(_) => flat_output(node, fixed, Shape::Flat(channels * h * w)),
        Node::Add(_) | Node::Concat(_) => join_output(fixed, inputs),
        Node::Relu(_) | Node::Activation(_) | Node::BatchNorm(_) | Node::Lrn(_) => Ok(first),
    }
}

fn flat_output(node: &Node, fixed: &NodeShape, input: Shape) -> Result<Shape, SideError> {
    let Shape::Flat(n) = input else {
        return Err(SideError::TooSmall);
    };
    match (node, fixed.params) {
        (Node::Linear(_), Params::Linear { out, inputs }) if inputs == n => Ok(Shape::Flat(out)),
        (Node::Linear(_), Params::Linear { inputs, .. }) => Err(SideError::Features {
            expected: inputs,
            actual: n,
        }),
        _ => Ok(input),
    }
}

fn join_output(fixed: &NodeShape, inputs: &[Shape]) -> Result<Shape, SideError> {
    let sides: Vec<(usize, usize)> = inputs
        .iter()
        .map(|s| match s {
            Shape::Spatial { h, w, .. } => (*h, *w),
            Shape::Flat(_) => (0, 0),
        })
        .collect();
    if sides.iter().any(|s| *s != sides[0]) {
        return Err(SideError::Sides(sides.iter().map(|s| s.0).collect()));
    }
    let channels = match fixed.out {
        Extent::Channels(c) => c,
        Extent::Features(_) => 0,
    };
    Ok(Shape::Spatial {
        channels,
        h: sides[0].0,
        w: sides[0].1,
    })
}

/// The output side of a sliding window over `input` in each direction.
fn window(
    input: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: Padding,
    ceil_mode: bool,
) -> Result<(usize, usize), SideError> {
    let (top, bottom, left, right) = match padding {
        Padding::Named(NamedPadding::Same) => {
            return Ok((same_side(input.0, stride.0)?, same_side(input.1, stride.1)?));
        }
        Padding::Named(NamedPadding::Valid) => (0, 0, 0, 0),
        Padding::Symmetric(p) => (p, p, p, p),
        Padding::Explicit([t, b, l, r]) => (t, b, l, r),
    };
    let h = side(
        input.0,
        kernel.0,
        stride.0,
        dilation.0,
        (top, bottom),
        ceil_mode,
    )?;
    let w = side(
        input.1,
        kernel.1,
        stride.1,
        dilation.1,
        (left, right),
        ceil_mode,
    )?;
    Ok((h, w))
}

/// TensorFlow SAME: `ceil(in / stride)`, for any kernel.
fn same_side(input: usize, stride: usize) -> Result<usize, SideError> {
    if input == 0 {
        return Err(SideError::TooSmall);
    }
    Ok(input.div_ceil(stride))
}

/// PyTorch's rule: `floor((in + pads − dilation·(k − 1) − 1) / stride) + 1`, or with `ceil_mode` the
/// ceiling, less one if the last window would start in the end padding.
fn side(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    (begin, end): (u32, u32),
    ceil_mode: bool,
) -> Result<usize, SideError> {
    if input == 0 {
        return Err(SideError::TooSmall);
    }
    let padded = input + begin as usize + end as usize;
    let reach = dilation * (kernel - 1) + 1;
    let rest = padded.checked_sub(reach).ok_or(SideError::TooSmall)?;
    if !ceil_mode {
        return Ok(rest / stride + 1);
    }
    let mut out = rest.div_ceil(stride) + 1;
    if (out - 1) * stride >= input + begin as usize {
        out -= 1;
    }
    Ok(out)
}
