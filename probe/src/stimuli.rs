//! Generated probe images with a known answer: luminance gratings at eight orientations, three
//! wavelengths and two phases, and uniform colour fields. On the synthetic demo model (Gabor and
//! colour-opponent conv1 filters, mirrored at conv2) each Gabor channel's best grating has its
//! orientation and each colour channel's best field is its colour; the tests and the demo probe set
//! are made from these, so nothing is downloaded.

use std::f32::consts::PI;
use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// What a probe image shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stimulus {
    /// A full-contrast luminance grating whose wave vector points at `degrees`.
    Grating {
        /// Orientation of the wave vector.
        degrees: f32,
        /// Pixels per cycle.
        wavelength: f32,
        /// Phase in radians.
        phase: f32,
    },
    /// A uniform field.
    Field([u8; 3]),
}

/// Red.
pub const RED: [u8; 3] = [255, 0, 0];
/// Green.
pub const GREEN: [u8; 3] = [0, 255, 0];
/// Blue.
pub const BLUE: [u8; 3] = [0, 0, 255];
/// Yellow.
pub const YELLOW: [u8; 3] = [255, 255, 0];

/// Gratings at eight orientations (22.5° apart), wavelengths 4, 6 and 9 px and two phases, then
/// red, green, blue, yellow and grey fields: 53 images.
pub fn stimuli() -> Vec<Stimulus> {
    let mut all = Vec::new();
    for step in 0..8 {
        for wavelength in [4.0, 6.0, 9.0] {
            for phase in [0.0, PI / 2.0] {
                all.push(Stimulus::Grating {
                    degrees: step as f32 * 22.5,
                    wavelength,
                    phase,
                });
            }
        }
    }
    all.extend([RED, GREEN, BLUE, YELLOW, [128, 128, 128]].map(Stimulus::Field));
    all
}

impl Stimulus {
    /// The stimulus as a 300 × 224 image (its centre square is 224 px, a network's usual side, so
    /// the wavelengths are not resampled there).
    pub fn image(self) -> RgbImage {
        RgbImage::from_fn(300, 224, |x, y| match self {
            Stimulus::Grating {
                degrees,
                wavelength,
                phase,
            } => {
                let (s, c) = degrees.to_radians().sin_cos();
                let t = 2.0 * PI * (c * x as f32 + s * y as f32) / wavelength + phase;
                Rgb([(127.5 + 127.5 * t.cos()) as u8; 3])
            }
            Stimulus::Field(rgb) => Rgb(rgb),
        })
    }

    /// A file name saying what it shows (`grating-045.0deg-6px-p1.png`, `field-ff0000.jpg`).
    pub fn file_name(self) -> String {
        match self {
            Stimulus::Grating {
                degrees,
                wavelength,
                phase,
            } => format!(
                "grating-{degrees:05.1}deg-{wavelength}px-p{}.png",
                u8::from(phase > 0.0)
            ),
            Stimulus::Field([r, g, b]) => format!("field-{r:02x}{g:02x}{b:02x}.jpg"),
        }
    }

    /// The file's bytes: a grating as PNG (lossless), a field as JPEG (both formats probe sets use).
    pub fn encoded(self) -> Vec<u8> {
        let format = match self {
            Stimulus::Grating { .. } => ImageFormat::Png,
            Stimulus::Field(_) => ImageFormat::Jpeg,
        };
        let mut bytes = Vec::new();
        // encoding an in-memory RGB image into a Vec cannot fail
        let _ =
            DynamicImage::ImageRgb8(self.image()).write_to(&mut Cursor::new(&mut bytes), format);
        bytes
    }
}

/// A photograph-like JPEG (`width` × `height`, quality 90) for benchmarks: smooth colour gradients
/// under fine pseudo-random texture, so its size and entropy, and so its decoding cost, are those of
/// a dataset photograph rather than of a flat field. `seed` varies the texture.
pub fn photo_like_jpeg(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let image = RgbImage::from_fn(width, height, |x, y| {
        // xorshift64: cheap, deterministic texture
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 48) as f32 - 24.0;
        let (u, v) = (x as f32 / width as f32, y as f32 / height as f32);
        let channel = |base: f32| (base * 255.0 + noise).clamp(0.0, 255.0) as u8;
        Rgb([
            channel(0.2 + 0.6 * u),
            channel(0.3 + 0.4 * (PI * v).sin()),
            channel(0.8 - 0.5 * u * v),
        ])
    });
    let mut bytes = Vec::new();
    // encoding an in-memory RGB image into a Vec cannot fail
    let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&image);
    bytes
}
