//! Synthetic `alexnet_v2` model files with known first-layer filters: oriented Gabors and
//! colour-opponent blobs. They are the render engine's ground truth (the image rendered for a filter
//! must show its orientation or hue) and the demo models of the local sweep.
//!
//! conv1 is linear, and the mean of a linear, zero-mean filter's output over jittered positions does not
//! depend on the image's pattern, so the ground truth is read one layer up: conv2's first channels are
//! selectors (a single centre tap of weight 1 on conv1 channel k), so conv2 channel k is the rectified,
//! pooled response of filter k, which a grating at the filter's orientation (or a field of its hue)
//! maximises.

use std::path::Path;

use lucid_checkpoint::alexnet::LAYER_NAMES;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A first-layer filter of a synthetic model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Filter {
    /// A luminance Gabor whose wave vector points at `degrees` (0 = varies along x, 90 = along y).
    Gabor {
        /// Wave-vector angle in degrees.
        degrees: u32,
    },
    /// A Gaussian blob with weights `rgb` on the three colour channels.
    Opponent {
        /// Per-channel sign and weight.
        rgb: [f32; 3],
    },
}

/// The first-layer filters of the synthetic models: four Gabors, then red-green and green-red
/// opponents, then blue-yellow and yellow-blue.
pub fn demo_filters() -> Vec<Filter> {
    vec![
        Filter::Gabor { degrees: 0 },
        Filter::Gabor { degrees: 45 },
        Filter::Gabor { degrees: 90 },
        Filter::Gabor { degrees: 135 },
        Filter::Opponent {
            rgb: [1.0, -1.0, 0.0],
        },
        Filter::Opponent {
            rgb: [-1.0, 1.0, 0.0],
        },
        Filter::Opponent {
            rgb: [-0.5, -0.5, 1.0],
        },
        Filter::Opponent {
            rgb: [0.5, 0.5, -1.0],
        },
    ]
}

/// Wavelength of the Gabors in pixels.
pub const GABOR_WAVELENGTH: f32 = 6.0;

/// The wave vector (cycles/px along x, y) of a Gabor at `degrees`.
pub fn wave_vector(degrees: u32) -> (f32, f32) {
    let (s, c) = (degrees as f32).to_radians().sin_cos();
    (c / GABOR_WAVELENGTH, s / GABOR_WAVELENGTH)
}

/// An 11x11x3 HWIO slice for one filter, row-major `[y][x][c]`.
pub fn filter_weights(filter: Filter) -> Vec<f32> {
    let k = 11i32;
    let centre = 5.0f32;
    let sigma = 2.5f32;
    let mut out = Vec::with_capacity((k * k * 3) as usize);
    for y in 0..k {
        for x in 0..k {
            let (dy, dx) = (y as f32 - centre, x as f32 - centre);
            let envelope = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp();
            for c in 0..3 {
                let w = match filter {
                    Filter::Gabor { degrees } => {
                        let (fx, fy) = wave_vector(degrees);
                        envelope * (2.0 * std::f32::consts::PI * (fx * dx + fy * dy)).cos() / 3.0
                    }
                    Filter::Opponent { rgb } => envelope * rgb[c] / 3.0,
                };
                out.push(w * 0.5);
            }
        }
    }
    out
}

/// Widths of the synthetic model's layers after conv1.
const DEEP_WIDTHS: [usize; 7] = [16, 16, 16, 16, 32, 32, 10];

/// The layer whose first channels mirror the first-layer filters (rectified and pooled).
pub const MIRROR_LAYER: &str = "conv2";

/// Writes a synthetic `alexnet_v2` as `.safetensors` at `path`: conv1 holds `filters`, conv2's first
/// `filters.len()` channels select them (centre tap 1), everything else is random Glorot-uniform from
/// the RNG seed `weights_seed`.
///
/// # Panics
/// When more than 16 filters are given (conv2 is 16 wide).
pub fn write_model(path: &Path, filters: &[Filter], weights_seed: u64) -> std::io::Result<()> {
    let mut widths = [0usize; 8];
    widths[0] = filters.len();
    widths[1..].copy_from_slice(&DEEP_WIDTHS);
    write_alexnet(path, Some(filters), widths, weights_seed)
}

/// The layer widths of the ecoset AlexNet (conv1 … fc8).
pub const ECOSET_WIDTHS: [usize; 8] = [64, 192, 384, 384, 256, 4096, 4096, 565];

/// Writes an `alexnet_v2` with the given widths and random Glorot-uniform weights from the RNG seed
/// `weights_seed` (for benchmarks at the real model's size; 48.5 M parameters with [`ECOSET_WIDTHS`]).
pub fn write_random_model(
    path: &Path,
    widths: [usize; 8],
    weights_seed: u64,
) -> std::io::Result<()> {
    write_alexnet(path, None, widths, weights_seed)
}

fn write_alexnet(
    path: &Path,
    filters: Option<&[Filter]>,
    widths: [usize; 8],
    weights_seed: u64,
) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(weights_seed);
    let kernels = [11usize, 5, 3, 3, 3, 5, 1, 1];
    let mut views_data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        views_data.push((name, shape, f32_bytes(&data)));
    };
    let mut inputs = 3usize;
    for (i, (&width, &k)) in widths.iter().zip(&kernels).enumerate() {
        let name = LAYER_NAMES[i];
        let limit = (6.0 / ((k * k * inputs + k * k * width) as f32)).sqrt();
        let mut w: Vec<f32> = (0..k * k * inputs * width)
            .map(|_| rng.random_range(-limit..limit))
            .collect();
        let mut b: Vec<f32> = (0..width).map(|_| rng.random_range(-0.05..0.05)).collect();
        match (i, filters) {
            (0, Some(filters)) => {
                for (o, &f) in filters.iter().enumerate() {
                    for (j, &v) in filter_weights(f).iter().enumerate() {
                        w[j * width + o] = v;
                    }
                    b[o] = 0.0;
                }
            }
            (1, Some(filters)) => {
                let n = filters.len();
                assert!(n <= width, "at most {width} first-layer filters");
                for o in 0..n {
                    for y in 0..k {
                        for x in 0..k {
                            for c in 0..inputs {
                                let centre_tap = y == k / 2 && x == k / 2 && c == o;
                                w[((y * k + x) * inputs + c) * width + o] =
                                    if centre_tap { 1.0 } else { 0.0 };
                            }
                        }
                    }
                    b[o] = 0.0;
                }
            }
            _ => {}
        }
        push(
            format!("alexnet_v2/{name}/weights"),
            vec![k, k, inputs, width],
            w,
        );
        push(format!("alexnet_v2/{name}/biases"), vec![width], b);
        inputs = width;
    }
    write_safetensors(path, &views_data)
}

/// Writes float32 tensors `(name, shape, little-endian bytes)` as a `.safetensors` file at `path`
/// (for synthetic models of any description, and tests).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
) -> std::io::Result<()> {
    let serialized = safetensors_bytes(tensors)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serialized)
}

/// `tensors` (name, shape, little-endian float32 bytes) as a `.safetensors` file's bytes.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(std::io::Error::other)
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(std::io::Error::other)
}

/// Little-endian bytes of `values`, as [`write_safetensors`] takes them.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The dominant orientation (wave-vector angle in degrees, 0..180) of a square RGB image, from the
/// power spectrum of its luminance ([`spectral_orientation`]).
pub fn dominant_orientation(rgb: &[u8], size: usize) -> f64 {
    let lum: Vec<f64> = rgb
        .chunks(3)
        .map(|p| (f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2])) / 765.0)
        .collect();
    spectral_orientation(&lum, size)
}

/// Side of the zero-padded grid a filter's spectrum is read on: fine enough (1/32 cycle/px) that an
/// 11-tap Gabor's orientation is read to within half a degree.
const FILTER_GRID: usize = 32;

/// The dominant orientation (wave-vector angle in degrees, 0..180) of a first-layer filter given as a
/// `side` x `side` x 3 HWIO slice (`[y][x][c]`, as [`filter_weights`] writes it): the spectrum of its
/// channel-summed weights, zero-padded to a 32 px grid, read as [`spectral_orientation`] reads an image.
///
/// # Panics
/// When `weights` is not `side * side * 3` long or `side` exceeds the grid.
pub fn filter_orientation(weights: &[f32], side: usize) -> f64 {
    assert_eq!(weights.len(), side * side * 3, "a {side}x{side}x3 filter");
    assert!(side <= FILTER_GRID, "filters up to {FILTER_GRID} px");
    let mut grid = vec![0.0f64; FILTER_GRID * FILTER_GRID];
    for (i, tap) in weights.chunks(3).enumerate() {
        let (y, x) = (i / side, i % side);
        grid[y * FILTER_GRID + x] = tap.iter().map(|&w| f64::from(w)).sum();
    }
    spectral_orientation(&grid, FILTER_GRID)
}

/// The dominant orientation (wave-vector angle in degrees, 0..180, y pointing down the rows) of a
/// square `size` x `size` field of values: the doubled-angle mean of its power spectrum over the band
/// 0.1–0.45 cycles/px (the Gabors' 1/6 lies inside; DC and the lowest frequencies, which carry the
/// mean and the envelope, do not count).
fn spectral_orientation(values: &[f64], size: usize) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let (mut sx, mut sy) = (0.0f64, 0.0f64);
    let n = size as i64;
    // a direct DFT over a frequency band is enough for test-sized images
    for ky in -(n / 2)..(n / 2) {
        for kx in 0..(n / 2) {
            if kx == 0 && ky <= 0 {
                continue;
            }
            let radius = ((kx * kx + ky * ky) as f64).sqrt() / n as f64;
            if !(0.1..=0.45).contains(&radius) {
                continue;
            }
            let (mut re, mut im) = (0.0, 0.0);
            for y in 0..size {
                for x in 0..size {
                    let phase = -2.0
                        * std::f64::consts::PI
                        * ((kx * x as i64 + ky * y as i64) as f64 / n as f64);
                    let v = values[y * size + x] - mean;
                    re += v * phase.cos();
                    im += v * phase.sin();
                }
            }
            let power = re * re + im * im;
            let angle = (ky as f64).atan2(kx as f64);
            sx += power * (2.0 * angle).cos();
            sy += power * (2.0 * angle).sin();
        }
    }
    let degrees = sy.atan2(sx).to_degrees() / 2.0;
    degrees.rem_euclid(180.0)
}

/// Smallest difference between two orientations in degrees (mod 180).
pub fn orientation_difference(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(180.0);
    d.min(180.0 - d)
}

/// Writes at `dst` a copy of the `alexnet_v2` at `src` whose every layer's output channels are
/// permuted (and the next layer's input channels with them), its weights perturbed by uniform noise
/// of `noise` times each tensor's largest magnitude: the same network up to the order of its
/// channels, the ground truth of matching channels across seeds (issue 16). Returns per layer the
/// permutation: `permutations[layer][old] = new`.
pub fn write_permuted_copy(
    src: &Path,
    dst: &Path,
    seed: u64,
    noise: f32,
) -> std::io::Result<Vec<Vec<usize>>> {
    let bytes = std::fs::read(src)?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(std::io::Error::other)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut permutations: Vec<Vec<usize>> = Vec::new();
    let mut tensors = Vec::new();
    let mut previous: Vec<usize> = (0..3).collect(); // the image's channels stay in place
    for name in LAYER_NAMES {
        let read = |part: &str| -> std::io::Result<(Vec<usize>, Vec<f32>)> {
            let view = file
                .tensor(&format!("alexnet_v2/{name}/{part}"))
                .map_err(std::io::Error::other)?;
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((view.shape().to_vec(), values))
        };
        let (shape, w) = read("weights")?;
        let (_, b) = read("biases")?;
        let [kh, kw, inputs, outputs] = shape[..] else {
            return Err(std::io::Error::other(format!(
                "{name}: weights are not 4-d"
            )));
        };
        let mut perm: Vec<usize> = (0..outputs).collect();
        for i in (1..outputs).rev() {
            perm.swap(i, rng.random_range(0..=i));
        }
        let mut new_w = vec![0.0f32; w.len()];
        for tap in 0..kh * kw {
            for (c, &c_to) in previous.iter().enumerate().take(inputs) {
                for (o, &o_to) in perm.iter().enumerate() {
                    let from = (tap * inputs + c) * outputs + o;
                    new_w[(tap * inputs + c_to) * outputs + o_to] = w[from];
                }
            }
        }
        let mut new_b = vec![0.0f32; b.len()];
        for (o, &o_to) in perm.iter().enumerate() {
            new_b[o_to] = b[o];
        }
        for values in [&mut new_w, &mut new_b] {
            let scale = values.iter().fold(0.0f32, |m, v| m.max(v.abs())) * noise;
            for v in values.iter_mut() {
                *v += scale * rng.random_range(-1.0f32..1.0);
            }
        }
        tensors.push((
            format!("alexnet_v2/{name}/weights"),
            shape.clone(),
            f32_bytes(&new_w),
        ));
        tensors.push((
            format!("alexnet_v2/{name}/biases"),
            vec![outputs],
            f32_bytes(&new_b),
        ));
        previous = perm.clone();
        permutations.push(perm);
    }
    write_safetensors(dst, &tensors)?;
    Ok(permutations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lucid_checkpoint::ModelFile;

    /// Measured filter orientations must lie this close to the claimed ones (measured within 0.4° on
    /// the 32 px grid; swapped axes or one flipped sign put 20° or 60° at least 30° off).
    const FILTER_TOLERANCE: f64 = 2.0;

    #[test]
    fn dominant_orientation_reads_tiled_gratings() {
        // the measuring tool itself, on gratings built independently of the filter code
        let size = 32usize;
        for degrees in [0.0f64, 30.0, 45.0, 90.0, 120.0, 135.0] {
            let (s, c) = degrees.to_radians().sin_cos();
            let (fx, fy) = (c / 6.0, s / 6.0);
            let mut rgb = Vec::new();
            for y in 0..size {
                for x in 0..size {
                    let v = (2.0 * std::f64::consts::PI * (fx * x as f64 + fy * y as f64)).cos();
                    let b = (127.5 + 100.0 * v) as u8;
                    rgb.extend([b, b, b]);
                }
            }
            let got = dominant_orientation(&rgb, size);
            assert!(
                orientation_difference(got, degrees) < 1.0,
                "{degrees}: {got}"
            );
        }
    }

    #[test]
    fn gabor_filters_have_the_orientations_they_claim() {
        // every angle, not only the symmetric ones: swapping x and y maps 45° and 135° onto themselves
        for degrees in [0u32, 20, 45, 60, 90, 110, 135, 160] {
            let weights = filter_weights(Filter::Gabor { degrees });
            assert_eq!(weights.len(), 363, "11x11x3 HWIO");
            let got = filter_orientation(&weights, 11);
            let diff = orientation_difference(got, f64::from(degrees));
            assert!(
                diff <= FILTER_TOLERANCE,
                "Gabor claiming {degrees}°: its weights are oriented at {got:.1}° ({diff:.1}° off)"
            );
        }
    }

    #[test]
    fn written_model_holds_each_gabor_in_its_claimed_orientation() {
        // the filters as the network sees them: conv1's HWIO tensor read back from the written file
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gabor.safetensors");
        let filters = demo_filters();
        write_model(&path, &filters, 7).expect("write synthetic model");
        let file = ModelFile::open(&path).expect("open");
        let conv1 = file.read_f32("alexnet_v2/conv1/weights").expect("conv1");
        assert_eq!(conv1.shape, [11, 11, 3, filters.len()]);
        let width = filters.len();
        let mut gabors = 0;
        for (o, filter) in filters.iter().enumerate() {
            let Filter::Gabor { degrees } = *filter else {
                continue;
            };
            let weights: Vec<f32> = conv1.data.iter().skip(o).step_by(width).copied().collect();
            let got = filter_orientation(&weights, 11);
            let diff = orientation_difference(got, f64::from(degrees));
            assert!(
                diff <= FILTER_TOLERANCE,
                "conv1 channel {o} claims {degrees}°: its weights are oriented at {got:.1}°"
            );
            gabors += 1;
        }
        assert_eq!(gabors, 4, "the demo filters hold four Gabors");
    }
}
