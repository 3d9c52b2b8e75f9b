//! Lucid's transformation robustness (`standard_transforms`), with one random draw per step shared by
//! the whole batch.
//!
//! 1. pad 12 px with constant 0.5
//! 2. jitter 8: crop to (H−8, W−8) at integer offsets 0..=8
//! 3. random scale from {1 + (i−5)/50 : i = 0..10}, bilinear resize with TF1's `resize_bilinear`
//!    semantics (no half-pixel centres), done as two interpolation matrices
//! 4. random rotation by {−10..10} ∪ five extra 0 degrees about the centre, bilinear, fill 0
//! 5. jitter 4
//!
//! Lucid's TF1 `tf.contrib.image.rotate` samples nearest-neighbour by default; we sample bilinearly
//! (as lucent does with kornia), which passes gradient to all four neighbours instead of one.

pub use lucid_proto::spec::Transforms as TransformSet;
use rand::Rng;
use tch::{Device, Tensor};

pub use lucid_proto::geometry::{JITTER_1, JITTER_2, PAD, scale_input_side, scaled_side, scales};

/// Rotation angles in degrees: −10..=10 plus five extra zeros (26 entries).
pub const ANGLES: [i64; 26] = [
    -10, -9, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0, 0, 0, 0,
];

/// One update's composed transform (jitter 1, scale, rotation and jitter 2) as affine maps for
/// `grid_sample` (normalised coordinates, align_corners), so that one bilinear sample replaces the
/// resize, the rotation and the crops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedAffine {
    /// `[2, 3]` row-major, from the output to the unpadded image.
    pub image: [f32; 6],
    /// `[2, 3]` row-major, from the output to the image padded by [`PAD`] on each side.
    pub padded: [f32; 6],
    /// The output side.
    pub side: i64,
}

/// The update's [`FusedAffine`] for `size` px images.
///
/// Pixel coordinates of the padded image compose as `p_pad = j1 + r·(c + R·(u + j2 − c))`, where `u`
/// is the output pixel, `r = in/out` the TF1 legacy resize ratio (no half-pixel offset), `c` the
/// centre of the scaled image and `R` the rotation; the unpadded image's are `p_pad − PAD`.
pub fn fused_affine(size: usize, draw: &Draw) -> FusedAffine {
    let padded = size as f64 + 2.0 * PAD as f64;
    let scale_input = scale_input_side(size);
    let scaled = scaled_side(scale_input, scales()[draw.scale]);
    let out = scaled - JITTER_2;
    let r = scale_input as f64 / scaled as f64;
    let c = (scaled as f64 - 1.0) / 2.0;
    let (s, cs) = (draw.angle as f64).to_radians().sin_cos();
    // R = [[cos, −sin], [sin, cos]] acting on (x, y), as `rotate` does
    let rot = |x: f64, y: f64| (cs * x - s * y, s * x + cs * y);
    let (j1y, j1x) = (draw.jitter_1.0 as f64, draw.jitter_1.1 as f64);
    let (j2y, j2x) = (draw.jitter_2.0 as f64, draw.jitter_2.1 as f64);
    // translation in padded pixels: t = j1 + r·(c + R·(j2 − c))
    let (rx, ry) = rot(j2x - c, j2y - c);
    let (tx, ty) = (j1x + r * (c + rx), j1y + r * (c + ry));
    let (ox, oy) = rot(1.0, 1.0);
    // u = (a + 1)(out − 1)/2 and a_in = 2·(p − origin)/(side − 1) − 1
    let matrix = |origin: f64, side: f64| {
        let k = r * (out as f64 - 1.0) / (side - 1.0);
        let bx = 2.0 / (side - 1.0) * (r * (out as f64 - 1.0) / 2.0 * ox + tx - origin) - 1.0;
        let by = 2.0 / (side - 1.0) * (r * (out as f64 - 1.0) / 2.0 * oy + ty - origin) - 1.0;
        [
            (k * cs) as f32,
            (-k * s) as f32,
            bx as f32,
            (k * s) as f32,
            (k * cs) as f32,
            by as f32,
        ]
    };
    FusedAffine {
        image: matrix(PAD as f64, size as f64),
        padded: matrix(0.0, padded),
        side: out,
    }
}

/// One step's random choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Offsets (y, x) of the first jitter, each 0..=8.
    pub jitter_1: (i64, i64),
    /// Index into [`scales`].
    pub scale: usize,
    /// Rotation in degrees.
    pub angle: i64,
    /// Offsets (y, x) of the second jitter, each 0..=4.
    pub jitter_2: (i64, i64),
}

impl Draw {
    /// Draws one step's choices in lucid's order.
    pub fn sample(rng: &mut impl Rng) -> Self {
        let jitter_1 = (
            rng.random_range(0..=JITTER_1),
            rng.random_range(0..=JITTER_1),
        );
        let scale = rng.random_range(0..11);
        let angle = ANGLES[rng.random_range(0..ANGLES.len())];
        let jitter_2 = (
            rng.random_range(0..=JITTER_2),
            rng.random_range(0..=JITTER_2),
        );
        Self {
            jitter_1,
            scale,
            angle,
            jitter_2,
        }
    }
}

/// The standard transforms prepared for one image size on one device.
#[derive(Debug)]
pub struct Transforms {
    set: TransformSet,
    /// Per scale: `(R_y [out, in], R_xᵀ [in, out])` interpolation matrices.
    resize: Vec<(Tensor, Tensor)>,
    /// Per non-zero angle: the `[1, 2, 3]` rotation matrix, already on the device (no per-step copy).
    rotations: Vec<(i64, Tensor)>,
    /// With [`Transforms::prepare_fused`]: every update's composed affine maps on the device.
    fused: Option<Fused>,
}

/// Every update's [`FusedAffine`], uploaded once.
#[derive(Debug)]
struct Fused {
    /// `[updates, 1, 2, 3]`: output to unpadded image.
    image: Tensor,
    /// `[updates, 1, 2, 3]`: output to padded image.
    padded: Tensor,
    /// Output side per update.
    sides: Vec<i64>,
    /// `[1, 1, P, P]` ones, the padded image's extent.
    extent: Tensor,
}

impl Transforms {
    /// Prepares the transforms for `size` x `size` images.
    pub fn new(set: TransformSet, size: usize, device: Device) -> Self {
        let scale_input = scale_input_side(size);
        let resize = match set {
            TransformSet::Standard => scales()
                .iter()
                .map(|&s| {
                    let out = scaled_side(scale_input, s);
                    let r = resize_matrix(scale_input, out).to_device(device);
                    (r.shallow_clone(), r.tr().contiguous())
                })
                .collect(),
            TransformSet::None => Vec::new(),
        };
        let rotations = match set {
            TransformSet::Standard => (-10..=10)
                .filter(|&a| a != 0)
                .map(|a| (a, rotation_matrix(a).to_device(device)))
                .collect(),
            TransformSet::None => Vec::new(),
        };
        Self {
            set,
            resize,
            rotations,
            fused: None,
        }
    }

    /// Switches to the fused path for this optimisation's draws: each update becomes one bilinear
    /// `grid_sample` of the composed affine map, uploaded for all updates at once (no per-step
    /// host-to-device copy). The geometry is lucid's; the resize and rotation are interpolated once
    /// instead of twice.
    pub fn prepare_fused(&mut self, size: usize, plan: &[Draw], device: Device) {
        if self.set == TransformSet::None || plan.is_empty() {
            return;
        }
        let maps: Vec<FusedAffine> = plan.iter().map(|d| fused_affine(size, d)).collect();
        let upload = |pick: fn(&FusedAffine) -> [f32; 6]| {
            let flat: Vec<f32> = maps.iter().flat_map(pick).collect();
            Tensor::from_slice(&flat)
                .view([plan.len() as i64, 1, 2, 3])
                .to_device(device)
        };
        let padded_side = size as i64 + 2 * PAD;
        self.fused = Some(Fused {
            image: upload(|m| m.image),
            padded: upload(|m| m.padded),
            sides: maps.iter().map(|m| m.side).collect(),
            extent: Tensor::ones([1, 1, padded_side, padded_side], (tch::Kind::Float, device)),
        });
    }

    /// Applies update `index`'s transforms to a `[B, 3, H, W]` batch of images **mapped to [−1, 1]**
    /// (see [`crate::render::param::ImageParam::centred`]): the fused path when prepared, else step
    /// by step.
    ///
    /// The fused path samples the unpadded image (zero outside, which is the 0.5 padding in [0, 1]
    /// terms) through one grid shared by the batch, and adds −1 (black) where the sample leaves the
    /// padded image, blended bilinearly at its edge: `bilinear(pad(x, 0.5))` exactly, without
    /// materialising the padded batch.
    pub fn apply_update(&self, x: &Tensor, draw: &Draw, index: usize) -> Tensor {
        match &self.fused {
            Some(fused) if index < fused.sides.len() => {
                let size = x.size();
                let out = fused.sides[index];
                let grid = Tensor::affine_grid_generator(
                    &fused.image.get(index as i64),
                    [1, size[1], out, out],
                    true,
                )
                .expand([size[0], out, out, 2], false);
                // interpolation 0 = bilinear, padding 0 = zeros
                let sampled = x.grid_sampler_2d(&grid, 0, 0, true);
                let extent_grid = Tensor::affine_grid_generator(
                    &fused.padded.get(index as i64),
                    [1, 1, out, out],
                    true,
                );
                let outside = fused.extent.grid_sampler_2d(&extent_grid, 0, 0, true) - 1.0;
                sampled + outside
            }
            _ => (self.apply(&((x + 1.0) * 0.5), draw) - 0.5) * 2.0,
        }
    }

    /// The smallest side the network can be shown for `size` px images.
    pub fn min_output_side(set: TransformSet, size: usize) -> i64 {
        lucid_proto::geometry::min_network_side(set, size)
    }

    /// Applies one step's transforms to a `[B, 3, H, W]` batch.
    pub fn apply(&self, x: &Tensor, draw: &Draw) -> Tensor {
        if self.set == TransformSet::None {
            return x.shallow_clone();
        }
        let padded = pad_constant(x, PAD, 0.5);
        let cropped = crop(&padded, JITTER_1, draw.jitter_1);
        let (ry, rx_t) = &self.resize[draw.scale];
        let scaled = ry.matmul(&cropped.matmul(rx_t));
        let rotated = match self.rotations.iter().find(|(a, _)| *a == draw.angle) {
            Some((_, theta)) => rotate_by(&scaled, theta),
            None => scaled,
        };
        crop(&rotated, JITTER_2, draw.jitter_2)
    }
}

/// Pads the two spatial dimensions by `pad` with the constant `value`.
pub fn pad_constant(x: &Tensor, pad: i64, value: f64) -> Tensor {
    (x - value).constant_pad_nd([pad, pad, pad, pad]) + value
}

/// Crops `d` pixels off each spatial dimension starting at `offset` (y, x).
pub fn crop(x: &Tensor, d: i64, offset: (i64, i64)) -> Tensor {
    let size = x.size();
    let (h, w) = (size[2], size[3]);
    x.narrow(2, offset.0, h - d).narrow(3, offset.1, w - d)
}

/// TF1 `resize_bilinear` (align_corners=False, half_pixel_centers=False) from `input` to `output`
/// samples along one axis, as an `[output, input]` matrix.
pub fn resize_matrix(input: i64, output: i64) -> Tensor {
    let ratio = input as f64 / output as f64;
    let mut m = vec![0f32; (input * output) as usize];
    for o in 0..output {
        let src = o as f64 * ratio;
        let lo = (src.floor() as i64).min(input - 1);
        let hi = (lo + 1).min(input - 1);
        let frac = (src - lo as f64) as f32;
        m[(o * input + lo) as usize] += 1.0 - frac;
        m[(o * input + hi) as usize] += frac;
    }
    Tensor::from_slice(&m).view([output, input])
}

/// The `[1, 2, 3]` affine matrix of a rotation by `degrees` in normalised coordinates (CPU).
pub fn rotation_matrix(degrees: i64) -> Tensor {
    let (s, c) = (degrees as f64).to_radians().sin_cos();
    Tensor::from_slice(&[c as f32, -s as f32, 0.0, s as f32, c as f32, 0.0]).view([1, 2, 3])
}

/// Rotates a square batch by the `[1, 2, 3]` matrix `theta` about its centre, bilinear, filling with
/// 0 outside.
pub fn rotate_by(x: &Tensor, theta: &Tensor) -> Tensor {
    let size = x.size();
    let theta = theta.expand([size[0], 2, 3], false).to_kind(x.kind());
    let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), true);
    // interpolation 0 = bilinear, padding 0 = zeros
    x.grid_sampler(&grid, 0, 0, true)
}

/// Draws `n` steps of transform choices.
pub fn draw_plan(rng: &mut impl Rng, n: usize) -> Vec<Draw> {
    (0..n).map(|_| Draw::sample(rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// A `[1, 3, n, n]` test pattern.
    fn ramp(n: i64) -> Tensor {
        Tensor::arange(n * n * 3, (Kind::Float, Device::Cpu)).view([1, 3, n, n])
            / (n * n * 3) as f64
    }

    /// Rotates by `degrees` about the centre (identity for 0).
    fn rotate(x: &Tensor, degrees: i64, device: Device) -> Tensor {
        if degrees == 0 {
            return x.shallow_clone();
        }
        rotate_by(x, &rotation_matrix(degrees).to_device(device))
    }
    use rand::SeedableRng;

    #[test]
    fn scale_list_and_sides_match_lucid() {
        let s = scales();
        assert!((s[0] - 0.9).abs() < 1e-12 && (s[10] - 1.1).abs() < 1e-12 && s[5] == 1.0);
        // 224 px: pad → 248, jitter → 240; 0.9 → 216, 1.1 → 264
        assert_eq!(scaled_side(240, s[0]), 216);
        assert_eq!(scaled_side(240, s[10]), 264);
        assert_eq!(
            Transforms::min_output_side(TransformSet::Standard, 224),
            212
        );
    }

    #[test]
    fn pad_and_crop_shapes_and_content() {
        let x = ramp(4);
        let p = pad_constant(&x, 2, 0.5);
        assert_eq!(p.size(), vec![1, 3, 8, 8]);
        assert!((p.double_value(&[0, 1, 0, 0]) - 0.5).abs() < 1e-7);
        assert!((p.double_value(&[0, 1, 2, 2]) - x.double_value(&[0, 1, 0, 0])).abs() < 1e-7);
        let c = crop(&p, 3, (1, 2));
        assert_eq!(c.size(), vec![1, 3, 5, 5]);
        assert!((c.double_value(&[0, 2, 0, 0]) - p.double_value(&[0, 2, 1, 2])).abs() < 1e-7);
    }

    #[test]
    fn resize_matrix_follows_tf1_legacy_bilinear() {
        // 4 → 2: out 0 samples in 0, out 1 samples in 2 (no half-pixel offset)
        let m = resize_matrix(4, 2);
        assert_eq!(
            Vec::<f32>::try_from(m.flatten(0, -1)).ok(),
            Some(vec![1., 0., 0., 0., 0., 0., 1., 0.])
        );
        // 2 → 4: out 1 is the midpoint, out 3 clamps to the last input
        let m = resize_matrix(2, 4);
        let v: Vec<f32> = Vec::try_from(m.flatten(0, -1)).unwrap_or_default();
        assert_eq!(v, vec![1., 0., 0.5, 0.5, 0., 1., 0., 1.]);
        // rows sum to 1
        let m = resize_matrix(240, 216);
        let sums = m.sum_dim_intlist([1].as_slice(), false, Kind::Float);
        assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn rotation_about_centre() {
        // a single bright pixel right of centre moves above or below it under ±90°
        let x = Tensor::zeros([1, 1, 5, 5], (Kind::Float, Device::Cpu));
        let _ = x.get(0).get(0).get(2).get(4).fill_(1.0);
        let r = rotate(&x, 90, Device::Cpu);
        assert_eq!(r.size(), vec![1, 1, 5, 5]);
        let top = r.double_value(&[0, 0, 0, 2]);
        let bottom = r.double_value(&[0, 0, 4, 2]);
        assert!((top.max(bottom) - 1.0).abs() < 1e-5, "{top} {bottom}");
        // the centre is fixed
        let y = ramp(5);
        let ry = rotate(&y, 7, Device::Cpu);
        assert!((ry.double_value(&[0, 1, 2, 2]) - y.double_value(&[0, 1, 2, 2])).abs() < 1e-6);
        // zero degrees is the identity
        assert!(rotate(&y, 0, Device::Cpu).equal(&y));
    }

    #[test]
    fn standard_transforms_output_sides() {
        let t = Transforms::new(TransformSet::Standard, 224, Device::Cpu);
        let x = Tensor::rand([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut sides = std::collections::BTreeSet::new();
        for draw in draw_plan(&mut rng, 200) {
            let y = t.apply(&x, &draw);
            let s = y.size();
            assert_eq!(s[0..2], [2, 3]);
            assert_eq!(s[2], s[3]);
            assert_eq!(s[2], scaled_side(240, scales()[draw.scale]) - 4);
            sides.insert(s[2]);
        }
        assert_eq!(sides.first(), Some(&212));
        assert_eq!(sides.last(), Some(&260));
        // identity settings keep the image: no jitter offset, scale 1, angle 0 → centre crop of the pad
        let draw = Draw {
            jitter_1: (4, 4),
            scale: 5,
            angle: 0,
            jitter_2: (2, 2),
        };
        let y = t.apply(&x, &draw);
        assert_eq!(y.size(), vec![2, 3, 236, 236]);
        let inner = y.narrow(2, 6, 224).narrow(3, 6, 224);
        assert!((inner - &x).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn fused_transforms_match_the_step_by_step_path() {
        // a smooth image, so single and double bilinear interpolation agree closely
        let n = 64i64;
        let yy = Tensor::arange(n, (Kind::Float, Device::Cpu)).view([1, 1, n, 1]) / n as f64;
        let xx = Tensor::arange(n, (Kind::Float, Device::Cpu)).view([1, 1, 1, n]) / n as f64;
        let img = Tensor::cat(
            &[
                (&yy * 3.0).sin() * 0.3 + 0.5 + &xx * 0.0,
                (&xx * 2.0).cos() * 0.3 + 0.5 + &yy * 0.0,
                (&xx + &yy) * 0.4 + 0.1,
            ],
            1,
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let plan = draw_plan(&mut rng, 40);
        let mut t = Transforms::new(TransformSet::Standard, n as usize, Device::Cpu);
        t.prepare_fused(n as usize, &plan, Device::Cpu);
        let plain = Transforms::new(TransformSet::Standard, n as usize, Device::Cpu);
        for (i, draw) in plan.iter().enumerate() {
            let a = plain.apply(&img, draw);
            let b = (t.apply_update(&(&img * 2.0 - 1.0), draw, i) + 1.0) * 0.5;
            assert_eq!(a.size(), b.size());
            let side = a.size()[2];
            // Single vs double interpolation, and the outer edge of the padded image (clamped by TF's
            // resize, blended with the zero fill by one grid sample: a one-pixel line) differ only
            // near the border; inside, the geometry agrees.
            let inner = |x: &Tensor| x.narrow(2, 16, side - 32).narrow(3, 16, side - 32);
            let mean = (inner(&a) - inner(&b))
                .abs()
                .mean(Kind::Float)
                .double_value(&[]);
            assert!(mean < 1e-3, "update {i} {draw:?}: mean difference {mean}");
            let err = (inner(&a) - inner(&b)).abs().max().double_value(&[]);
            assert!(err < 0.01, "update {i} {draw:?}: max difference {err}");
        }
    }

    #[test]
    fn fused_path_equals_sampling_the_padded_image() {
        // the mask formulation against the direct one: pad with 0.5, then sample with zero fill
        let n = 48usize;
        let img = Tensor::rand([2, 3, n as i64, n as i64], (Kind::Float, Device::Cpu));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let plan = draw_plan(&mut rng, 30);
        let mut t = Transforms::new(TransformSet::Standard, n, Device::Cpu);
        t.prepare_fused(n, &plan, Device::Cpu);
        for (i, draw) in plan.iter().enumerate() {
            let map = fused_affine(n, draw);
            let theta = Tensor::from_slice(&map.padded)
                .view([1, 2, 3])
                .expand([2, 2, 3], false);
            let grid = Tensor::affine_grid_generator(&theta, [2, 3, map.side, map.side], true);
            let direct = pad_constant(&img, PAD, 0.5).grid_sampler(&grid, 0, 0, true);
            let fused = (t.apply_update(&(&img * 2.0 - 1.0), draw, i) + 1.0) * 0.5;
            assert_eq!(fused.size(), direct.size());
            let err = (fused - direct).abs().max().double_value(&[]);
            assert!(err < 1e-4, "update {i} {draw:?}: max difference {err}");
        }
    }

    #[test]
    fn draws_cover_lucid_ranges() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let plan = draw_plan(&mut rng, 5000);
        assert!(
            plan.iter()
                .all(|d| (0..=8).contains(&d.jitter_1.0) && (0..=4).contains(&d.jitter_2.1))
        );
        assert!(plan.iter().any(|d| d.jitter_1.1 == 8) && plan.iter().any(|d| d.jitter_2.0 == 4));
        let zeros = plan.iter().filter(|d| d.angle == 0).count() as f64 / 5000.0;
        assert!(
            (zeros - 6.0 / 26.0).abs() < 0.03,
            "share of zero angles {zeros}"
        );
        assert!(plan.iter().any(|d| d.angle == -10) && plan.iter().any(|d| d.angle == 10));
        assert!(plan.iter().any(|d| d.scale == 0) && plan.iter().any(|d| d.scale == 10));
    }
}
