//! A PyTorch model exported by `lucid-export` (`exporter/`): one TorchScript module per layer, run
//! through tch's `CModule` with the gradient flowing to the image.
//!
//! Each module computes only what its layer needs (torchvision's feature extractor drops the rest),
//! so layers above the target cost nothing. Parameters are frozen at load. The input is mapped as
//! the descriptor says (range, greyscale, mean/std), as for a described network. Lucid's ReLU
//! redirect cannot be applied inside a scripted graph: an export renders with the ordinary gradient
//! (a render with `relu_redirect` on is the same as with it off; `docs/networks.md`).
//!
//! In bf16 the layers run as bfloat16 copies of the modules, loaded on first use. Channels-last
//! is applied to the input, which is enough for cuDNN to pick its NHWC kernels for the convolutions
//! it feeds; space-to-depth would rewrite a convolution inside the module and is not applied.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use lucid_network::NetworkError;
use lucid_network::error::closest_first;
use lucid_network::torchscript::Descriptor;
use tch::{CModule, Device, IValue, Kind, TchError, Tensor};

use crate::described::{InputMap, as_map};
use crate::layout::{Layout, to_channels_last};
use crate::model::ModelError;
use crate::render::engine::Phase;
use crate::render::net::{GradRequest, RenderNet};

/// An export's layers, loaded on one device.
#[derive(Debug)]
pub struct ScriptedNet {
    descriptor: Descriptor,
    /// Each layer's module file, for the bfloat16 copies.
    paths: Vec<PathBuf>,
    modules: Vec<CModule>,
    /// `modules` in bfloat16, loaded on first use.
    low: OnceCell<Vec<CModule>>,
    channels_last: bool,
    input: InputMap,
    device: Device,
}

impl ScriptedNet {
    /// Loads every module of the export folder `folder`, checking each against the descriptor: a
    /// module whose output at the layer's smallest input is not the layer's width is refused, naming
    /// the layer.
    pub fn load(folder: &Path, device: Device) -> Result<Self, ModelError> {
        let (descriptor, _) = Descriptor::read(folder)?;
        let paths: Vec<PathBuf> = descriptor
            .layers
            .iter()
            .map(|layer| descriptor.module_path(folder, layer))
            .collect();
        let modules = paths
            .iter()
            .map(|path| {
                load_module(path, device, Kind::Float).map_err(|source| ModelError::Torch {
                    path: path.display().to_string(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let net = Self {
            input: InputMap::new(&descriptor.input, device),
            descriptor,
            paths,
            modules,
            low: OnceCell::new(),
            channels_last: Layout::for_device(device).channels_last,
            device,
        };
        net.check_widths(folder)?;
        Ok(net)
    }

    /// The modules in `kind`: as loaded, or their bfloat16 copies.
    fn modules_in(&self, kind: Kind) -> Result<&[CModule], tch::TchError> {
        if kind != Kind::BFloat16 {
            return Ok(&self.modules);
        }
        if let Some(low) = self.low.get() {
            return Ok(low);
        }
        let low = self
            .paths
            .iter()
            .map(|path| load_module(path, self.device, kind))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.low.get_or_init(|| low))
    }

    /// Runs each module once at its layer's smallest input and compares the width with the
    /// descriptor's.
    fn check_widths(&self, folder: &Path) -> Result<(), ModelError> {
        let _guard = tch::no_grad_guard();
        for (index, layer) in self.descriptor.layers.iter().enumerate() {
            let side = layer.min_input_side.max(1) as i64;
            let x = Tensor::zeros([1, 3, side, side], (Kind::Float, self.device));
            let out =
                self.try_forward(&x, index, Kind::Float)
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

    /// The value of layer `index` for a batch `c` in [−1, 1], computed in `kind` and returned in
    /// fp32, or libtorch's error.
    fn try_forward(&self, c: &Tensor, index: usize, kind: Kind) -> Result<Tensor, tch::TchError> {
        let name = &self.descriptor.layers[index].name;
        let mut input = self
            .input
            .apply_centred(&c.to_kind(Kind::Float))
            .to_kind(kind);
        if self.channels_last {
            input = to_channels_last(&input);
        }
        let out = self.modules_in(kind)?[index].forward_is(&[IValue::Tensor(input)])?;
        let IValue::GenericDict(entries) = out else {
            return Err(tch::TchError::Kind(format!(
                "module of layer {name} returned a {}, not a dict",
                ivalue_kind(&out)
            )));
        };
        entries
            .into_iter()
            .find_map(|(key, value)| match (key, value) {
                (IValue::String(k), IValue::Tensor(t)) if &k == name => {
                    Some(as_map(t).to_kind(Kind::Float))
                }
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

    fn layout(&self) -> Layout {
        Layout {
            channels_last: self.channels_last,
            space_to_depth: false,
        }
    }

    fn set_layout(&mut self, layout: Layout) {
        self.channels_last = layout.channels_last;
    }

    /// A libtorch failure here (an input the module cannot take) panics, as tch's own operations
    /// do; the render thread turns it into a failed batch.
    fn forward_centred(&self, x: &Tensor, index: usize, kind: Kind) -> Tensor {
        self.try_forward(x, index, kind)
            .unwrap_or_else(|e| panic!("TorchScript forward failed: {e}"))
    }

    /// The ordinary gradient: the ReLUs are inside the scripted graph, out of the redirect's reach.
    fn redirected_grad(&self, x: &Tensor, request: GradRequest<'_>) -> Result<Tensor, TchError> {
        let input = x.detach().to_kind(Kind::Float).set_requires_grad(true);
        let loss = (request.loss_of)(&self.try_forward(&input, request.index, request.kind)?);
        request.clock.mark(Phase::Forward);
        Ok(Tensor::f_run_backward(&[&loss], &[&input], false, false)?.remove(0))
    }
}

/// One layer's module on `device` in `kind`, in eval mode with its parameters frozen.
fn load_module(path: &Path, device: Device, kind: Kind) -> Result<CModule, tch::TchError> {
    let mut module = CModule::load_on_device(path, device)?;
    if kind != Kind::Float {
        module.to(device, kind, false);
    }
    module.set_eval();
    for (_, p) in module.named_parameters()? {
        let _ = p.set_requires_grad(false);
    }
    Ok(module)
}

/// What an unexpected module output is, without printing its contents (a tensor can be large).
fn ivalue_kind(value: &IValue) -> &'static str {
    match value {
        IValue::None => "None",
        IValue::Tensor(_) => "tensor",
        IValue::Double(_) | IValue::Int(_) | IValue::Bool(_) => "number",
        IValue::Tuple(_) => "tuple",
        IValue::String(_) => "string",
        IValue::GenericList(_)
        | IValue::TensorList(_)
        | IValue::DoubleList(_)
        | IValue::IntList(_)
        | IValue::BoolList(_) => "list",
        IValue::GenericDict(_) => "dict",
        IValue::Object(_) => "object",
        _ => "value",
    }
}
