//! The tf-slim `alexnet_v2` layer table, with every width read from a model file.
//!
//! Kernel sizes, strides, padding, ReLUs and pools are fixed by the architecture; channel
//! counts are not (test checkpoints are narrower than the ecoset ones), so
//! [`AlexNetSpec::from_model`] reads them from the weights' shapes and checks they chain.

use crate::source::ModelFile;
use crate::{DType, Error};

/// The visualizable layers, input to output.
pub const LAYER_NAMES: [&str; 8] = [
    "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8",
];

/// The variable scope all layers live under.
pub const SCOPE: &str = "alexnet_v2";

/// Input channels of `conv1` (RGB).
pub const INPUT_CHANNELS: usize = 3;

/// Max-pool window (square) after `conv1`, `conv2` and `conv5`.
pub const POOL_KERNEL: usize = 3;

/// Max-pool stride.
pub const POOL_STRIDE: usize = 2;

/// TF padding of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Output side `ceil(in / stride)`.
    Same,
    /// Output side `floor((in - kernel) / stride) + 1`.
    Valid,
}

/// One layer of `alexnet_v2`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    /// `conv1` … `fc8`.
    pub name: String,
    /// Kernel side (kernels are square).
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Convolution padding.
    pub padding: Padding,
    /// Input channels (the previous layer's output channels; 3 for `conv1`).
    pub in_channels: usize,
    /// Output channels, read from the weights.
    pub out_channels: usize,
    /// Whether a ReLU follows the bias (false only for `fc8`, whose biased output is the logits); the
    /// worker's forward pass applies it to every layer below the target.
    pub relu: bool,
    /// Whether a 3x3 stride-2 VALID max-pool follows (`conv1`, `conv2`, `conv5`).
    pub pool_after: bool,
    /// The weights variable, e.g. `alexnet_v2/conv1/weights` (HWIO).
    pub weights: String,
    /// The biases variable, e.g. `alexnet_v2/conv1/biases`.
    pub biases: String,
}

impl LayerSpec {
    /// The number of weights and biases.
    pub fn param_count(&self) -> usize {
        self.kernel * self.kernel * self.in_channels * self.out_channels + self.out_channels
    }

    /// The output side of this layer's convolution for an input side of `input`, or `None` if
    /// the output would be empty.
    pub fn conv_output_side(&self, input: usize) -> Option<usize> {
        if input == 0 {
            return None;
        }
        match self.padding {
            Padding::Same => Some(input.div_ceil(self.stride)),
            Padding::Valid => input
                .checked_sub(self.kernel)
                .map(|rest| rest / self.stride + 1),
        }
    }
}

/// The output side of the 3x3 stride-2 VALID max-pool for an input side of `input`, or `None`
/// if the output would be empty.
pub fn pool_output_side(input: usize) -> Option<usize> {
    input
        .checked_sub(POOL_KERNEL)
        .map(|rest| rest / POOL_STRIDE + 1)
}

/// The fixed part of each layer: (name, kernel, stride, padding, relu, pool_after).
const ARCH: [(&str, usize, usize, Padding, bool, bool); 8] = [
    ("conv1", 11, 4, Padding::Valid, true, true),
    ("conv2", 5, 1, Padding::Same, true, true),
    ("conv3", 3, 1, Padding::Same, true, false),
    ("conv4", 3, 1, Padding::Same, true, false),
    ("conv5", 3, 1, Padding::Same, true, true),
    ("fc6", 5, 1, Padding::Valid, true, false),
    ("fc7", 1, 1, Padding::Same, true, false),
    ("fc8", 1, 1, Padding::Same, false, false),
];

/// The whole network, input to output.
#[derive(Debug, Clone, PartialEq)]
pub struct AlexNetSpec {
    /// The eight layers in [`LAYER_NAMES`] order.
    pub layers: Vec<LayerSpec>,
}

impl AlexNetSpec {
    /// Reads every layer's shape from `file`.
    ///
    /// Weights must be float32, 4-D HWIO with `alexnet_v2`'s kernel sizes (conv1 11, conv2 5,
    /// conv3–5 3, fc6 5, fc7 and fc8 1) and in-channels chaining from 3; biases must be
    /// `[out]`. Errors name the file, the tensor and the expected and actual shapes.
    pub fn from_model(file: &ModelFile) -> Result<Self, Error> {
        let mut layers = Vec::with_capacity(ARCH.len());
        let mut in_channels = INPUT_CHANNELS;
        for (name, kernel, stride, padding, relu, pool_after) in ARCH {
            let weights = format!("{SCOPE}/{name}/weights");
            let biases = format!("{SCOPE}/{name}/biases");
            let w = file.info(&weights)?;
            let b = file.info(&biases)?;
            for t in [&w, &b] {
                if t.dtype != DType::F32 {
                    return Err(Error::UnsupportedDtype {
                        path: file.path().to_path_buf(),
                        tensor: t.name.clone(),
                        dtype: t.dtype,
                    });
                }
            }
            let out_channels = match w.shape.as_slice() {
                &[h, wd, i, o] if h == kernel && wd == kernel && i == in_channels && o > 0 => o,
                _ => {
                    return Err(Error::ShapeMismatch {
                        path: file.path().to_path_buf(),
                        tensor: weights,
                        expected: format!("[{kernel}, {kernel}, {in_channels}, *] (HWIO)"),
                        actual: w.shape,
                    });
                }
            };
            if b.shape != [out_channels] {
                return Err(Error::ShapeMismatch {
                    path: file.path().to_path_buf(),
                    tensor: biases,
                    expected: format!("[{out_channels}]"),
                    actual: b.shape,
                });
            }
            layers.push(LayerSpec {
                name: name.to_owned(),
                kernel,
                stride,
                padding,
                in_channels,
                out_channels,
                relu,
                pool_after,
                weights,
                biases,
            });
            in_channels = out_channels;
        }
        Ok(AlexNetSpec { layers })
    }

    /// The layer called `name` ([`Error::UnknownLayer`] lists the valid names).
    pub fn layer(&self, name: &str) -> Result<&LayerSpec, Error> {
        self.layers
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::UnknownLayer {
                name: name.to_owned(),
            })
    }

    /// The sum of all layers' output channels.
    pub fn total_channels(&self) -> usize {
        self.layers.iter().map(|l| l.out_channels).sum()
    }

    /// The number of weights and biases in the network.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(LayerSpec::param_count).sum()
    }

    /// The spatial side of `layer`'s output (its convolution, before any pool) for a square
    /// input of `input` px, with TF semantics: VALID = `floor((in - k) / s) + 1`,
    /// SAME = `ceil(in / s)`, pools 3x3/2 VALID. E.g. 224 → conv1 54, conv5 12, fc6 1;
    /// 240 → fc6 2. [`Error::InputTooSmall`] if some layer up to `layer` would have no output.
    pub fn output_side(&self, layer: &str, input: usize) -> Result<usize, Error> {
        self.layer(layer)?;
        let too_small = |name: &str| Error::InputTooSmall {
            layer: name.to_owned(),
            input,
        };
        let mut side = input;
        for l in &self.layers {
            side = l.conv_output_side(side).ok_or_else(|| too_small(&l.name))?;
            if l.name == layer {
                return Ok(side);
            }
            if l.pool_after {
                side = pool_output_side(side).ok_or_else(|| too_small(&l.name))?;
            }
        }
        Err(Error::UnknownLayer {
            name: layer.to_owned(),
        })
    }

    /// The smallest square input for which `layer` has a non-empty output (`usize::MAX` for an
    /// unknown layer).
    pub fn min_input_side_for(&self, layer: &str) -> usize {
        (1..4096)
            .find(|&n| self.output_side(layer, n).is_ok())
            .unwrap_or(usize::MAX)
    }

    /// The smallest square input for which every layer has a non-empty output.
    pub fn min_input_side(&self) -> usize {
        let last = self.layers.last().map(|l| l.name.as_str()).unwrap_or("fc8");
        self.min_input_side_for(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(widths: [usize; 8]) -> AlexNetSpec {
        let mut in_channels = INPUT_CHANNELS;
        let layers = ARCH
            .iter()
            .zip(widths)
            .map(
                |(&(name, kernel, stride, padding, relu, pool_after), out)| {
                    let l = LayerSpec {
                        name: name.to_owned(),
                        kernel,
                        stride,
                        padding,
                        in_channels,
                        out_channels: out,
                        relu,
                        pool_after,
                        weights: format!("{SCOPE}/{name}/weights"),
                        biases: format!("{SCOPE}/{name}/biases"),
                    };
                    in_channels = out;
                    l
                },
            )
            .collect();
        AlexNetSpec { layers }
    }

    #[test]
    fn ecoset_sizes_match_the_reference_table() {
        let s = spec([64, 192, 384, 384, 256, 4096, 4096, 565]);
        assert_eq!(s.total_channels(), 10_037);
        let sides: Vec<usize> = LAYER_NAMES
            .iter()
            .map(|l| s.output_side(l, 224).expect("224 fits"))
            .collect();
        assert_eq!(sides, [54, 26, 12, 12, 12, 1, 1, 1]);
        assert_eq!(s.output_side("fc6", 240).expect("240 fits"), 2);
        // 48.5 M parameters.
        assert_eq!(s.param_count() / 100_000, 485);
    }

    #[test]
    fn too_small_inputs_are_errors() {
        let s = spec([16, 24, 32, 32, 24, 64, 48, 10]);
        let min = s.min_input_side();
        assert!(s.output_side("fc8", min).is_ok());
        let err = s.output_side("fc8", min - 1).expect_err("too small");
        assert!(matches!(err, Error::InputTooSmall { .. }), "{err}");
        assert!(matches!(
            s.output_side("conv1", 10),
            Err(Error::InputTooSmall { .. })
        ));
        assert!(matches!(
            s.output_side("conv1", 0),
            Err(Error::InputTooSmall { .. })
        ));
        assert_eq!(s.output_side("conv1", 11).expect("one pixel"), 1);
        let err = s.output_side("pool9", 224).expect_err("unknown layer");
        assert!(err.to_string().contains("conv1, conv2"), "{err}");
    }
}
