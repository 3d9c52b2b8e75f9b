//! A decoded probe image made into what a network takes: the largest centred square, resized to the
//! network's input side with a bilinear filter widened when shrinking (so a large photograph is
//! averaged, not aliased), as RGB values in [0, 1]. The network's own value range, channel count
//! (greyscale networks) and normalisation are applied by its description's input mapping, the same
//! code a render goes through, so probes and renders are seen alike.

use image::RgbImage;
use image::imageops::{self, FilterType};

pub use lucid_proto::probe::{Crop, Preprocessing, Resize};

/// An image ready for the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The square's side.
    pub side: u32,
    /// `[3, side, side]` values in [0, 1], channel-major (NCHW without the batch axis).
    pub values: Vec<f32>,
}

/// `image` prepared as `how` says.
pub fn prepare(image: &RgbImage, how: Preprocessing) -> Prepared {
    let resized = prepared_pixels(image, how);
    let plane = (how.side * how.side) as usize;
    let mut values = vec![0.0f32; 3 * plane];
    for (i, pixel) in resized.pixels().enumerate() {
        for (c, &level) in pixel.0.iter().enumerate() {
            values[c * plane + i] = f32::from(level) / 255.0;
        }
    }
    Prepared {
        side: how.side,
        values,
    }
}

/// The square `how` makes of `image`, as 8-bit pixels: what [`prepare`] scales to [0, 1], and what
/// the gallery shows as the image the network saw (its crops are in these pixels).
pub fn prepared_pixels(image: &RgbImage, how: Preprocessing) -> RgbImage {
    let (width, height) = image.dimensions();
    let square = width.min(height);
    let (left, top) = ((width - square) / 2, (height - square) / 2);
    let cropped = imageops::crop_imm(image, left, top, square, square).to_image();
    if square == how.side {
        cropped
    } else {
        imageops::resize(&cropped, how.side, how.side, FilterType::Triangle)
    }
}

/// JPEG quality of [`preview_jpeg`]: high enough that a receptive-field crop of a few pixels keeps
/// its colours, a 224 px image about 20 KB.
const PREVIEW_QUALITY: u8 = 90;

/// The probe file `name` decoded and prepared as `how` says, as JPEG bytes: the picture of an
/// example the gallery shows, pixel for pixel the square the network saw (up to JPEG's loss).
pub fn preview_jpeg(
    name: &str,
    bytes: &[u8],
    how: Preprocessing,
    limits: crate::DecodeLimits,
) -> Result<Vec<u8>, crate::ProbeImageError> {
    let image = crate::decode(name, bytes, limits)?;
    let square = prepared_pixels(&image, how);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, PREVIEW_QUALITY)
        .encode_image(&square)
        // encoding an in-memory RGB image into a Vec has no failure mode but a bug
        .map_err(|e| crate::ProbeImageError::Corrupt {
            name: name.to_owned(),
            format: "JPEG",
            detail: format!("re-encoding the prepared image failed: {e}"),
        })?;
    Ok(out)
}
