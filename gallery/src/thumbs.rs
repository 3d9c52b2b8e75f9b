//! Pixels: PNG decoding to RGB, box-filter thumbnails, sprite sheets and PNG encoding.
//!
//! Everything here is pure computation on byte buffers; errors are plain strings that the caller wraps
//! with the key they belong to.

/// Colour behind transparent pixels, letterbox bars and empty sprite cells (the page background).
pub(crate) const BACKGROUND: [u8; 3] = [17, 17, 17];
/// Cell colour of a channel whose PNG does not exist.
pub(crate) const MISSING: [u8; 3] = [48, 52, 64];
/// Cell colour of a channel whose PNG could not be decoded.
pub(crate) const UNREADABLE: [u8; 3] = [96, 28, 32];

/// The most bytes a decoded image may take; larger PNGs count as unreadable instead of exhausting memory.
const DECODE_LIMIT_BYTES: usize = 256 << 20;

/// An 8-bit RGB image, rows top to bottom, no padding.
pub(crate) struct Rgb {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Decodes any PNG (grey, palette, 16-bit, with or without alpha) into 8-bit RGB, compositing alpha over
/// [`BACKGROUND`].
pub(crate) fn decode_png(bytes: &[u8]) -> Result<Rgb, String> {
    let mut decoder = png::Decoder::new_with_limits(
        bytes,
        png::Limits {
            bytes: DECODE_LIMIT_BYTES,
        },
    );
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    if info.bit_depth != png::BitDepth::Eight {
        return Err(format!("unexpected bit depth {:?}", info.bit_depth));
    }
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("palette was not expanded".into()),
    };
    let (width, height) = (info.width, info.height);
    let w = width as usize;
    let mut data = Vec::with_capacity(w * height as usize * 3);
    for row in buf.chunks(info.line_size).take(height as usize) {
        if row.len() < w * channels {
            return Err("truncated image data".into());
        }
        for px in row[..w * channels].chunks_exact(channels) {
            let (rgb, alpha) = match channels {
                1 => ([px[0]; 3], 255),
                2 => ([px[0]; 3], px[1]),
                3 => ([px[0], px[1], px[2]], 255),
                _ => ([px[0], px[1], px[2]], px[3]),
            };
            for (c, bg) in rgb.into_iter().zip(BACKGROUND) {
                data.push(blend(c, bg, alpha));
            }
        }
    }
    Ok(Rgb {
        width,
        height,
        data,
    })
}

fn blend(fg: u8, bg: u8, alpha: u8) -> u8 {
    let a = u32::from(alpha);
    ((u32::from(fg) * a + u32::from(bg) * (255 - a) + 127) / 255) as u8
}

/// A `size`×`size` thumbnail: the image scaled with a box filter to fit, centred, bars in [`BACKGROUND`].
pub(crate) fn thumbnail(img: &Rgb, size: u32) -> Vec<u8> {
    let (w, h) = (img.width.max(1), img.height.max(1));
    let (tw, th) = if w >= h {
        (size, scale_side(h, size, w))
    } else {
        (scale_side(w, size, h), size)
    };
    let small = box_resize(img, tw, th);
    let mut out = solid(size, size, BACKGROUND);
    paste(
        &mut out,
        size,
        &small,
        tw,
        th,
        (size - tw) / 2,
        (size - th) / 2,
    );
    out
}

/// `side * size / longest`, rounded, at least 1.
fn scale_side(side: u32, size: u32, longest: u32) -> u32 {
    let scaled = (u64::from(side) * u64::from(size) + u64::from(longest) / 2) / u64::from(longest);
    (scaled as u32).clamp(1, size)
}

/// Resizes with a box filter: each output pixel is the mean of the source pixels its box covers (at least
/// one, so upscaling degrades to nearest neighbour).
fn box_resize(img: &Rgb, tw: u32, th: u32) -> Vec<u8> {
    let spans = |src: u32, dst: u32| -> Vec<(usize, usize)> {
        (0..u64::from(dst))
            .map(|o| {
                let a = (o * u64::from(src) / u64::from(dst)) as usize;
                let b = ((o + 1) * u64::from(src) / u64::from(dst)) as usize;
                (a, b.max(a + 1).min(src as usize))
            })
            .collect()
    };
    let xs = spans(img.width, tw);
    let ys = spans(img.height, th);
    let stride = img.width as usize * 3;
    let mut out = Vec::with_capacity(tw as usize * th as usize * 3);
    for &(y0, y1) in &ys {
        for &(x0, x1) in &xs {
            let mut sum = [0u32; 3];
            for row in img.data[y0 * stride..y1 * stride].chunks_exact(stride) {
                for px in row[x0 * 3..x1 * 3].chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            out.extend(sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
    out
}

/// A `width`×`height` RGB buffer filled with `color`.
pub(crate) fn solid(width: u32, height: u32, color: [u8; 3]) -> Vec<u8> {
    color.repeat(width as usize * height as usize)
}

/// Copies the `sw`×`sh` RGB image `src` into `dst` (of row width `dw`) at (`x`, `y`).
pub(crate) fn paste(dst: &mut [u8], dw: u32, src: &[u8], sw: u32, sh: u32, x: u32, y: u32) {
    let (dw, sw) = (dw as usize * 3, sw as usize * 3);
    for (r, row) in src.chunks_exact(sw).take(sh as usize).enumerate() {
        let start = (y as usize + r) * dw + x as usize * 3;
        dst[start..start + sw].copy_from_slice(row);
    }
}

/// Encodes an RGB buffer as an 8-bit RGB PNG (public for tests elsewhere that need a valid image).
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Default);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(width: u32, height: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, width, height);
        e.set_color(color);
        e.set_depth(png::BitDepth::Eight);
        let mut w = e.write_header().unwrap();
        w.write_image_data(data).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn decodes_grey_and_alpha() {
        let grey = decode_png(&encode(2, 1, png::ColorType::Grayscale, &[0, 200])).unwrap();
        assert_eq!(grey.data, vec![0, 0, 0, 200, 200, 200]);
        let rgba = decode_png(&encode(
            2,
            1,
            png::ColorType::Rgba,
            &[255, 0, 0, 255, 255, 255, 255, 0],
        ))
        .unwrap();
        assert_eq!(&rgba.data[..3], &[255, 0, 0]);
        assert_eq!(&rgba.data[3..], &BACKGROUND);
        assert!(decode_png(b"not a png").is_err());
    }

    #[test]
    fn box_filter_averages_and_letterboxes() {
        // 4x2: left half black, right half white; to a 2-wide thumbnail of height 1, centred in 2x2
        let mut data = Vec::new();
        for _ in 0..2 {
            data.extend([0u8; 6]);
            data.extend([255u8; 6]);
        }
        let img = Rgb {
            width: 4,
            height: 2,
            data,
        };
        let t = thumbnail(&img, 2);
        assert_eq!(t.len(), 12);
        // the image takes row 0 (the offset rounds down), the letterbox bar row 1
        assert_eq!(&t[..6], &[0, 0, 0, 255, 255, 255]);
        assert_eq!(&t[6..], &[BACKGROUND, BACKGROUND].concat()[..]);
        // a 3x3 mean
        let img = Rgb {
            width: 3,
            height: 3,
            data: (0..9u8).flat_map(|v| [v * 10; 3]).collect(),
        };
        assert_eq!(thumbnail(&img, 1), vec![40, 40, 40]);
        // upscaling repeats pixels
        assert_eq!(thumbnail(&img, 6).len(), 6 * 6 * 3);
    }

    #[test]
    fn encode_round_trip() {
        let rgb = solid(3, 2, [1, 2, 3]);
        let png = encode_png(3, 2, &rgb).unwrap();
        let back = decode_png(&png).unwrap();
        assert_eq!((back.width, back.height), (3, 2));
        assert_eq!(back.data, rgb);
    }
}
