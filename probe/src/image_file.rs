//! Probe files to pixels. A probe set is whatever a lab points the pass at, so every file is suspect:
//! its format is read from its bytes (not its name), its size from its header before any pixel is
//! allocated, and each way it can fail is its own error naming the file.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

/// Bounds on what one probe file may cost to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The largest width or height accepted, in pixels.
    pub max_side: u32,
    /// The most pixels accepted (width × height).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    /// 16,384 px a side and 64 megapixels: far above any dataset photograph (ecoset's are a few
    /// hundred pixels), far below what a crafted header can claim.
    fn default() -> Self {
        DecodeLimits {
            max_side: 16_384,
            max_pixels: 64 << 20,
        }
    }
}

/// Why a probe file gave no image. Each names the file as the probe set lists it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeImageError {
    /// The bytes are neither JPEG nor PNG (e.g. a text file named `.png`).
    #[error("probe image {name}: not a JPEG or PNG file")]
    NotAnImage {
        /// The file.
        name: String,
    },
    /// The header claims more pixels than [`DecodeLimits`] allow (a decompression bomb, or an
    /// image far larger than a probe set needs); refused before its pixels are allocated.
    #[error("probe image {name}: {width} x {height} px exceeds the limit of {limit}")]
    TooLarge {
        /// The file.
        name: String,
        /// The width its header claims.
        width: u32,
        /// The height its header claims.
        height: u32,
        /// The limit it exceeds, in words.
        limit: String,
    },
    /// The file starts as an image but its data is corrupt or cut short.
    #[error("probe image {name}: corrupt {format} data: {detail}")]
    Corrupt {
        /// The file.
        name: String,
        /// `JPEG` or `PNG`.
        format: &'static str,
        /// The decoder's account.
        detail: String,
    },
}

/// Decodes `bytes` (the probe file `name`) to 8-bit RGB; greyscale and alpha are converted (alpha
/// dropped), 16-bit samples scaled to 8 bits.
pub fn decode(name: &str, bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage, ProbeImageError> {
    let format = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => ImageFormat::Jpeg,
        Ok(ImageFormat::Png) => ImageFormat::Png,
        _ => {
            return Err(ProbeImageError::NotAnImage {
                name: name.to_owned(),
            });
        }
    };
    let corrupt = |e: image::ImageError| ProbeImageError::Corrupt {
        name: name.to_owned(),
        format: format_name(format),
        detail: e.to_string(),
    };
    if format == ImageFormat::Jpeg && !jpeg_complete(bytes) {
        return Err(ProbeImageError::Corrupt {
            name: name.to_owned(),
            format: "JPEG",
            detail: "its data stops before the end-of-image marker (truncated)".into(),
        });
    }
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(corrupt)?;
    if width == 0 || height == 0 {
        return Err(ProbeImageError::Corrupt {
            name: name.to_owned(),
            format: format_name(format),
            detail: format!("its header gives {width} x {height} px"),
        });
    }
    check_size(name, width, height, limits)?;
    let mut bounded = reader();
    bounded.limits(pixel_limits(width, height));
    let image = bounded.decode().map_err(corrupt)?;
    Ok(image.into_rgb8())
}

/// Whether a JPEG's end-of-image marker (`FF D9`) follows its first start-of-scan (`FF DA`). The
/// JPEG decoder fills rows missing from a cut file with grey rather than failing, so a truncated
/// file would pass as an image without this. Inside entropy-coded data every `FF` byte is followed by
/// `00` (or a restart marker), so `FF D9` there is the real marker; bytes after it are allowed.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let Some(scan) = bytes.windows(2).position(|w| w == [0xff, 0xda]) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xff, 0xd9])
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        _ => "JPEG",
    }
}

fn check_size(
    name: &str,
    width: u32,
    height: u32,
    limits: DecodeLimits,
) -> Result<(), ProbeImageError> {
    let too_large = |limit: String| ProbeImageError::TooLarge {
        name: name.to_owned(),
        width,
        height,
        limit,
    };
    if width.max(height) > limits.max_side {
        return Err(too_large(format!("{} px a side", limits.max_side)));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(too_large(format!("{} pixels", limits.max_pixels)));
    }
    Ok(())
}

/// The decoder's own bounds for an image already checked to be `width` × `height`: it may allocate
/// that image at 16-bit RGBA and its working buffers, nothing near what a lying stream could ask.
fn pixel_limits(width: u32, height: u32) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(u64::from(width) * u64::from(height) * 8 * 2 + (1 << 20));
    limits
}
