//! What the engine needs of a network, so that it renders the native `alexnet_v2` and any described
//! network ([`crate::described::DescribedNet`]) by one code path.

use tch::{Device, Kind, TchError, Tensor};

use super::engine::redirected_relu_grad;
use super::engine::{Phase, PhaseClock};
use crate::layout::Layout;
use crate::model::{AlexNet, ModelError};

/// What [`RenderNet::redirected_grad`] differentiates: `loss_of` layer `index`'s value computed in
/// `kind`; `clock` is told when the forward pass ends.
pub struct GradRequest<'a> {
    /// The layer, as [`RenderNet::layer_index`] gives it.
    pub index: usize,
    /// The dtype the network computes in.
    pub kind: Kind,
    /// The loss of the layer's value (fp32, `[B, C, H, W]`).
    pub loss_of: &'a dyn Fn(&Tensor) -> Tensor,
    /// Told when the forward pass ends.
    pub clock: &'a mut dyn PhaseClock,
}

/// A network the engine can optimise images for. Layers are addressed by index, as
/// [`RenderNet::layer_index`] gives them.
pub trait RenderNet: std::fmt::Debug {
    /// The index of layer `name`; an unknown name is an error listing the valid ones.
    fn layer_index(&self, name: &str) -> Result<usize, ModelError>;
    /// How many layers can be visualized; they are indexed `0..layer_count()`.
    fn layer_count(&self) -> usize;
    /// The name of layer `index`.
    fn layer_name(&self, index: usize) -> &str;
    /// The channels of layer `index`.
    fn layer_width(&self, index: usize) -> usize;
    /// The smallest square input for which layer `index` has an output.
    fn min_input_side(&self, index: usize) -> usize;
    /// The device holding the weights.
    fn device(&self) -> Device;
    /// The speed-ups in force (only those that apply to this network's shapes show as on).
    fn layout(&self) -> Layout;
    /// Applies the speed-ups of `layout` that this network's shapes admit; the sums stay the same.
    fn set_layout(&mut self, layout: Layout);
    /// Layer `index`'s value for a batch already mapped to [−1, 1] (`[B, 3, H, W]`), computed in
    /// `kind` where the network supports it, returned in fp32. Nothing above the layer is evaluated.
    fn forward_centred(&self, x: &Tensor, index: usize, kind: Kind) -> Tensor;
    /// [`RenderNet::forward_centred`] of each of `indices` (in that order) for one batch: the probe
    /// pass reads many layers of every image. A network whose layers form a chain computes what they
    /// share once; the default evaluates each layer on its own.
    fn forward_centred_many(&self, x: &Tensor, indices: &[usize], kind: Kind) -> Vec<Tensor> {
        indices
            .iter()
            .map(|&index| self.forward_centred(x, index, kind))
            .collect()
    }
    /// The gradient at `x` of `loss_of(layer index's value)`, with lucid's redirected ReLU gradient
    /// ([`redirected_relu_grad`]) at every ReLU the layer depends on; tells `clock` when the forward
    /// pass ends.
    fn redirected_grad(&self, x: &Tensor, request: GradRequest<'_>) -> Result<Tensor, TchError>;
}

/// A `[n]` int64 tensor on `device`.
pub fn index_tensor(values: &[i64], device: Device) -> Tensor {
    Tensor::from_slice(values)
        .to_kind(Kind::Int64)
        .to_device(device)
}

impl RenderNet for AlexNet {
    fn layer_index(&self, name: &str) -> Result<usize, ModelError> {
        AlexNet::layer_index(self, name)
    }

    fn layer_count(&self) -> usize {
        self.spec().layers.len()
    }

    fn layer_name(&self, index: usize) -> &str {
        &self.layer_spec(index).name
    }

    fn layer_width(&self, index: usize) -> usize {
        self.layer_spec(index).out_channels
    }

    fn min_input_side(&self, index: usize) -> usize {
        AlexNet::min_input_side(self, index)
    }

    fn device(&self) -> Device {
        AlexNet::device(self)
    }

    fn layout(&self) -> Layout {
        AlexNet::layout(self)
    }

    fn set_layout(&mut self, layout: Layout) {
        AlexNet::set_layout(self, layout)
    }

    fn forward_centred(&self, x: &Tensor, index: usize, kind: Kind) -> Tensor {
        AlexNet::forward_centred(self, x, index, kind)
    }

    fn forward_centred_many(&self, x: &Tensor, indices: &[usize], kind: Kind) -> Vec<Tensor> {
        AlexNet::forward_centred_many(self, x, indices, kind)
    }

    /// The network runs as segments between ReLUs, each starting from a detached leaf; the backward
    /// pass walks the segments from the top and applies the redirect rule at every ReLU.
    fn redirected_grad(&self, x: &Tensor, request: GradRequest<'_>) -> Result<Tensor, TchError> {
        let GradRequest {
            index: target,
            kind,
            loss_of,
            clock,
        } = request;
        let input = x.detach().set_requires_grad(true);
        let mut leaves = vec![input.shallow_clone()];
        let mut pre_relu = Vec::with_capacity(target);
        let mut h = self.network_input(&input, kind);
        for i in 0..target {
            let z = self.add_bias(i, &self.conv(i, &h));
            let r = z.detach().relu().set_requires_grad(true);
            h = self.after_relu(i, r.shallow_clone());
            leaves.push(r);
            pre_relu.push(z);
        }
        let loss = loss_of(&self.conv(target, &h).to_kind(Kind::Float));
        clock.mark(Phase::Forward);
        let mut grad =
            Tensor::f_run_backward(&[&loss], &[&leaves[target]], false, false)?.remove(0);
        for i in (0..target).rev() {
            let z = &pre_relu[i];
            let g_z = redirected_relu_grad(&z.detach(), &grad);
            let vjp = (z * g_z).sum(Kind::Float);
            grad = Tensor::f_run_backward(&[&vjp], &[&leaves[i]], false, false)?.remove(0);
        }
        Ok(grad)
    }
}
