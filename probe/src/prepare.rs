//! A decoded probe image made into what a network takes: the largest centred square, resized to the
//! network's input side with a bilinear filter widened when shrinking (so a large photograph is
//! averaged, not aliased), as RGB values in [0, 1]. The network's own value range, channel count
//! (greyscale networks) and normalisation are applied by its description's input mapping, the same
//! code a render goes through, so probes and renders are seen alike.

use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::{Deserialize, Serialize};

/// How probe images were prepared, recorded in the run manifest so a result says what it was
/// computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// The side of the square the network saw, in pixels.
    pub side: u32,
    /// Always `"centre_square"`: the largest square at the image's centre.
    pub crop: Crop,
    /// Always `"bilinear"` (a triangle filter scaled to the reduction when shrinking).
    pub resize: Resize,
}

/// The crop rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    /// The largest square at the centre (torchvision's `CenterCrop(min(h, w))`).
    CentreSquare,
}

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Bilinear.
    Bilinear,
}

impl Preprocessing {
    /// The one preparation lucid-sweep applies, for a network whose input side is `side`.
    pub fn for_side(side: u32) -> Self {
        Preprocessing {
            side,
            crop: Crop::CentreSquare,
            resize: Resize::Bilinear,
        }
    }
}

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
    let (width, height) = image.dimensions();
    let square = width.min(height);
    let (left, top) = ((width - square) / 2, (height - square) / 2);
    let cropped = imageops::crop_imm(image, left, top, square, square).to_image();
    let resized = if square == how.side {
        cropped
    } else {
        imageops::resize(&cropped, how.side, how.side, FilterType::Triangle)
    };
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
