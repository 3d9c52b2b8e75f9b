//! A network described as data ([`lucid_network::Network`]) evaluated in libtorch.
//!
//! Weights are read once, converted to PyTorch's layouts (OIHW convolutions, `[out, in]` linear
//! layers) and frozen, so that only the image gets a gradient. A forward pass evaluates only the
//! nodes the tapped node depends on: layers above the target cost nothing. Batch norms that follow a
//! convolution read by nothing else are folded into it at load ([`DescribedNet::load`]); the folded
//! and the direct forms are tested against each other.
//!
//! Precision and layout follow the engine's settings as for the native network: in bf16 the nodes
//! run on bfloat16 copies of the weights (made on first use), and on CUDA the weights and
//! activations are channels-last and a strided convolution over few channels (an RGB stem) runs as
//! space-to-depth ([`crate::layout`]). Each is tested against the fp32 direct form.
//!
//! The image the network sees is what its description's input says: the rendered RGB image in
//! [0, 1], as luminance for a one-channel network (ITU-R BT.601 weights), mapped linearly onto the
//! input range, then normalised by the mean and standard deviation if given.

use std::collections::BTreeSet;

use lucid_checkpoint::ModelFile;
use lucid_network::description::{
    ActivationFn, ConvLayout, InputSpec, LinearLayout, NamedPadding, Node, Padding, Tap, TapPoint,
};
use lucid_network::graph::Source;
use lucid_network::{Network, NetworkError};
use tch::{Device, Kind, TchError, Tensor};

use crate::layout::{Layout, SpaceToDepth, same_padding, to_channels_last};
use crate::model::ModelError;
use crate::render::engine::{Phase, redirected_relu_grad};
use crate::render::net::{GradRequest, RenderNet};

/// BT.601 luma weights: how a greyscale network sees the rendered RGB image.
const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// Padding resolved to what libtorch is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pad {
    /// TensorFlow SAME: computed per input side.
    Same,
    /// `[top, bottom, left, right]`.
    Fixed([i64; 4]),
}

impl Pad {
    fn of(padding: Padding) -> Self {
        match padding {
            Padding::Named(NamedPadding::Same) => Pad::Same,
            Padding::Named(NamedPadding::Valid) => Pad::Fixed([0; 4]),
            Padding::Symmetric(p) => Pad::Fixed([p as i64; 4]),
            Padding::Explicit([t, b, l, r]) => Pad::Fixed([t as i64, b as i64, l as i64, r as i64]),
        }
    }

    /// `[top, bottom, left, right]` for an input of `(h, w)`.
    fn sides(
        self,
        (h, w): (i64, i64),
        kernel: [i64; 2],
        stride: [i64; 2],
        dilation: [i64; 2],
    ) -> [i64; 4] {
        match self {
            Pad::Fixed(p) => p,
            Pad::Same => {
                let (top, bottom) = same_padding(h, kernel[0], stride[0], dilation[0]);
                let (left, right) = same_padding(w, kernel[1], stride[1], dilation[1]);
                [top, bottom, left, right]
            }
        }
    }
}

/// A convolution, ready to run.
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: [i64; 2],
    pad: Pad,
    dilation: [i64; 2],
    groups: i64,
    /// The space-to-depth form and its kernel, where the layout asks for it and the shape pays.
    blocked: Option<(SpaceToDepth, Tensor)>,
}

/// A max or average pool.
#[derive(Debug, Clone, Copy)]
struct Pool {
    max: bool,
    kernel: [i64; 2],
    stride: [i64; 2],
    pad: Pad,
    ceil_mode: bool,
}

/// A local response normalisation (PyTorch's `local_response_norm`).
#[derive(Debug, Clone, Copy)]
struct Lrn {
    size: i64,
    alpha: f64,
    beta: f64,
    bias: f64,
}

/// One node, ready to run.
#[derive(Debug)]
enum Op {
    Conv(Conv),
    Pool(Pool),
    AdaptiveAvg(i64),
    Relu,
    Activation(ActivationFn),
    /// A batch norm as `x · scale + shift`, per channel (`[1, C, 1, 1]`).
    Affine {
        scale: Tensor,
        shift: Tensor,
    },
    /// A batch norm folded into the convolution it reads.
    Identity,
    Lrn(Lrn),
    Flatten,
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    Add,
    Concat,
}

impl Op {
    /// The same node with its tensors in `kind` (the bfloat16 copy of the network).
    fn cast(&self, kind: Kind) -> Op {
        let to = |t: &Tensor| t.to_kind(kind);
        match self {
            Op::Conv(c) => Op::Conv(Conv {
                weight: to(&c.weight),
                bias: c.bias.as_ref().map(to),
                blocked: c.blocked.as_ref().map(|(b, w)| (*b, to(w))),
                ..*c
            }),
            Op::Affine { scale, shift } => Op::Affine {
                scale: to(scale),
                shift: to(shift),
            },
            Op::Linear { weight, bias } => Op::Linear {
                weight: to(weight),
                bias: bias.as_ref().map(to),
            },
            Op::Pool(p) => Op::Pool(*p),
            Op::AdaptiveAvg(side) => Op::AdaptiveAvg(*side),
            Op::Relu => Op::Relu,
            Op::Activation(f) => Op::Activation(*f),
            Op::Identity => Op::Identity,
            Op::Lrn(l) => Op::Lrn(*l),
            Op::Flatten => Op::Flatten,
            Op::Add => Op::Add,
            Op::Concat => Op::Concat,
        }
    }
}

impl Conv {
    /// Lays the kernel out for `layout`: channels-last or contiguous, and its space-to-depth form
    /// where `layout` asks for it and the shape pays ([`SpaceToDepth::paying`]: square kernel and
    /// stride, no dilation or groups).
    fn lay_out(&mut self, layout: Layout) {
        let _guard = tch::no_grad_guard();
        let arrange = |w: &Tensor| {
            if layout.channels_last {
                to_channels_last(w)
            } else {
                w.contiguous()
            }
        };
        self.weight = arrange(&self.weight);
        let size = self.weight.size();
        let plain = self.dilation == [1, 1] && self.groups == 1 && self.stride[0] == self.stride[1];
        self.blocked = (layout.space_to_depth && plain && size[2] == size[3])
            .then(|| SpaceToDepth::paying(size[2], self.stride[0], size[1]))
            .flatten()
            .map(|b| (b, arrange(&b.weights(&self.weight.contiguous()))));
    }

    /// The convolution of `x`, its bias left out with `pre_bias`; the space-to-depth form where
    /// laid out so and the padded input is square.
    fn run(&self, x: &Tensor, pre_bias: bool, channels_last: bool) -> Tensor {
        let size = self.weight.size();
        let sides = self
            .pad
            .sides(spatial(x), [size[2], size[3]], self.stride, self.dilation);
        let y = match &self.blocked {
            Some((b, w)) => blocked_conv(x, b, w, sides, channels_last),
            None => None,
        }
        .unwrap_or_else(|| {
            conv(
                x,
                &self.weight,
                sides,
                self.stride,
                self.dilation,
                self.groups,
            )
        });
        match (&self.bias, pre_bias) {
            (Some(b), false) => y + b.view([1, -1, 1, 1]),
            _ => y,
        }
    }
}

/// How the rendered image becomes the network's input. The engine hands images mapped to [−1, 1]
/// (`c = 2x − 1`, the ecoset form); the range mapping is written from there: `lo + x·(hi − lo) =
/// c·(hi − lo)/2 + (hi + lo)/2`, which for alexnet_v2's [−1, 1] is `c` itself, untouched.
#[derive(Debug)]
pub(crate) struct InputMap {
    grey: Option<Tensor>,
    half_span: f64,
    mid: f64,
    mean: Option<Tensor>,
    std: Option<Tensor>,
}

impl InputMap {
    pub(crate) fn new(spec: &InputSpec, device: Device) -> Self {
        let [lo, hi] = spec.range;
        let column = |v: &[f64]| {
            Tensor::from_slice(v)
                .to_kind(Kind::Float)
                .view([1, -1, 1, 1])
                .to_device(device)
        };
        Self {
            grey: (spec.channels == 1).then(|| column(&LUMA)),
            half_span: (hi - lo) / 2.0,
            mid: (hi + lo) / 2.0,
            mean: spec.mean.as_deref().map(column),
            std: spec.std.as_deref().map(column),
        }
    }

    /// The network's view of an RGB batch `c` in [−1, 1]; the luma weights sum to 1, so the
    /// luminance of `c` is `2·luma(x) − 1`.
    pub(crate) fn apply_centred(&self, c: &Tensor) -> Tensor {
        let mut h = match &self.grey {
            Some(luma) => (c * luma).sum_dim_intlist(1, true, Kind::Float),
            None => c.shallow_clone(),
        };
        // never in place: `h` may be the caller's image itself
        if self.half_span != 1.0 {
            h = &h * self.half_span;
        }
        if self.mid != 0.0 {
            h = &h + self.mid;
        }
        if let Some(mean) = &self.mean {
            h = &h - mean;
        }
        if let Some(std) = &self.std {
            h = &h / std;
        }
        h
    }
}

/// A described network with frozen weights on one device.
#[derive(Debug)]
pub struct DescribedNet {
    network: Network,
    ops: Vec<Op>,
    /// `ops` in bfloat16, made on first use.
    low: std::cell::OnceCell<Vec<Op>>,
    layout: Layout,
    input: InputMap,
    device: Device,
    /// Per tap: its width and smallest input side, computed once.
    taps: Vec<(usize, usize)>,
}

impl DescribedNet {
    /// Resolves `network` against `file`'s weights and loads them onto `device`; batch norms are
    /// folded into their convolutions where that changes no tapped value (`fold_batch_norm`).
    pub fn load(
        network: Network,
        file: &ModelFile,
        device: Device,
        fold_batch_norm: bool,
    ) -> Result<Self, ModelError> {
        let loader = Loader { file, device };
        let mut ops = Vec::with_capacity(network.graph.nodes.len());
        for node in &network.graph.nodes {
            ops.push(loader.op(node)?);
        }
        let taps = network
            .layer_table()
            .into_iter()
            .map(|(_, width, min_side)| (width, min_side))
            .collect();
        let mut net = Self {
            input: InputMap::new(&network.description.input, device),
            network,
            ops,
            low: std::cell::OnceCell::new(),
            layout: Layout::default(),
            device,
            taps,
        };
        if fold_batch_norm {
            net.fold_batch_norms();
        }
        net.apply_layout(Layout::for_device(device));
        Ok(net)
    }

    /// Lays every convolution out for `layout`; the bfloat16 copy is made again on next use.
    fn apply_layout(&mut self, layout: Layout) {
        for op in &mut self.ops {
            if let Op::Conv(conv) = op {
                conv.lay_out(layout);
            }
        }
        self.low = std::cell::OnceCell::new();
        self.layout = Layout {
            channels_last: layout.channels_last,
            space_to_depth: self.ops.iter().any(|op| {
                matches!(
                    op,
                    Op::Conv(Conv {
                        blocked: Some(_),
                        ..
                    })
                )
            }),
        };
    }

    /// The nodes in `kind`: the fp32 originals or their bfloat16 copies.
    fn ops_in(&self, kind: Kind) -> &[Op] {
        if kind == Kind::BFloat16 {
            self.low.get_or_init(|| {
                let _guard = tch::no_grad_guard();
                self.ops.iter().map(|op| op.cast(kind)).collect()
            })
        } else {
            &self.ops
        }
    }

    /// The mapped input in `kind`, channels-last when the layout is.
    fn enter(&self, c: &Tensor, kind: Kind) -> Tensor {
        let h = self.input.apply_centred(c).to_kind(kind);
        if self.layout.channels_last {
            to_channels_last(&h)
        } else {
            h
        }
    }

    /// The description this network runs.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The device holding the weights.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The value tap `layer` reads, for an RGB batch `x` in [0, 1] (NCHW fp32); only the nodes the
    /// tap depends on are evaluated.
    pub fn forward(&self, x: &Tensor, layer: &str) -> Result<Tensor, NetworkError> {
        let tap = self.network.tap(layer)?;
        Ok(self.evaluate(&((x - 0.5) * 2.0), tap, Kind::Float, None))
    }

    /// `tap`'s value for a batch `c` in [−1, 1], computed in `kind` and returned in fp32. With
    /// `relus`, every ReLU's output is a detached leaf and its input is recorded beside it, in
    /// evaluation order (for the redirected gradient).
    fn evaluate(
        &self,
        c: &Tensor,
        tap: &Tap,
        kind: Kind,
        mut relus: Option<&mut Vec<(Tensor, Tensor)>>,
    ) -> Tensor {
        let target = self.network.tap_node(tap);
        let input = self.enter(c, kind);
        let ops = self.ops_in(kind);
        let channels_last = self.layout.channels_last;
        let mut values: Vec<Option<Tensor>> = (0..self.ops.len()).map(|_| None).collect();
        for i in self.network.graph.ancestors(target) {
            let inputs = self.node_inputs(i, &input, &values);
            let out = match (&ops[i], relus.as_deref_mut()) {
                (Op::Relu, Some(record)) => {
                    let z = inputs[0].shallow_clone();
                    let r = z.detach().relu().set_requires_grad(true);
                    record.push((z, r.shallow_clone()));
                    r
                }
                (op, _) => run(
                    op,
                    &inputs,
                    i == target && tap.at == TapPoint::PreBias,
                    channels_last,
                ),
            };
            values[i] = Some(out);
        }
        values[target].take().unwrap_or(input).to_kind(Kind::Float)
    }

    /// The values node `i` reads: the mapped `input` or earlier nodes' `values`.
    fn node_inputs<'a>(
        &self,
        i: usize,
        input: &'a Tensor,
        values: &'a [Option<Tensor>],
    ) -> Vec<&'a Tensor> {
        self.network.graph.sources[i]
            .iter()
            .map(|s| match s {
                Source::Input => input,
                Source::Node(j) => values[*j].as_ref().unwrap_or(input),
            })
            .collect()
    }

    /// [`DescribedNet::evaluate`] of every tap in `taps` (no ReLU record) from one evaluation of the
    /// nodes they depend on: each node runs once, and a tap before its convolution's bias runs that
    /// convolution once more without it, as `evaluate` does for its target.
    fn evaluate_many(&self, c: &Tensor, taps: &[&Tap], kind: Kind) -> Vec<Tensor> {
        let input = self.enter(c, kind);
        let ops = self.ops_in(kind);
        let channels_last = self.layout.channels_last;
        let graph = &self.network.graph;
        let targets: Vec<usize> = taps.iter().map(|t| self.network.tap_node(t)).collect();
        let needed: BTreeSet<usize> = targets.iter().flat_map(|&t| graph.ancestors(t)).collect();
        let mut values: Vec<Option<Tensor>> = (0..self.ops.len()).map(|_| None).collect();
        for i in needed {
            let out = run(
                &ops[i],
                &self.node_inputs(i, &input, &values),
                false,
                channels_last,
            );
            values[i] = Some(out);
        }
        taps.iter()
            .zip(targets)
            .map(|(tap, target)| {
                let value = if tap.at == TapPoint::PreBias {
                    let inputs = self.node_inputs(target, &input, &values);
                    run(&ops[target], &inputs, true, channels_last)
                } else {
                    values[target]
                        .as_ref()
                        .map_or_else(Tensor::new, Tensor::shallow_clone)
                };
                value.to_kind(Kind::Float)
            })
            .collect()
    }

    /// Folds every batch norm whose input is a convolution that nothing else reads and no tap reads.
    fn fold_batch_norms(&mut self) {
        let graph = &self.network.graph;
        let tapped: Vec<usize> = self
            .network
            .description
            .taps
            .iter()
            .map(|t| self.network.tap_node(t))
            .collect();
        for bn in 0..self.ops.len() {
            let [Source::Node(conv)] = graph.sources[bn][..] else {
                continue;
            };
            let readers = graph
                .sources
                .iter()
                .flatten()
                .filter(|s| **s == Source::Node(conv))
                .count();
            if readers != 1 || tapped.contains(&conv) {
                continue;
            }
            let (Op::Affine { scale, shift }, Op::Conv(Conv { weight, bias, .. })) =
                (&self.ops[bn], &self.ops[conv])
            else {
                continue;
            };
            let _guard = tch::no_grad_guard();
            let folded_weight = weight * scale.view([-1, 1, 1, 1]);
            let flat_scale = scale.view([-1]);
            let folded_bias = match bias {
                Some(b) => b * &flat_scale + shift.view([-1]),
                None => shift.view([-1]).shallow_clone(),
            };
            if let Op::Conv(Conv {
                weight,
                bias,
                blocked,
                ..
            }) = &mut self.ops[conv]
            {
                *weight = folded_weight;
                *bias = Some(folded_bias);
                // laid out again by `apply_layout`, which follows
                *blocked = None;
            }
            self.ops[bn] = Op::Identity;
        }
    }
}

/// Reads one node's weights into libtorch.
struct Loader<'a> {
    file: &'a ModelFile,
    device: Device,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, permute: Option<&[i64]>) -> Result<Tensor, ModelError> {
        let t = self.file.read_f32(name)?;
        let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        let torch_err = |source| ModelError::Torch {
            path: self.file.path().display().to_string(),
            source,
        };
        let mut x = Tensor::f_from_slice(&t.data)
            .and_then(|x| x.f_view(shape.as_slice()))
            .map_err(torch_err)?;
        if let Some(order) = permute {
            x = x.f_permute(order).map_err(torch_err)?;
        }
        let x = x
            .f_contiguous()
            .and_then(|x| x.f_to_device(self.device))
            .map_err(torch_err)?;
        Ok(x.set_requires_grad(false))
    }

    fn optional(&self, name: Option<&str>) -> Result<Option<Tensor>, ModelError> {
        name.map(|n| self.tensor(n, None)).transpose()
    }

    fn op(&self, node: &Node) -> Result<Op, ModelError> {
        let pair = |p: lucid_network::description::Pair| {
            let (h, w) = p.hw();
            [h as i64, w as i64]
        };
        Ok(match node {
            Node::Conv(c) => {
                let order: Option<&[i64]> = match c.layout {
                    ConvLayout::Hwio => Some(&[3, 2, 0, 1]),
                    ConvLayout::Oihw => None,
                };
                Op::Conv(Conv {
                    weight: self.tensor(&c.weights, order)?,
                    bias: self.optional(c.bias.as_deref())?,
                    stride: pair(c.stride),
                    pad: Pad::of(c.padding),
                    dilation: pair(c.dilation),
                    groups: c.groups as i64,
                    blocked: None,
                })
            }
            Node::MaxPool(p) | Node::AvgPool(p) => Op::Pool(Pool {
                max: matches!(node, Node::MaxPool(_)),
                kernel: pair(p.kernel),
                stride: pair(p.stride.unwrap_or(p.kernel)),
                pad: Pad::of(p.padding),
                ceil_mode: p.ceil_mode,
            }),
            Node::AdaptiveAvgPool(a) => Op::AdaptiveAvg(a.output as i64),
            Node::Relu(_) => Op::Relu,
            Node::Activation(a) => Op::Activation(a.function),
            Node::BatchNorm(b) => self.batch_norm(b)?,
            Node::Lrn(l) => Op::Lrn(Lrn {
                size: l.size as i64,
                alpha: l.alpha,
                beta: l.beta,
                bias: l.bias,
            }),
            Node::Flatten(_) => Op::Flatten,
            Node::Linear(l) => {
                let order: Option<&[i64]> = match l.layout {
                    LinearLayout::Io => Some(&[1, 0]),
                    LinearLayout::Oi => None,
                };
                Op::Linear {
                    weight: self.tensor(&l.weights, order)?,
                    bias: self.optional(l.bias.as_deref())?,
                }
            }
            Node::Add(_) => Op::Add,
            Node::Concat(_) => Op::Concat,
        })
    }

    /// `scale = γ / sqrt(var + ε)`, `shift = β − mean · scale`.
    fn batch_norm(&self, b: &lucid_network::description::BatchNorm) -> Result<Op, ModelError> {
        let mean = self.tensor(&b.mean, None)?;
        let variance = self.tensor(&b.variance, None)?;
        let gamma = self.optional(b.scale.as_deref())?;
        let beta = self.optional(b.offset.as_deref())?;
        let _guard = tch::no_grad_guard();
        let inv = (variance + b.epsilon).rsqrt();
        let scale = match gamma {
            Some(g) => g * inv,
            None => inv,
        };
        let shift = match beta {
            Some(beta) => beta - &mean * &scale,
            None => -(&mean * &scale),
        };
        Ok(Op::Affine {
            scale: scale.view([1, -1, 1, 1]),
            shift: shift.view([1, -1, 1, 1]),
        })
    }
}

/// Runs `op` on its inputs; `pre_bias` leaves a convolution's or linear layer's bias out.
fn run(op: &Op, inputs: &[&Tensor], pre_bias: bool, channels_last: bool) -> Tensor {
    let x = inputs[0];
    match op {
        Op::Conv(c) => c.run(x, pre_bias, channels_last),
        Op::Pool(p) => pool(x, p.max, p.kernel, p.stride, p.pad, p.ceil_mode),
        Op::AdaptiveAvg(side) => x.adaptive_avg_pool2d([*side, *side]),
        Op::Relu => x.relu(),
        Op::Activation(f) => activation(x, *f),
        Op::Affine { scale, shift } => x * scale + shift,
        Op::Identity => x.shallow_clone(),
        Op::Lrn(l) => lrn(x, l.size, l.alpha, l.beta, l.bias),
        Op::Flatten => x.flatten(1, -1),
        Op::Linear { weight, bias } => {
            let y = x.matmul(&weight.tr());
            match (bias, pre_bias) {
                (Some(b), false) => y + b,
                _ => y,
            }
        }
        Op::Add => inputs[1..]
            .iter()
            .fold(x.shallow_clone(), |acc, t| acc + *t),
        Op::Concat => Tensor::cat(inputs, 1),
    }
}

fn spatial(x: &Tensor) -> (i64, i64) {
    let size = x.size();
    (size[2], size[3])
}

/// A convolution with `[top, bottom, left, right]` zero padding: libtorch's own padding where it is
/// symmetric, an explicit pad otherwise (TF SAME with an odd total).
fn conv(
    x: &Tensor,
    w: &Tensor,
    [t, b, l, r]: [i64; 4],
    stride: [i64; 2],
    dilation: [i64; 2],
    groups: i64,
) -> Tensor {
    if t == b && l == r {
        return x.conv2d(w, None::<&Tensor>, stride, [t, l], dilation, groups);
    }
    x.constant_pad_nd([l, r, t, b])
        .conv2d(w, None::<&Tensor>, stride, [0, 0], dilation, groups)
}

/// A convolution in its space-to-depth form: padded first, then blocked, then stride 1; `None`
/// when the padded input is not square (the blocked form is built for square inputs), so that the
/// caller runs the direct form.
fn blocked_conv(
    x: &Tensor,
    blocked: &SpaceToDepth,
    w: &Tensor,
    [t, b, l, r]: [i64; 4],
    channels_last: bool,
) -> Option<Tensor> {
    let (h, wd) = spatial(x);
    if h + t + b != wd + l + r {
        return None;
    }
    let padded = if t + b + l + r > 0 {
        x.constant_pad_nd([l, r, t, b])
    } else {
        x.shallow_clone()
    };
    let input = blocked.input(&padded, x.kind(), channels_last);
    Some(input.conv2d(w, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1))
}

/// Max pooling pads with −∞ and average pooling leaves padding out of the mean, as both TensorFlow
/// (SAME) and PyTorch (`count_include_pad=False`) do.
fn pool(
    x: &Tensor,
    max: bool,
    kernel: [i64; 2],
    stride: [i64; 2],
    pad: Pad,
    ceil_mode: bool,
) -> Tensor {
    let [t, b, l, r] = pad.sides(spatial(x), kernel, stride, [1, 1]);
    if max {
        let padded = if t + b + l + r > 0 {
            x.pad([l, r, t, b], "constant", f64::NEG_INFINITY)
        } else {
            x.shallow_clone()
        };
        return padded.max_pool2d(kernel, stride, [0, 0], [1, 1], ceil_mode);
    }
    if t + b + l + r == 0 {
        return x.avg_pool2d(kernel, stride, [0, 0], ceil_mode, true, None);
    }
    let sums =
        x.constant_pad_nd([l, r, t, b])
            .avg_pool2d(kernel, stride, [0, 0], ceil_mode, true, None);
    let ones = x.ones_like().narrow(1, 0, 1);
    let counts = ones.constant_pad_nd([l, r, t, b]).avg_pool2d(
        kernel,
        stride,
        [0, 0],
        ceil_mode,
        true,
        None,
    );
    sums / counts
}

fn activation(x: &Tensor, f: ActivationFn) -> Tensor {
    match f {
        ActivationFn::Sigmoid => x.sigmoid(),
        ActivationFn::Tanh => x.tanh(),
        ActivationFn::Gelu => x.gelu("none"),
        ActivationFn::Relu6 => x.clamp(0.0, 6.0),
        ActivationFn::Silu => x.silu(),
    }
}

/// PyTorch's `local_response_norm`: `x / (bias + alpha · mean of x² over size channels)^beta`.
fn lrn(x: &Tensor, size: i64, alpha: f64, beta: f64, bias: f64) -> Tensor {
    let squares = x.square().unsqueeze(1);
    let padded = squares.constant_pad_nd([0, 0, 0, 0, size / 2, (size - 1) / 2]);
    let mean = padded
        .avg_pool3d([size, 1, 1], [1, 1, 1], [0, 0, 0], false, true, None)
        .squeeze_dim(1);
    x / (mean * alpha + bias).pow_tensor_scalar(beta)
}

impl RenderNet for DescribedNet {
    fn layer_index(&self, name: &str) -> Result<usize, ModelError> {
        let taps = &self.network.description.taps;
        match taps.iter().position(|t| t.name == name) {
            Some(i) => Ok(i),
            None => Err(ModelError::UnknownLayer {
                name: name.to_owned(),
                valid: match self.network.tap(name) {
                    Err(NetworkError::UnknownTap { valid, .. }) => valid.join(", "),
                    _ => String::new(),
                },
            }),
        }
    }

    fn layer_count(&self) -> usize {
        self.taps.len()
    }

    fn layer_name(&self, index: usize) -> &str {
        &self.network.description.taps[index].name
    }

    fn layer_width(&self, index: usize) -> usize {
        self.taps[index].0
    }

    fn min_input_side(&self, index: usize) -> usize {
        self.taps[index].1
    }

    fn device(&self) -> Device {
        self.device
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    fn set_layout(&mut self, layout: Layout) {
        self.apply_layout(layout);
    }

    fn forward_centred(&self, x: &Tensor, index: usize, kind: Kind) -> Tensor {
        let tap = &self.network.description.taps[index];
        as_map(self.evaluate(&x.to_kind(Kind::Float), tap, kind, None))
    }

    fn forward_centred_many(&self, x: &Tensor, indices: &[usize], kind: Kind) -> Vec<Tensor> {
        let taps: Vec<&Tap> = indices
            .iter()
            .map(|&i| &self.network.description.taps[i])
            .collect();
        let values = self.evaluate_many(&x.to_kind(Kind::Float), &taps, kind);
        values.into_iter().map(as_map).collect()
    }

    /// The graph may branch and join, so the gradients of every ReLU output (a detached leaf) are
    /// accumulated: first from the loss, then, ReLU by ReLU from the last evaluated to the first, from
    /// the redirected gradient at its input back to every leaf before it. For a chain this is the
    /// native network's walk over its segments.
    fn redirected_grad(&self, x: &Tensor, request: GradRequest<'_>) -> Result<Tensor, TchError> {
        let GradRequest {
            index,
            kind,
            loss_of,
            clock,
        } = request;
        let input = x.detach().to_kind(Kind::Float).set_requires_grad(true);
        let tap = &self.network.description.taps[index];
        let mut relus = Vec::new();
        let out = as_map(self.evaluate(&input, tap, kind, Some(&mut relus)));
        let loss = loss_of(&out);
        clock.mark(Phase::Forward);
        let leaves: Vec<&Tensor> = std::iter::once(&input)
            .chain(relus.iter().map(|(_, r)| r))
            .collect();
        let mut grads = gradients(&loss, &leaves)?;
        for k in (0..relus.len()).rev() {
            let z = &relus[k].0;
            let g_z = redirected_relu_grad(&z.detach(), &grads[k + 1]);
            let vjp = (z * g_z).sum(Kind::Float);
            let upstream = gradients(&vjp, &leaves[..=k])?;
            for (g, u) in grads.iter_mut().zip(upstream) {
                *g = &*g + u;
            }
        }
        Ok(grads.swap_remove(0))
    }
}

/// A linear layer's `[B, C]` as `[B, C, 1, 1]`, the shape the objectives read (lucid treats a fully
/// connected layer as a 1x1 map too); maps pass unchanged.
pub(crate) fn as_map(t: Tensor) -> Tensor {
    if t.dim() == 2 {
        t.unsqueeze(-1).unsqueeze(-1)
    } else {
        t
    }
}

/// The gradients of `root` at each of `leaves`, zeros where it does not depend on one; graphs are
/// kept, since the segments of a branching network share nodes.
fn gradients(root: &Tensor, leaves: &[&Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
    let grads = Tensor::f_run_backward(&[root], leaves, true, false)?;
    Ok(grads
        .into_iter()
        .zip(leaves)
        .map(|(g, leaf)| if g.defined() { g } else { leaf.zeros_like() })
        .collect())
}
