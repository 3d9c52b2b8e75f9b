//! Memory layouts that make a network faster on tensor cores without changing its sums:
//! channels-last (NHWC strides) and space-to-depth for strided convolutions over few channels.
//! Each has a test against the direct form here; the networks that use them
//! ([`crate::model::AlexNet`], [`crate::described::DescribedNet`], [`crate::scripted::ScriptedNet`])
//! are tested against their own direct forms.

use tch::{Device, Kind, Tensor};

/// Up to this many input channels a strided convolution leaves tensor cores mostly idle (an RGB or
/// greyscale stem); above it, blocking pixels into channels gains nothing.
pub(crate) const FEW_CHANNELS: i64 = 4;

/// Which speed-ups a network applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Weights and activations with NHWC strides, which lets cuDNN use its NHWC tensor-core kernels.
    pub channels_last: bool,
    /// Strided convolutions over few channels run as stride-1 convolutions over pixel blocks.
    pub space_to_depth: bool,
}

impl Layout {
    /// Both on CUDA, where they pay (docs/PERFORMANCE.md), neither on the CPU.
    pub fn for_device(device: Device) -> Self {
        Self {
            channels_last: device.is_cuda(),
            space_to_depth: device.is_cuda(),
        }
    }
}

/// A strided VALID convolution rewritten as a stride-1 convolution over
/// `block` x `block` pixel blocks: the input becomes `[B, C·block², R/block, R/block]` and the kernel,
/// zero-padded to `taps·block`, `[O, C·block², taps, taps]`. The same sums in a shape that tensor
/// cores run well (alexnet_v2's conv1, 3 input channels at stride 4, does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpaceToDepth {
    /// The original stride, the side of a block.
    block: i64,
    /// The original kernel side.
    kernel: i64,
    /// Kernel side in blocks: `⌈kernel / block⌉`.
    taps: i64,
}

impl SpaceToDepth {
    /// The blocked form of a `kernel` x `kernel` convolution at `stride`, where it pays: a stride
    /// of at least 2 over at most [`FEW_CHANNELS`] input channels, the kernel no smaller than the
    /// stride (a shape, not a layer name, decides).
    pub(crate) fn paying(kernel: i64, stride: i64, in_channels: i64) -> Option<Self> {
        (stride >= 2 && kernel >= stride && in_channels <= FEW_CHANNELS).then_some(Self {
            block: stride,
            kernel,
            taps: (kernel + stride - 1) / stride,
        })
    }

    /// Input rows the blocked convolution reads for `n` input rows: `block·⌊(n − kernel)/block⌋ +
    /// taps·block`, at most `block − 1` more than `n` (the extra rows meet only zero weights).
    pub(crate) fn rows(&self, n: i64) -> i64 {
        self.block * ((n - self.kernel) / self.block) + self.taps * self.block
    }

    /// `[O, C, k, k]` → `[O, C·block², taps, taps]`, channel order (c, dy, dx).
    pub(crate) fn weights(&self, w: &Tensor) -> Tensor {
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
    pub(crate) fn original(&self, w: &Tensor) -> Tensor {
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
    pub(crate) fn input(&self, x: &Tensor, kind: Kind, channels_last: bool) -> Tensor {
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

/// The same values with NHWC strides (sizes stay NCHW), the layout cuDNN calls channels-last.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// TensorFlow's SAME padding (before, after) for one spatial dimension: the extra one, if the
/// total is odd, after.
pub fn same_padding(input: i64, kernel: i64, stride: i64, dilation: i64) -> (i64, i64) {
    let out = (input + stride - 1) / stride;
    let reach = (kernel - 1) * dilation + 1;
    let total = ((out - 1) * stride + reach - input).max(0);
    (total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::{SpaceToDepth, same_padding};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn space_to_depth_computes_the_strided_convolution() {
        // alexnet_v2's conv1 (11x11, stride 4) and resnet18's (7x7, stride 2), VALID; every residue
        // of n mod the stride, both layouts
        for (kernel, stride, taps) in [(11i64, 4i64, 3i64), (7, 2, 4)] {
            let blocked = SpaceToDepth::paying(kernel, stride, 3).expect("pays");
            assert_eq!(blocked.taps, taps);
            let w = Tensor::randn([5, 3, kernel, kernel], (Kind::Float, Device::Cpu));
            let wb = blocked.weights(&w);
            assert_eq!(wb.size(), vec![5, 3 * stride * stride, taps, taps]);
            assert!(blocked.original(&wb).equal(&w), "weights round trip");
            for n in [35i64, 36, 37, 38, 212, 231] {
                let x = Tensor::randn([2, 3, n, n], (Kind::Float, Device::Cpu));
                let direct = x.conv2d(&w, None::<&Tensor>, [stride, stride], [0, 0], [1, 1], 1);
                for channels_last in [false, true] {
                    let input = blocked.input(&x, Kind::Float, channels_last);
                    let got = input.conv2d(&wb, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1);
                    assert_eq!(got.size(), direct.size(), "k {kernel}, n = {n}");
                    let err = (&got - &direct).abs().max().double_value(&[]);
                    assert!(
                        err < 1e-4,
                        "k {kernel}, n = {n}, channels-last {channels_last}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn space_to_depth_is_chosen_by_shape() {
        assert!(SpaceToDepth::paying(11, 4, 3).is_some(), "alexnet_v2 conv1");
        assert!(SpaceToDepth::paying(7, 2, 1).is_some(), "a greyscale stem");
        assert!(
            SpaceToDepth::paying(3, 1, 3).is_none(),
            "stride 1 has nothing to block"
        );
        assert!(
            SpaceToDepth::paying(3, 2, 64).is_none(),
            "many channels already fill the cores"
        );
        assert!(
            SpaceToDepth::paying(1, 2, 3).is_none(),
            "a kernel smaller than its stride"
        );
    }

    #[test]
    fn space_to_depth_input_passes_gradients() {
        let blocked = SpaceToDepth::paying(11, 4, 3).expect("pays");
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
        assert_eq!(same_padding(26, 5, 1, 1), (2, 2));
        assert_eq!(same_padding(12, 3, 1, 1), (1, 1));
        // even kernels or strides pad more after than before, as TF does
        assert_eq!(same_padding(10, 4, 1, 1), (1, 2));
        assert_eq!(same_padding(9, 3, 2, 1), (1, 1));
        assert_eq!(same_padding(10, 3, 2, 1), (0, 1));
        // a dilated 3x3 reaches as far as a 5x5
        assert_eq!(same_padding(12, 3, 1, 2), same_padding(12, 5, 1, 1));
    }
}
