//! Probe files as a lab's image set has them: JPEG and PNG of any size, colour or greyscale, 8 or 16
//! bits; and every way such a file can be bad, each refused with an error naming it, a decompression
//! bomb before its pixels are allocated.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use lucid_probe::{DecodeLimits, Preprocessing, ProbeImageError, decode, prepare};
use lucid_testkit::fuzz::{Rng, damage};

/// A 40 × 24 image whose colour depends on the position, so crops and flips show.
fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
    })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encode");
    bytes
}

/// What `decode` says of `bytes` (the file `name`), which it must refuse.
fn refused(name: &str, bytes: &[u8]) -> ProbeImageError {
    decode(name, bytes, DecodeLimits::default()).expect_err(name)
}

#[test]
fn png_in_every_colour_form_decodes_to_the_same_rgb() {
    let rgb = gradient(40, 24);
    let colour = DynamicImage::ImageRgb8(rgb.clone());
    let as_png = |name: &str, image: DynamicImage| {
        let bytes = encode(&image, ImageFormat::Png);
        decode(name, &bytes, DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert_eq!(as_png("rgb", colour.clone()), rgb);
    let rgba = DynamicImage::ImageRgba8(colour.to_rgba8());
    assert_eq!(as_png("rgba", rgba), rgb, "alpha dropped");
    let sixteen = DynamicImage::ImageRgb16(colour.to_rgb16());
    assert_eq!(as_png("16-bit", sixteen), rgb, "16-bit samples scaled to 8");
    let decoded = as_png("grey", DynamicImage::ImageLuma8(colour.to_luma8()));
    let level = colour.to_luma8().get_pixel(5, 7).0[0];
    assert_eq!(decoded.get_pixel(5, 7).0, [level; 3], "grey replicated");
}

#[test]
fn jpeg_decodes_close_to_what_was_encoded() {
    let rgb = gradient(64, 48);
    let bytes = encode(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Jpeg);
    let decoded = decode("photo.jpg", &bytes, DecodeLimits::default()).expect("jpeg");
    assert_eq!(decoded.dimensions(), (64, 48));
    let worst = rgb
        .pixels()
        .zip(decoded.pixels())
        .flat_map(|(a, b)| a.0.iter().zip(b.0).map(|(&x, y)| x.abs_diff(y)))
        .max()
        .unwrap_or(0);
    assert!(worst <= 24, "JPEG error {worst} levels");
}

#[test]
fn a_text_file_named_png_is_not_an_image() {
    let err = refused("notes.png", b"not an image at all\n");
    assert_eq!(
        err.to_string(),
        "probe image notes.png: not a JPEG or PNG file"
    );
    let err = refused("empty.jpg", b"");
    assert!(matches!(err, ProbeImageError::NotAnImage { .. }), "{err:?}");
}

#[test]
fn a_truncated_file_is_corrupt_naming_its_format() {
    let image = DynamicImage::ImageRgb8(gradient(64, 48));
    for (format, name) in [(ImageFormat::Jpeg, "JPEG"), (ImageFormat::Png, "PNG")] {
        let bytes = encode(&image, format);
        let cut = &bytes[..bytes.len() / 2];
        let err = refused("cut", cut);
        match &err {
            ProbeImageError::Corrupt { format, .. } => assert_eq!(*format, name),
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with(&format!("probe image cut: corrupt {name} data"))
        );
    }
}

/// A JPEG decoder fills what a cut file lacks with grey; a uniform image's file is mostly headers,
/// so every cut past them would otherwise decode.
#[test]
fn a_jpeg_cut_anywhere_after_its_headers_is_corrupt() {
    let red = RgbImage::from_pixel(300, 224, Rgb([255, 0, 0]));
    let bytes = encode(&DynamicImage::ImageRgb8(red), ImageFormat::Jpeg);
    for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 2] {
        let err = refused("red.jpg", &bytes[..cut]);
        assert!(
            matches!(err, ProbeImageError::Corrupt { .. }),
            "cut at {cut}: {err:?}"
        );
    }
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0; 16]);
    let decoded = decode("padded.jpg", &padded, DecodeLimits::default()).expect("bytes after EOI");
    assert_eq!(decoded.dimensions(), (300, 224));
}

/// Standard CRC-32 (IEEE), the checksum of a PNG chunk.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real PNG whose header claims `width` × `height` (with a valid CRC, so only the size is wrong).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = encode(&DynamicImage::ImageRgb8(gradient(8, 8)), ImageFormat::Png);
    // signature (8), IHDR length (4), "IHDR" (4), width, height, ...; CRC over type and data (17)
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A real JPEG whose frame header (SOF0) claims `width` × `height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = encode(&DynamicImage::ImageRgb8(gradient(8, 8)), ImageFormat::Jpeg);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("baseline frame header");
    // marker (2), length (2), precision (1), height (2), width (2)
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// 100,000² px of RGB would be 30 GB: the test process would die if the decoder allocated it.
#[test]
fn a_decompression_bomb_is_refused_before_its_pixels_are_allocated() {
    let err = refused("bomb.png", &png_claiming(100_000, 100_000));
    assert_eq!(
        err.to_string(),
        "probe image bomb.png: 100000 x 100000 px exceeds the limit of 16384 px a side"
    );
    let err = refused("wide.png", &png_claiming(16_000, 16_000));
    assert!(
        err.to_string()
            .ends_with("exceeds the limit of 67108864 pixels"),
        "{err}"
    );
    let err = refused("bomb.jpg", &jpeg_claiming(65_000, 65_000));
    assert!(
        matches!(err, ProbeImageError::TooLarge { width: 65_000, .. }),
        "{err:?}"
    );
    // a header within the limits whose data is too short for it is corrupt, not allocated and read
    let err = refused("liar.png", &png_claiming(4_000, 4_000));
    assert!(matches!(err, ProbeImageError::Corrupt { .. }), "{err:?}");
}

#[test]
fn damaged_files_never_panic_the_decoder() {
    let image = DynamicImage::ImageRgb8(gradient(32, 32));
    let mut rng = Rng::new(0x9b0b_0001);
    let limits = DecodeLimits {
        max_side: 4096,
        max_pixels: 1 << 22,
    };
    let mut refused = 0;
    for format in [ImageFormat::Png, ImageFormat::Jpeg] {
        let original = encode(&image, format);
        for _ in 0..300 {
            let bytes = damage(&mut rng, &original, &[]);
            if let Err(err) = decode("damaged", &bytes, limits) {
                assert!(
                    err.to_string().starts_with("probe image damaged: "),
                    "{err}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 100, "only {refused} of 600 damaged files refused");
}

#[test]
fn preparing_takes_the_centre_square_at_the_network_side() {
    // 30 x 10 with a red centre square: the crop is exactly that square
    let image = RgbImage::from_fn(30, 10, |x, _| {
        if (10..20).contains(&x) {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let prepared = prepare(&image, Preprocessing::for_side(10));
    assert_eq!(prepared.values.len(), 3 * 100);
    assert!(
        prepared.values[..100].iter().all(|&v| v == 1.0),
        "red plane"
    );
    assert!(
        prepared.values[200..].iter().all(|&v| v == 0.0),
        "blue plane"
    );
    // resized to 224, a uniform colour stays that colour, channel-major
    let grey = RgbImage::from_pixel(500, 375, Rgb([51, 102, 204]));
    let prepared = prepare(&grey, Preprocessing::for_side(224));
    let plane = 224 * 224;
    for (c, level) in [51.0f32, 102.0, 204.0].into_iter().enumerate() {
        let values = &prepared.values[c * plane..(c + 1) * plane];
        assert!(
            values.iter().all(|&v| (v - level / 255.0).abs() < 1e-6),
            "channel {c}"
        );
    }
    // a tall image keeps its middle rows: the top row of the prepared square is row 10 of 5 x 25
    let tall = RgbImage::from_fn(5, 25, |_, y| Rgb([y as u8 * 10, 0, 0]));
    let prepared = prepare(&tall, Preprocessing::for_side(5));
    assert_eq!(prepared.values[0], 100.0 / 255.0);
    let recorded = serde_json::to_string(&Preprocessing::for_side(224)).expect("json");
    assert_eq!(
        recorded,
        r#"{"side":224,"crop":"centre_square","resize":"bilinear"}"#
    );
}

#[test]
fn a_preview_is_the_prepared_square_as_jpeg() {
    // 500 x 375: left half red, right half blue; the centred 375 square keeps both halves
    let photo = RgbImage::from_fn(500, 375, |x, _| {
        if x < 250 {
            Rgb([220, 30, 30])
        } else {
            Rgb([30, 30, 220])
        }
    });
    let png = encode(&DynamicImage::ImageRgb8(photo.clone()), ImageFormat::Png);
    let how = Preprocessing::for_side(64);
    let jpeg = lucid_probe::preview_jpeg("photo.png", &png, how, DecodeLimits::default())
        .expect("preview");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    let shown = decode("preview.jpg", &jpeg, DecodeLimits::default()).expect("decodes");
    assert_eq!(shown.dimensions(), (64, 64));
    let prepared = prepare(&photo, how);
    let plane = 64 * 64;
    // within JPEG's loss of the values the network was given
    let mut total = 0.0f32;
    for (i, pixel) in shown.pixels().enumerate() {
        for c in 0..3 {
            let given = prepared.values[c * plane + i] * 255.0;
            total += (f32::from(pixel.0[c]) - given).abs();
        }
    }
    let mean = total / (3 * plane) as f32;
    assert!(mean < 4.0, "mean difference {mean} levels");
    let (x, y) = (10, 32);
    assert!(shown.get_pixel(x, y).0[0] > 150, "left is red");
    assert!(shown.get_pixel(63 - x, y).0[2] > 150, "right is blue");
    // a file that is not an image is the decoder's error, naming it
    let err =
        lucid_probe::preview_jpeg("notes.png", b"hello", how, DecodeLimits::default()).unwrap_err();
    assert_eq!(
        err,
        ProbeImageError::NotAnImage {
            name: "notes.png".into()
        }
    );
}
