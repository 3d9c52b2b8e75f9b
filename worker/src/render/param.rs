//! Image parameterisations: lucid's FFT spectrum with decorrelated colour, and plain pixels.
//!
//! Both end in lucid's `to_valid_rgb`: a linear map through the normalised colour-correlation matrix
//! followed by a sigmoid, giving RGB in (0, 1). Each image of a batch is one channel's own variable.

pub use lucid_proto::spec::Param as ParamKind;
use tch::{Device, Kind, Tensor};

/// Lucid's colour correlation matrix (square root of the ImageNet colour covariance, from its SVD).
pub const COLOR_CORRELATION_SVD_SQRT: [[f32; 3]; 3] =
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// Standard deviation of the initial spectrum (and of the initial pixels) in lucid.
pub const INIT_SD: f64 = 0.01;

/// The colour matrix divided by its largest column L2 norm, as lucid does.
pub fn color_matrix() -> [[f32; 3]; 3] {
    let c = COLOR_CORRELATION_SVD_SQRT;
    let max_norm = (0..3)
        .map(|j| (0..3).map(|i| c[i][j] * c[i][j]).sum::<f32>().sqrt())
        .fold(0.0f32, f32::max);
    c.map(|row| row.map(|v| v / max_norm))
}

/// Number of stored frequency columns for width `w`: `w/2 + 1`, one more when `w` is odd (lucid keeps an
/// extra column and crops the inverse transform).
pub fn spectrum_width(w: usize) -> usize {
    if w % 2 == 1 { w / 2 + 2 } else { w / 2 + 1 }
}

/// numpy's `fftfreq(n)` value at index `i`.
fn fftfreq(n: usize, i: usize) -> f64 {
    let n_i = n as i64;
    let i = i as i64;
    let k = if i < (n_i + 1) / 2 { i } else { i - n_i };
    k as f64 / n as f64
}

/// Lucid's `rfft2d_freqs(h, w)`: the radial frequency of each stored spectrum entry, row-major
/// `[h, spectrum_width(w)]`.
pub fn rfft2d_freqs(h: usize, w: usize) -> Vec<f64> {
    let wf = spectrum_width(w);
    let mut out = Vec::with_capacity(h * wf);
    for y in 0..h {
        let fy = fftfreq(h, y);
        for x in 0..wf {
            let fx = fftfreq(w, x);
            out.push((fx * fx + fy * fy).sqrt());
        }
    }
    out
}

/// The spectrum scale `1 / max(freq, 1/max(w, h))^decay_power · sqrt(w·h)`, row-major `[h, wf]`.
pub fn spectrum_scale(h: usize, w: usize, decay_power: f64) -> Vec<f32> {
    let floor = 1.0 / (w.max(h) as f64);
    let norm = ((w * h) as f64).sqrt();
    rfft2d_freqs(h, w)
        .into_iter()
        .map(|f| (norm / f.max(floor).powf(decay_power)) as f32)
        .collect()
}

/// The shape of one image's variable for `kind` at `size` px (without the batch dimension).
///
/// The FFT variable is stored `[3, h, wf, 2]` (real and imaginary parts last), so that it is read as a
/// complex tensor without a copy; lucid's own order is `[2, 3, h, wf]`, and initial values are drawn
/// in that order and then rearranged ([`from_lucid_order`]). Adam is elementwise, so the storage order
/// does not change the optimisation.
pub fn variable_shape(kind: ParamKind, size: usize) -> Vec<i64> {
    match kind {
        ParamKind::Fft => vec![3, size as i64, spectrum_width(size) as i64, 2],
        ParamKind::Pixel => vec![3, size as i64, size as i64],
    }
}

/// Rearranges one image's values from lucid's order (`[2, 3, h, wf]` for the FFT variable) into the
/// storage order of [`variable_shape`]; pixel variables are already in order.
pub fn from_lucid_order(kind: ParamKind, size: usize, values: &[f32]) -> Vec<f32> {
    match kind {
        ParamKind::Pixel => values.to_vec(),
        ParamKind::Fft => {
            let plane = size * spectrum_width(size);
            let half = 3 * plane;
            let mut out = vec![0f32; values.len()];
            for (i, pair) in out.chunks_exact_mut(2).enumerate() {
                pair[0] = values.get(i).copied().unwrap_or_default();
                pair[1] = values.get(half + i).copied().unwrap_or_default();
            }
            out
        }
    }
}

/// A batch of images parameterised by one variable per image.
///
/// The optimisation works on [`ImageParam::centred`]: `tanh(t/2) = 2·sigmoid(t) − 1`, where `t` is
/// lucid's pre-sigmoid image, i.e. the image mapped to [−1, 1] as the network's preprocessing maps it.
/// This is lucid's `sigmoid` followed by the network's `(x − 0.5)·2`, computed in one pass.
#[derive(Debug)]
pub struct ImageParam {
    kind: ParamKind,
    size: i64,
    decorrelate: bool,
    /// `[1, 1, h, wf]` spectrum scale divided by `8·h·w'` (FFT only): lucid's `/4` after the inverse
    /// FFT, the `/2` of `tanh(t/2)` and the inverse transform's own `1/(h·w')` (`w'` the even width
    /// it runs at), so that the transform runs unnormalised and no scaling pass follows it, forward
    /// or backward.
    scale: Option<Tensor>,
    /// `[3, 3, 1, 1]` colour matrix as a 1x1 convolution.
    color: Tensor,
    /// Mix colours with cuDNN's 1x1 convolution (CUDA) or a broadcast multiply and sum (CPU, where
    /// oneDNN's 3-channel 1x1 convolution is over ten times slower).
    color_by_conv: bool,
}

impl ImageParam {
    /// Prepares the constants of a parameterisation of `size` x `size` images on `device`.
    pub fn new(kind: ParamKind, size: usize, decorrelate: bool, device: Device) -> Self {
        let scale = (kind == ParamKind::Fft).then(|| {
            // the transform's own 1/(h·w) is over the even width it runs at (one column more than
            // an odd side, cropped after)
            let full_w = 2 * (spectrum_width(size) - 1);
            let folded = 8.0 * (size * full_w) as f64;
            let scale: Vec<f32> = spectrum_scale(size, size, 1.0)
                .into_iter()
                .map(|s| (f64::from(s) / folded) as f32)
                .collect();
            Tensor::from_slice(&scale)
                .view([1, 1, size as i64, spectrum_width(size) as i64])
                .to_device(device)
        });
        let c = color_matrix();
        let flat: Vec<f32> = c.iter().flatten().copied().collect();
        let color = Tensor::from_slice(&flat)
            .view([3, 3, 1, 1])
            .to_device(device);
        Self {
            kind,
            size: size as i64,
            decorrelate,
            scale,
            color,
            color_by_conv: device.is_cuda(),
        }
    }

    /// `[B, 3, H, W]` through the normalised colour matrix.
    fn mix_colours(&self, x: &Tensor) -> Tensor {
        if self.color_by_conv {
            x.conv2d(&self.color, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)
        } else {
            // out[b, c] = Σ_k M[c, k]·x[b, k]
            (x.unsqueeze(1) * self.color.view([1, 3, 3, 1, 1])).sum_dim_intlist(
                [2].as_slice(),
                false,
                x.kind(),
            )
        }
    }

    /// The images mapped to [−1, 1], `[B, 3, size, size]`: `2·sigmoid(t) − 1 = tanh(t/2)` of lucid's
    /// pre-sigmoid image `t`, for a variable `v` of shape `[B, ..variable_shape]`.
    pub fn centred(&self, v: &Tensor) -> Tensor {
        let half_t = match (&self.kind, &self.scale) {
            (ParamKind::Fft, Some(scale)) => {
                let wf = v.size()[3];
                let spectrum = v.view_as_complex() * scale;
                // TF's irfft2d normalises by 1/(h·w), which the scale holds: "forward" leaves the
                // inverse unscaled. The stored width may be one column longer than needed for odd
                // sizes, so transform to the even width and crop.
                let full_w = 2 * (wf - 1);
                let img =
                    spectrum.fft_irfft2(Some([self.size, full_w].as_slice()), [-2, -1], "forward");
                if full_w == self.size {
                    img
                } else {
                    img.narrow(3, 0, self.size)
                }
            }
            _ => v * 0.5,
        };
        let half_t = if self.decorrelate {
            self.mix_colours(&half_t)
        } else {
            half_t
        };
        half_t.tanh()
    }

    /// The RGB images in (0, 1), `[B, 3, size, size]`: lucid's `sigmoid(t)`.
    pub fn images(&self, v: &Tensor) -> Tensor {
        self.centred(v) * 0.5 + 0.5
    }
}

/// Converts `[B, 3, H, W]` images in [0, 1] to 8-bit interleaved RGB rows, one `Vec` per image.
pub fn to_rgb8(images: &Tensor) -> Result<Vec<Vec<u8>>, tch::TchError> {
    let b = images.size()[0];
    let bytes = images
        .f_clamp(0.0, 1.0)?
        .f_mul_scalar(255.0)?
        .f_round()?
        .f_to_kind(Kind::Uint8)?
        .f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_to_device(Device::Cpu)?;
    let per_image = bytes.numel() / b.max(1) as usize;
    let mut all = vec![0u8; bytes.numel()];
    bytes.f_copy_data_u8(&mut all, bytes.numel())?;
    Ok(all.chunks(per_image.max(1)).map(<[u8]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_matrix_is_normalised_by_largest_column_norm() {
        let c = COLOR_CORRELATION_SVD_SQRT;
        let col0 = (c[0][0] * c[0][0] + c[1][0] * c[1][0] + c[2][0] * c[2][0]).sqrt();
        assert!((col0 - 0.461_952_4).abs() < 1e-6, "column norm {col0}");
        let n = color_matrix();
        assert!((n[0][0] - 0.26 / 0.461_952_4).abs() < 1e-6);
        assert!((n[1][2] + 0.05 / 0.461_952_4).abs() < 1e-6);
    }

    #[test]
    fn frequencies_match_numpy() {
        // fftfreq(4) = [0, .25, -.5, -.25]; rfft columns for w=4: [0, .25, -.5] → 3 columns
        let f = rfft2d_freqs(4, 4);
        assert_eq!(f.len(), 12);
        assert!((f[1] - 0.25).abs() < 1e-12);
        assert!((f[2] - 0.5).abs() < 1e-12);
        // row 1 (fy=.25), column 1 (fx=.25)
        assert!((f[3 + 1] - (0.125f64).sqrt()).abs() < 1e-12);
        // odd width keeps one extra column
        assert_eq!(spectrum_width(5), 4);
        assert_eq!(spectrum_width(224), 113);
    }

    #[test]
    fn spectrum_scale_uses_frequency_floor_and_pixel_count() {
        let s = spectrum_scale(224, 224, 1.0);
        // DC entry: 1 / (1/224) * sqrt(224*224) = 224 * 224
        assert!((s[0] - 224.0 * 224.0).abs() < 1e-2);
        // fx = 1/224 at column 1: 1/(1/224) * 224
        assert!((s[1] - 224.0 * 224.0).abs() < 1e-2);
        // Nyquist column: 1/0.5 * 224
        assert!((s[112] - 448.0).abs() < 1e-3);
    }

    #[test]
    fn images_are_in_unit_range_with_expected_spread() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(1);
        let p = ImageParam::new(ParamKind::Fft, 64, true, Device::Cpu);
        let v = Tensor::randn([4, 3, 64, 33, 2], (Kind::Float, Device::Cpu)) * INIT_SD;
        let img = p.images(&v);
        assert_eq!(img.size(), vec![4, 3, 64, 64]);
        let min = img.min().double_value(&[]);
        let max = img.max().double_value(&[]);
        assert!(min > 0.0 && max < 1.0, "range {min}..{max}");
        // lucid's init gives gently varying images around grey
        let mean = img.mean(Kind::Float).double_value(&[]);
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        let sd = img.std(true).double_value(&[]);
        // ≈ 0.01 · sqrt(2π ln 64) / 4 before colour and sigmoid (slope 1/4): nearly grey, as in lucid
        assert!(sd > 0.001 && sd < 0.01, "sd {sd}");
    }

    #[test]
    fn a_dc_coefficient_gives_lucids_constant_image() {
        // A single DC coefficient c gives a constant image c·scale_dc/(h·w)/4 before colour.
        let _guard = tch::no_grad_guard();
        let size = 8usize;
        let p = ImageParam::new(ParamKind::Fft, size, false, Device::Cpu);
        let v = Tensor::zeros([1, 3, 8, 5, 2], (Kind::Float, Device::Cpu));
        let _ = v.get(0).get(0).get(0).get(0).get(0).fill_(0.5);
        let img = p.images(&v);
        // pre-sigmoid value = 0.5 * 64 / 64 / 4 = 0.125
        let expected = 1.0 / (1.0 + (-0.125f64).exp());
        let got = img.double_value(&[0, 0, 3, 5]);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        // the other colour channels stay at sigmoid(0)
        assert!((img.double_value(&[0, 1, 2, 2]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn centred_images_are_lucids_sigmoid_mapped_to_plus_minus_one() {
        // lucid: spectrum = complex(re, im) · scale, irfft2 / 4, colour, sigmoid
        let _guard = tch::no_grad_guard();
        let size = 24usize;
        let p = ImageParam::new(ParamKind::Fft, size, true, Device::Cpu);
        let v = Tensor::randn([2, 3, 24, 13, 2], (Kind::Float, Device::Cpu)) * 0.05;
        let scale = Tensor::from_slice(&spectrum_scale(size, size, 1.0)).view([1, 1, 24, 13]);
        let spectrum = Tensor::complex(&(v.select(4, 0) * &scale), &(v.select(4, 1) * &scale));
        let t = spectrum.fft_irfft2(Some([24i64, 24].as_slice()), [-2, -1], "backward") / 4.0;
        let c: Vec<f32> = color_matrix().iter().flatten().copied().collect();
        let color = Tensor::from_slice(&c).view([3, 3, 1, 1]);
        let lucid = t
            .conv2d(&color, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)
            .sigmoid();
        let err = (p.images(&v) - &lucid).abs().max().double_value(&[]);
        assert!(err < 1e-6, "images differ from lucid's by {err}");
        let err = (p.centred(&v) - (lucid * 2.0 - 1.0))
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 2e-6, "centred images differ by {err}");
    }

    /// Lucid's direct form: `complex(re, im)·scale`, `irfft2d` normalised by `1/(h·w)`, `/4`,
    /// colour, sigmoid; for any side (an odd one crops the transform of the next even width).
    fn lucid_images(v: &Tensor, size: usize) -> Tensor {
        let (h, wf) = (size as i64, spectrum_width(size) as i64);
        let scale = Tensor::from_slice(&spectrum_scale(size, size, 1.0)).view([1, 1, h, wf]);
        let spectrum = Tensor::complex(&(v.select(4, 0) * &scale), &(v.select(4, 1) * &scale));
        let full_w = 2 * (wf - 1);
        let t = spectrum.fft_irfft2(Some([h, full_w].as_slice()), [-2, -1], "backward") / 4.0;
        let t = t.narrow(3, 0, h);
        let c: Vec<f32> = color_matrix().iter().flatten().copied().collect();
        let color = Tensor::from_slice(&c).view([3, 3, 1, 1]);
        t.conv2d(&color, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)
            .sigmoid()
    }

    #[test]
    fn folded_normalisation_gives_lucids_images_and_gradients() {
        for size in [24usize, 23] {
            tch::manual_seed(size as i64);
            let shape = [2, 3, size as i64, spectrum_width(size) as i64, 2];
            let v =
                (Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 0.05).set_requires_grad(true);
            let weights =
                Tensor::randn([2, 3, size as i64, size as i64], (Kind::Float, Device::Cpu));
            let p = ImageParam::new(ParamKind::Fft, size, true, Device::Cpu);
            let ours = p.images(&v);
            let direct = lucid_images(&v, size);
            let err = (&ours - &direct).abs().max().double_value(&[]);
            assert!(err < 1e-6, "{size} px: images differ from lucid's by {err}");
            let grad_of = |images: &Tensor| {
                let g = Tensor::run_backward(
                    &[(images * &weights).sum(Kind::Float)],
                    &[&v],
                    false,
                    false,
                );
                g.into_iter().next().expect("one gradient")
            };
            let (g_ours, g_direct) = (grad_of(&ours), grad_of(&direct));
            let scale = g_direct.abs().max().double_value(&[]);
            let err = (&g_ours - &g_direct).abs().max().double_value(&[]);
            assert!(
                scale > 0.0 && err < 1e-5 * scale,
                "{size} px: gradients differ by {err} (of {scale})"
            );
        }
    }

    #[test]
    fn lucid_order_is_rearranged_to_real_imaginary_pairs() {
        // size 2: wf = 2, lucid [2, 3, 2, 2] → storage [3, 2, 2, 2]
        let lucid: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let stored = from_lucid_order(ParamKind::Fft, 2, &lucid);
        // (channel 1, y 0, x 1): real at lucid [0, 1, 0, 1] = 5, imaginary at [1, 1, 0, 1] = 17
        assert_eq!(stored[(4 + 1) * 2..(4 + 1) * 2 + 2], [5.0, 17.0]);
        assert_eq!(stored.len(), 24);
        assert_eq!(from_lucid_order(ParamKind::Pixel, 2, &lucid), lucid);
    }

    #[test]
    fn rgb8_conversion_rounds_and_interleaves() {
        let t = Tensor::from_slice(&[0.0f32, 1.0, 0.5, 0.2, -1.0, 2.0]).view([1, 3, 1, 2]);
        let out = to_rgb8(&t).expect("conversion");
        // pixel 0: r=0, g=.5, b=-1 → 0, 128, 0; pixel 1: r=1, g=.2, b=2 → 255, 51, 255
        assert_eq!(out, vec![vec![0, 128, 0, 255, 51, 255]]);
    }
}
