//! Decoding image bytes into 8-bit RGB, as Hugging Face's `convert_to_rgb` sees them.
//!
//! Grey images are replicated to three channels; images with transparency are composited onto
//! white with Pillow's integer arithmetic (`Image.alpha_composite`), as the processors do. The
//! header is read first, so an image that claims more pixels than allowed is refused before any
//! pixel memory is taken.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::ModelError;

/// The most pixels an image may have (a 100-megapixel photo is far beyond any catalogue's).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Why bytes are not an image this crate can use (the detail of [`ModelError::Image`]).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty file")]
    Empty,
    /// The bytes are not a known image format.
    #[error("not an image (unrecognised format)")]
    Unrecognised,
    /// The header claims an image with no pixels.
    #[error("image has no pixels ({width}×{height})")]
    NoPixels {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// The header claims more pixels than [`MAX_PIXELS`].
    #[error("image too large: {width}×{height} pixels (at most {MAX_PIXELS})")]
    TooLarge {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// The decoder failed (truncated or corrupt data).
    #[error("cannot decode image: {0}")]
    Corrupt(String),
}

/// Decodes `bytes` (JPEG, PNG or WebP) into RGB; the error is [`ModelError::Image`].
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, ModelError> {
    Ok(decode(bytes)?)
}

fn decode(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    match reader.format() {
        None => return Err(DecodeError::Unrecognised),
        // The JPEG decoder fills a cut-off file with grey rather than failing; Pillow refuses
        // it ("image file is truncated"), and so do we.
        Some(image::ImageFormat::Jpeg) if !ends_with_jpeg_eoi(bytes) => {
            return Err(DecodeError::Corrupt(
                "truncated JPEG (no end-of-image marker)".into(),
            ))
        }
        Some(_) => {}
    }
    let decoder = reader
        .into_decoder()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::NoPixels { width, height });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeError::TooLarge { width, height });
    }
    let image =
        DynamicImage::from_decoder(decoder).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    Ok(if image.color().has_alpha() {
        composite_on_white(&image)
    } else {
        image.into_rgb8()
    })
}

/// Whether an end-of-image marker (FF D9) is in the file's last 4 KiB (some writers append
/// padding after it). Inside entropy-coded data an FF byte is always stuffed, so the marker
/// cannot appear there by chance.
fn ends_with_jpeg_eoi(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Pillow's `alpha_composite(white, image)` followed by `convert("RGB")`.
fn composite_on_white(image: &DynamicImage) -> RgbImage {
    const BITS: u32 = 7;
    let rgba = image.to_rgba8();
    let shift_div_255 = |a: u32| ((a >> 8) + a) >> 8;
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        if a == 0 {
            return image::Rgb([255, 255, 255]);
        }
        // White, opaque destination: the blended alpha is 255·255 and the source weight a/255.
        let out_alpha = u32::from(a) * 255 + 255 * (255 - u32::from(a));
        let coef1 = u32::from(a) * 255 * 255 * (1 << BITS) / out_alpha;
        let coef2 = 255 * (1 << BITS) - coef1;
        let blend = |c: u8| {
            let t = u32::from(c) * coef1 + 255 * coef2;
            (shift_div_255(t + (0x80 << BITS)) >> BITS) as u8
        };
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(image: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn transparency_becomes_white_and_opaque_pixels_stay() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, image::Rgba([10, 20, 30, 0]));
        rgba.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        let rgb = decode_rgb(&png(DynamicImage::ImageRgba8(rgba))).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn bad_bytes_are_named() {
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(
            decode(b"hello, world"),
            Err(DecodeError::Unrecognised)
        ));
        let mut truncated = png(DynamicImage::new_rgb8(64, 64));
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(decode(&truncated), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn a_header_claiming_too_many_pixels_is_refused_before_decoding() {
        // A valid PNG header for 30000×30000 followed by nothing.
        let mut header = png(DynamicImage::new_rgb8(1, 1));
        header[16..20].copy_from_slice(&30000u32.to_be_bytes());
        header[20..24].copy_from_slice(&30000u32.to_be_bytes());
        let err = decode(&header).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    width: 30000,
                    height: 30000
                } | DecodeError::Corrupt(_)
            ),
            "{err}"
        );
    }
}
