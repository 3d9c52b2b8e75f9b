//! The `alexnet_v2` network in libtorch, with tf-slim semantics and widths read from the model file.
//!
//! Tensors are NCHW. Inputs are RGB in [0, 1]; the network maps them to [-1, 1] itself, as the ecoset
//! graph does. A forward pass stops at the target layer and returns its **pre-bias** convolution output
//! (TensorFlow's `alexnet_v2/<layer>/Conv2D`), which is what lucid visualizes.

use lucid_checkpoint::ModelFile;
use lucid_checkpoint::alexnet::{AlexNetSpec, LayerSpec, Padding};
use tch::{Device, Kind, Tensor};

use crate::layout::{Layout, SpaceToDepth, same_padding, to_channels_last};

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
        net.set_layout(Layout::for_device(device));
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
            None if on && !first.same => {
                let in_channels = first.weights.size()[1];
                let Some(blocked) = SpaceToDepth::paying(kernel, stride, in_channels) else {
                    return;
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

    /// The speed-ups in force.
    pub fn layout(&self) -> Layout {
        Layout {
            channels_last: self.channels_last(),
            space_to_depth: self.space_to_depth(),
        }
    }

    /// Applies `layout` (channels-last first: the blocked kernel is laid out after it).
    pub fn set_layout(&mut self, layout: Layout) {
        self.set_channels_last(layout.channels_last);
        self.set_space_to_depth(layout.space_to_depth);
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
            let (top, bottom) = same_padding(x.size()[2], k, s, 1);
            let (left, right) = same_padding(x.size()[3], k, s, 1);
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

    /// [`AlexNet::forward_centred`] of every layer in `targets` (in that order) from one pass up the
    /// chain: each layer's value is the same computation, stopped at a different height.
    pub fn forward_centred_many(&self, x: &Tensor, targets: &[usize], kind: Kind) -> Vec<Tensor> {
        let top = targets.iter().copied().max().unwrap_or(0);
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(top + 1);
        let mut h = self.network_input(x, kind);
        for i in 0..=top {
            let z = self.conv(i, &h);
            values.push(targets.contains(&i).then(|| z.to_kind(Kind::Float)));
            if i < top {
                h = self.after_relu(i, self.activation(i, self.add_bias(i, &z)));
            }
        }
        targets
            .iter()
            .map(|&i| {
                values[i]
                    .as_ref()
                    .map_or_else(Tensor::new, Tensor::shallow_clone)
            })
            .collect()
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
