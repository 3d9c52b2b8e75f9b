//! PNG encoding of rendered images (CPU only, no libtorch).

/// Failure to encode an image.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The pixel buffer does not hold `width * height * 3` bytes.
    #[error("pixel buffer of {len} bytes does not match {width}x{height} RGB")]
    Size {
        /// Buffer length.
        len: usize,
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
    },
    /// The PNG encoder failed.
    #[error("png encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

/// Encodes interleaved 8-bit RGB as a PNG.
pub fn encode_png(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>, EncodeError> {
    if rgb.len() != width * height * 3 || width == 0 || height == 0 {
        return Err(EncodeError::Size {
            len: rgb.len(),
            width,
            height,
        });
    }
    let mut out = Vec::with_capacity(rgb.len() / 2 + 1024);
    {
        let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

/// Decodes an 8-bit RGB PNG into (width, height, interleaved RGB). Used to judge saved images.
pub fn decode_png(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), png::DecodingError> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    buf.truncate(info.buffer_size());
    Ok((info.width as usize, info.height as usize, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rgb() {
        let rgb: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let png = encode_png(&rgb, 4, 3).expect("encode");
        assert_eq!(&png[1..4], b"PNG");
        let (w, h, back) = decode_png(&png).expect("decode");
        assert_eq!((w, h), (4, 3));
        assert_eq!(back, rgb);
    }

    #[test]
    fn rejects_wrong_buffer_size() {
        let err = encode_png(&[0; 5], 2, 2).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("pixel buffer of 5 bytes does not match 2x2 RGB")
        );
    }
}
