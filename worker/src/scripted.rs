//! A PyTorch model exported by `lucid-export` (`exporter/`): one TorchScript module per layer, run
//! through tch's `CModule` with the gradient flowing to the image.
//!
//! Each module computes only what its layer needs (torchvision's feature extractor drops the rest),
//! so layers above the target cost nothing. Parameters are frozen at load. The input is mapped as
//! the descriptor says (range, greyscale, mean/std), as for a described network. Lucid's ReLU
//! redirect cannot be applied inside a scripted graph: an export renders with the ordinary gradient
//! (a render with `relu_redirect` on is the same as with it off; `docs/networks.md`).

use std::path::Path;

use lucid_network::NetworkError;
use lucid_network::error::closest_first;
use lucid_network::torchscript::Descriptor;
use tch::{CModule, Device, IValue, Kind, Tensor};

use crate::described::{InputMap, as_map};
use crate::model::ModelError;
use crate::render::engine::{Phase, PhaseClock};
use crate::render::net::RenderNet;

/// An export's layers, loaded on one device.
#[derive(Debug)]
pub struct ScriptedNet {
    descriptor: Descriptor,
    modules: Vec<CModule>,
    input: InputMap,
    device: Device,
}

impl ScriptedNet {
    /// Loads every module of the export folder `folder`, checking each against the descriptor: a
    /// module whose output at the layer's smallest input is not the layer's width is refused, naming
    /// the layer.
    pub fn load(folder: &Path, device: Device) -> Result<Self, ModelError> {
        let (descriptor, _) = Descriptor::read(folder)?;
        let mut modules = Vec::with_capacity(descriptor.layers.len());
        for layer in &descriptor.layers {
            let path = descriptor.module_path(folder, layer);
            let torch_err = |source| ModelError::Torch {
                path: path.display().to_string(),
                source,
            };
            let mut module = CModule::load_on_device(&path, device).map_err(torch_err)?;
            module.set_eval();
            for (_, p) in module.named_parameters().map_err(torch_err)? {
                let _ = p.set_requires_grad(false);
            }
            modules.push(module);
        }
        let net = Self {
            input: InputMap::new(&descriptor.input, device),
            descriptor,
            modules,
            device,
        };
        net.check_widths(folder)?;
        Ok(net)
    }

    /// Runs each module once at its layer's smallest input and compares the width with the
    /// descriptor's.
    fn check_widths(&self, folder: &Path) -> Result<(), ModelError> {
        let _guard = tch::no_grad_guard();
        for (index, layer) in self.descriptor.layers.iter().enumerate() {
            let side = layer.min_input_side.max(1) as i64;
            let x = Tensor::zeros([1, 3, side, side], (Kind::Float, self.device));
            let out = self
                .try_forward(&x, index)
                .map_err(|source| ModelError::Torch {
                    path: self
                        .descriptor
                        .module_path(folder, layer)
                        .display()
                        .to_string(),
                    source,
                })?;
            let width = out.size().get(1).copied().unwrap_or(0);
            if width != layer.channels as i64 {
                return Err(ModelError::Network(NetworkError::InvalidNode {
                    network: self.descriptor.name.as_str().into(),
                    node: layer.name.clone(),
                    reason: format!(
                        "the descriptor says {} channels, but module {} gives {width}",
                        layer.channels, layer.module
                    ),
                }));
            }
        }
        Ok(())
    }

    /// The value of layer `index` for a batch `c` in [−1, 1], or libtorch's error.
    fn try_forward(&self, c: &Tensor, index: usize) -> Result<Tensor, tch::TchError> {
        let name = &self.descriptor.layers[index].name;
        let input = self.input.apply_centred(&c.to_kind(Kind::Float));
        let out = self.modules[index].forward_is(&[IValue::Tensor(input)])?;
        let IValue::GenericDict(entries) = out else {
            return Err(tch::TchError::Kind(format!(
                "module of layer {name} returned {out:?}, not a dict"
            )));
        };
        entries
            .into_iter()
            .find_map(|(key, value)| match (key, value) {
                (IValue::String(k), IValue::Tensor(t)) if &k == name => Some(as_map(t)),
                _ => None,
            })
            .ok_or_else(|| tch::TchError::Kind(format!("module of layer {name} did not return it")))
    }
}

impl RenderNet for ScriptedNet {
    fn layer_index(&self, name: &str) -> Result<usize, ModelError> {
        let layers = &self.descriptor.layers;
        layers
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| ModelError::UnknownLayer {
                name: name.to_owned(),
                valid: closest_first(name, layers.iter().map(|l| l.name.as_str())).join(", "),
            })
    }

    fn layer_count(&self) -> usize {
        self.descriptor.layers.len()
    }

    fn layer_name(&self, index: usize) -> &str {
        &self.descriptor.layers[index].name
    }

    fn layer_width(&self, index: usize) -> usize {
        self.descriptor.layers[index].channels
    }

    fn min_input_side(&self, index: usize) -> usize {
        self.descriptor.layers[index].min_input_side
    }

    fn device(&self) -> Device {
        self.device
    }

    /// In fp32: the module runs as exported. A libtorch failure here (an input the module cannot
    /// take) panics, as tch's own operations do; the render thread turns it into a failed batch.
    fn forward_centred(&self, x: &Tensor, index: usize, _kind: Kind) -> Tensor {
        self.try_forward(x, index)
            .unwrap_or_else(|e| panic!("TorchScript forward failed: {e}"))
    }

    /// The ordinary gradient: the ReLUs are inside the scripted graph, out of the redirect's reach.
    fn redirected_grad(
        &self,
        x: &Tensor,
        index: usize,
        _kind: Kind,
        loss_of: &dyn Fn(&Tensor) -> Tensor,
        clock: &mut dyn PhaseClock,
    ) -> Result<Tensor, tch::TchError> {
        let input = x.detach().to_kind(Kind::Float).set_requires_grad(true);
        let loss = loss_of(&self.try_forward(&input, index)?);
        clock.mark(Phase::Forward);
        Ok(Tensor::f_run_backward(&[&loss], &[&input], false, false)?.remove(0))
    }
}
