//! The `alexnet_v2` network in libtorch, with tf-slim semantics and widths read from the model file.
//!
//! Tensors are NCHW. Inputs are RGB in [0, 1]; the network maps them to [-1, 1] itself, as the ecoset
//! graph does. A forward pass stops at the target layer and returns its **pre-bias** convolution output
//! (TensorFlow's `alexnet_v2/<layer>/Conv2D`), which is what lucid visualizes.

use lucid_checkpoint::ModelFile;
use lucid_checkpoint::alexnet::{AlexNetSpec, LayerSpec, Padding};
use tch::{Device, Kind, Tensor};

/// Failure to build a network (native or described) from a model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file could not be read or does not hold an `alexnet_v2`.
    #[error(transparent)]
    Checkpoint(#[from] lucid_checkpoint::Error),
    /// A network description does not fit the model file.
    #[error(transparent)]
    Network(#[from] lucid_network::NetworkError),
    /// libtorch refused an operation (for example out of device memory).
    #[error("libtorch error while loading {path}: {source}")]
    Torch {
        /// The model file.
        path: String,
        /// libtorch's error.
        source: tch::TchError,
    },
    /// A layer name that the network does not have.
    #[error("unknown layer {name:?}: expected one of {valid}")]
    UnknownLayer {
        /// The name asked for.
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },
}

/// One convolution of the network with its bias, ReLU and pooling.
#[derive(Debug)]
struct Layer {
    spec: LayerSpec,
    /// OIHW weights.
    weights: Tensor,
    /// `[out]` biases.
    biases: Tensor,
    /// TF padding (left, right, top, bottom) for SAME layers whose padding is asymmetric, computed per
    /// input size at forward time; `None` for VALID.
    same: bool,
    /// bfloat16 copies of `weights` and `biases`, made on first use (see [`AlexNet::conv`]).
    low: std::cell::OnceCell<(Tensor, Tensor)>,
    /// When set, `weights` hold the space-to-depth form of this (first) layer's kernel.
    space_to_depth: Option<SpaceToDepth>,
}

/// The first layer's strided VALID convolution rewritten as a stride-1 convolution over
/// `block` x `block` pixel blocks: the input becomes `[B, C·block², R/block, R/block]` and the kernel,
/// zero-padded to `taps·block`, `[O, C·block², taps, taps]`. The same sums in a shape that tensor
/// cores run well (conv1's 3 input channels and stride 4 do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpaceToDepth {
    /// The original stride, the side of a block.
    block: i64,
    /// The original kernel side.
    kernel: i64,
    /// Kernel side in blocks: `⌈kernel / block⌉`.
    taps: i64,
}

impl SpaceToDepth {
    /// Input rows the blocked convolution reads for `n` input rows: `block·⌊(n − kernel)/block⌋ +
    /// taps·block`, at most one more than `n` (the extra row meets only zero weights).
    fn rows(&self, n: i64) -> i64 {
        self.block * ((n - self.kernel) / self.block) + self.taps * self.block
    }

    /// `[O, C, k, k]` → `[O, C·block², taps, taps]`, channel order (c, dy, dx).
    fn weights(&self, w: &Tensor) -> Tensor {
        let size = w.size();
        let (o, c) = (size[0], size[1]);
        let (s, t) = (self.block, self.taps);
        let extra = t * s - self.kernel;
        w.constant_pad_nd([0, extra, 0, extra])
            .view([o, c, t, s, t, s])
            .permute([0, 1, 3, 5, 2, 4])
            .reshape([o, c * s * s, t, t])
    }

    /// The inverse of [`SpaceToDepth::weights`]: `[O, C·block², taps, taps]` → `[O, C, k, k]`.
    fn original(&self, w: &Tensor) -> Tensor {
        let size = w.size();
        let (s, t) = (self.block, self.taps);
        let (o, c) = (size[0], size[1] / (s * s));
        w.view([o, c, s, s, t, t])
            .permute([0, 1, 4, 2, 5, 3])
            .reshape([o, c, t * s, t * s])
            .narrow(2, 0, self.kernel)
            .narrow(3, 0, self.kernel)
            .contiguous()
    }

    /// `[B, C, n, n]` → `[B, C·block², q, q]` in `kind` with `q = rows(n)/block`, in one strided copy
    /// (channels-last or not); a zero row and column are appended first when `rows(n) = n + 1`.
    fn input(&self, x: &Tensor, kind: Kind, channels_last: bool) -> Tensor {
        let size = x.size();
        let (b, c, n) = (size[0], size[1], size[2]);
        let r = self.rows(n);
        let s = self.block;
        let q = r / s;
        let x = if r > n {
            x.constant_pad_nd([0, r - n, 0, r - n])
        } else {
            x.narrow(2, 0, r).narrow(3, 0, r)
        };
        let blocks = x.view([b, c, q, s, q, s]);
        let options = (kind, x.device());
        if channels_last {
            // dest[b, i, j, c, dy, dx] = x[b, c, s·i + dy, s·j + dx]
            let dest = Tensor::empty([b, q, q, c, s, s], options);
            dest.permute([0, 3, 1, 4, 2, 5]).copy_(&blocks);
            dest.view([b, q, q, c * s * s]).permute([0, 3, 1, 2])
        } else {
            // dest[b, c, dy, dx, i, j]
            let dest = Tensor::empty([b, c, s, s, q, q], options);
            dest.permute([0, 1, 4, 2, 5, 3]).copy_(&blocks);
            dest.view([b, c * s * s, q, q])
        }
    }
}

impl Layer {
    /// The weights and biases in `kind`: the fp32 originals, or their bfloat16 copies.
    fn params(&self, kind: Kind) -> (&Tensor, &Tensor) {
        if kind == Kind::BFloat16 {
            let (w, b) = self.low.get_or_init(|| {
                let _guard = tch::no_grad_guard();
                (
                    self.weights.to_kind(Kind::BFloat16),
                    self.biases.to_kind(Kind::BFloat16),
                )
            });
            (w, b)
        } else {
            (&self.weights, &self.biases)
        }
    }
}

/// `alexnet_v2` with frozen weights on one device.
#[derive(Debug)]
pub struct AlexNet {
    layers: Vec<Layer>,
    spec: AlexNetSpec,
    device: Device,
    channels_last: bool,
}

impl AlexNet {
    /// Loads every layer's weights from `file` onto `device`.
    pub fn load(file: &ModelFile, device: Device) -> Result<Self, ModelError> {
        let spec = AlexNetSpec::from_model(file)?;
        let torch_err = |source| ModelError::Torch {
            path: file.path().display().to_string(),
            source,
        };
        let mut layers = Vec::with_capacity(spec.layers.len());
        for layer in &spec.layers {
            let w = file.read_f32(&layer.weights)?;
            let b = file.read_f32(&layer.biases)?;
            let shape: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
            // HWIO → OIHW
            let weights = Tensor::f_from_slice(&w.data)
                .and_then(|t| t.f_view(shape.as_slice()))
                .and_then(|t| t.f_permute([3, 2, 0, 1]))
                .and_then(|t| t.f_contiguous())
                .and_then(|t| t.f_to_device(device))
                .map_err(torch_err)?;
            let biases = Tensor::f_from_slice(&b.data)
                .and_then(|t| t.f_to_device(device))
                .map_err(torch_err)?;
            layers.push(Layer {
                same: layer.padding == Padding::Same,
                spec: layer.clone(),
                weights: weights.set_requires_grad(false),
                biases: biases.set_requires_grad(false),
                low: std::cell::OnceCell::new(),
                space_to_depth: None,
            });
        }
        let mut net = Self {
            layers,
            spec,
            device,
            channels_last: false,
        };
        net.set_space_to_depth(device.is_cuda());
        net.set_channels_last(device.is_cuda());
        Ok(net)
    }

    /// Runs the first layer as a stride-1 convolution over pixel blocks when it is a strided VALID
    /// convolution (alexnet_v2's conv1: 11x11, stride 4, 3 channels): the same sums, 2-3x faster on
    /// tensor cores. On by default on CUDA, off on the CPU.
    pub fn set_space_to_depth(&mut self, on: bool) {
        let Some(first) = self.layers.first_mut() else {
            return;
        };
        if on == first.space_to_depth.is_some() {
            return;
        }
        let (kernel, stride) = (first.spec.kernel as i64, first.spec.stride as i64);
        let _guard = tch::no_grad_guard();
        match first.space_to_depth.take() {
            Some(blocked) => first.weights = blocked.original(&first.weights.contiguous()),
            None if on && stride > 1 && !first.same => {
                let blocked = SpaceToDepth {
                    block: stride,
                    kernel,
                    taps: (kernel + stride - 1) / stride,
                };
                first.weights = blocked.weights(&first.weights.contiguous());
                first.space_to_depth = Some(blocked);
            }
            None => return,
        }
        if self.channels_last {
            first.weights = to_channels_last(&first.weights);
        }
        first.low = std::cell::OnceCell::new();
    }

    /// Stores weights and feeds activations channels-last (NHWC strides), which lets cuDNN use its
    /// faster NHWC tensor-core kernels; on by default on CUDA, off on the CPU.
    pub fn set_channels_last(&mut self, on: bool) {
        if on == self.channels_last {
            return;
        }
        for layer in &mut self.layers {
            layer.weights = if on {
                to_channels_last(&layer.weights)
            } else {
                layer.weights.contiguous()
            };
            layer.low = std::cell::OnceCell::new();
        }
        self.channels_last = on;
    }

    /// Whether activations and weights are channels-last.
    pub fn channels_last(&self) -> bool {
        self.channels_last
    }

    /// Whether the first layer runs space-to-depth ([`AlexNet::set_space_to_depth`]).
    pub fn space_to_depth(&self) -> bool {
        self.layers
            .first()
            .is_some_and(|l| l.space_to_depth.is_some())
    }

    /// The layer table read from the model file.
    pub fn spec(&self) -> &AlexNetSpec {
        &self.spec
    }

    /// The device holding the weights.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The index of `name` in the network, or an error listing the valid names.
    pub fn layer_index(&self, name: &str) -> Result<usize, ModelError> {
        self.layers
            .iter()
            .position(|l| l.spec.name == name)
            .ok_or_else(|| ModelError::UnknownLayer {
                name: name.to_string(),
                valid: self
                    .layers
                    .iter()
                    .map(|l| l.spec.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The spec of layer `index`.
    ///
    /// # Panics
    /// When `index` is out of range; indices come from [`AlexNet::layer_index`].
    pub fn layer_spec(&self, index: usize) -> &LayerSpec {
        &self.layers[index].spec
    }

    /// The first layer's input for a batch already in [−1, 1], in one copy: cast to `kind` (`Float`,
    /// or `BFloat16` to run the network in bfloat16: [`AlexNet::conv`] and [`AlexNet::add_bias`]
    /// follow their input's dtype), channels-last when the network is, and rearranged into pixel
    /// blocks when the first layer runs space-to-depth.
    pub fn network_input(&self, x: &Tensor, kind: Kind) -> Tensor {
        if let Some(blocked) = self.layers.first().and_then(|l| l.space_to_depth) {
            return blocked.input(x, kind, self.channels_last);
        }
        if self.channels_last {
            let size = x.size();
            let mut dest = Tensor::empty([size[0], size[2], size[3], size[1]], (kind, x.device()))
                .permute([0, 3, 1, 2]);
            dest.copy_(x);
            dest
        } else {
            x.to_kind(kind)
        }
    }

    /// The pre-bias convolution of layer `index` applied to its input `x` (TF padding semantics; for
    /// the first layer, `x` comes from [`AlexNet::network_input`]).
    pub fn conv(&self, index: usize, x: &Tensor) -> Tensor {
        let layer = &self.layers[index];
        let (weights, _) = layer.params(x.kind());
        if layer.space_to_depth.is_some() {
            return x.conv2d(weights, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1);
        }
        let k = layer.spec.kernel as i64;
        let s = layer.spec.stride as i64;
        let x = if layer.same {
            let (top, bottom) = same_padding(x.size()[2], k, s);
            let (left, right) = same_padding(x.size()[3], k, s);
            if top == bottom && left == right {
                return x.conv2d(weights, None::<&Tensor>, [s, s], [top, left], [1, 1], 1);
            }
            x.constant_pad_nd([left, right, top, bottom])
        } else {
            x.shallow_clone()
        };
        x.conv2d(weights, None::<&Tensor>, [s, s], [0, 0], [1, 1], 1)
    }

    /// Adds layer `index`'s bias to its pre-bias output (the input of its ReLU).
    pub fn add_bias(&self, index: usize, pre: &Tensor) -> Tensor {
        let (_, biases) = self.layers[index].params(pre.kind());
        pre + biases.view([1, -1, 1, 1])
    }

    /// Layer `index`'s activation of its biased output `z`: a ReLU where the layer table says one
    /// follows ([`LayerSpec::relu`]: every layer but `fc8`), `z` itself otherwise.
    pub fn activation(&self, index: usize, z: Tensor) -> Tensor {
        if self.layers[index].spec.relu {
            z.relu()
        } else {
            z
        }
    }

    /// What follows the ReLU of layer `index` before the next convolution: max-pool 3x3/2 VALID for
    /// conv1, conv2 and conv5, nothing otherwise.
    pub fn after_relu(&self, index: usize, x: Tensor) -> Tensor {
        if self.layers[index].spec.pool_after {
            x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)
        } else {
            x
        }
    }

    /// The pre-bias output of layer `target` for an RGB batch `x` in [0, 1] (NCHW), in fp32; layers
    /// after the target are not evaluated.
    pub fn forward_to(&self, x: &Tensor, target: usize) -> Tensor {
        self.forward_in(x, target, Kind::Float)
    }

    /// [`AlexNet::forward_to`] with the network run in `kind` (the output is cast back to fp32).
    pub fn forward_in(&self, x: &Tensor, target: usize, kind: Kind) -> Tensor {
        self.forward_centred(&((x - 0.5) * 2.0), target, kind)
    }

    /// [`AlexNet::forward_in`] for a batch already mapped to [−1, 1].
    pub fn forward_centred(&self, x: &Tensor, target: usize, kind: Kind) -> Tensor {
        let mut h = self.network_input(x, kind);
        for i in 0..target {
            let z = self.add_bias(i, &self.conv(i, &h));
            h = self.after_relu(i, self.activation(i, z));
        }
        self.conv(target, &h).to_kind(Kind::Float)
    }

    /// The smallest square input side for which layer `target` yields at least one output unit.
    pub fn min_input_side(&self, target: usize) -> usize {
        self.spec.min_input_side_for(&self.layers[target].spec.name)
    }

    /// A `[n]` int64 tensor on the model's device.
    pub fn index_tensor(&self, values: &[i64]) -> Tensor {
        Tensor::from_slice(values)
            .to_kind(Kind::Int64)
            .to_device(self.device)
    }
}

/// The same values with NHWC strides (sizes stay NCHW), the layout cuDNN calls channels-last.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// TensorFlow's SAME padding (before, after) for one spatial dimension.
pub fn same_padding(input: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (input + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - input).max(0);
    (total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::{SpaceToDepth, same_padding};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn space_to_depth_computes_the_strided_convolution() {
        // alexnet_v2's conv1 geometry: 11x11, stride 4, VALID; every residue of n mod 4, both layouts
        let blocked = SpaceToDepth {
            block: 4,
            kernel: 11,
            taps: 3,
        };
        let w = Tensor::randn([5, 3, 11, 11], (Kind::Float, Device::Cpu));
        let wb = blocked.weights(&w);
        assert_eq!(wb.size(), vec![5, 48, 3, 3]);
        assert!(blocked.original(&wb).equal(&w), "weights round trip");
        for n in [35i64, 36, 37, 38, 212, 231] {
            let x = Tensor::randn([2, 3, n, n], (Kind::Float, Device::Cpu));
            let direct = x.conv2d(&w, None::<&Tensor>, [4, 4], [0, 0], [1, 1], 1);
            for channels_last in [false, true] {
                let input = blocked.input(&x, Kind::Float, channels_last);
                let got = input.conv2d(&wb, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1);
                assert_eq!(got.size(), direct.size(), "n = {n}");
                let err = (&got - &direct).abs().max().double_value(&[]);
                assert!(err < 1e-4, "n = {n}, channels-last {channels_last}: {err}");
            }
        }
    }

    #[test]
    fn space_to_depth_input_passes_gradients() {
        let blocked = SpaceToDepth {
            block: 4,
            kernel: 11,
            taps: 3,
        };
        let x = Tensor::randn([1, 3, 39, 39], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let input = blocked.input(&x, Kind::Float, true);
        input.sum(Kind::Float).backward();
        // rows(39) = 40: every input pixel is copied once, the appended zero row is not an input
        assert_eq!(
            x.grad().sum(Kind::Float).double_value(&[]),
            39.0 * 39.0 * 3.0
        );
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(26, 5, 1), (2, 2));
        assert_eq!(same_padding(12, 3, 1), (1, 1));
        // even kernels or strides pad more after than before, as TF does
        assert_eq!(same_padding(10, 4, 1), (1, 2));
        assert_eq!(same_padding(9, 3, 2), (1, 1));
        assert_eq!(same_padding(10, 3, 2), (0, 1));
    }
}
