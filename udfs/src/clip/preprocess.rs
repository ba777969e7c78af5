//! CLIP's image preprocessing, step for step as transformers' `CLIPImageProcessor` (Pillow
//! backend): resize the shorter side (Pillow bicubic), crop the centre, rescale by 1/255 in
//! float64 then float32, normalise in float32.

use image::RgbImage;

use super::config::{ProcessorConfig, SizeSpec};
use crate::image::levels::Levels;
use crate::image::resample::{resize, Filter};
use crate::ModelError;

/// How an image is resized before cropping.
#[derive(Debug, Clone, Copy)]
enum Resize {
    ShortestEdge(u32),
    Exact { height: u32, width: u32 },
}

/// A configured image processor.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    resize: Option<Resize>,
    filter: Filter,
    crop: Option<(u32, u32)>,
    levels: Levels,
}

impl ImageProcessor {
    /// Checks `config` and keeps what preprocessing needs.
    pub fn new(config: &ProcessorConfig) -> Result<Self, ModelError> {
        let resize = match (config.do_resize, config.size) {
            (false, _) => None,
            (true, SizeSpec::Square(n)) => Some(Resize::ShortestEdge(n)),
            (
                true,
                SizeSpec::Dict {
                    shortest_edge: Some(n),
                    ..
                },
            ) => Some(Resize::ShortestEdge(n)),
            (
                true,
                SizeSpec::Dict {
                    height: Some(height),
                    width: Some(width),
                    ..
                },
            ) => Some(Resize::Exact { height, width }),
            (true, other) => {
                return Err(ModelError::Config(format!(
                    "preprocessor size {other:?} is not supported"
                )))
            }
        };
        let crop = match (config.do_center_crop, config.crop_size) {
            (false, _) => None,
            (true, SizeSpec::Square(n)) => Some((n, n)),
            (
                true,
                SizeSpec::Dict {
                    height: Some(h),
                    width: Some(w),
                    ..
                },
            ) => Some((h, w)),
            (true, other) => {
                return Err(ModelError::Config(format!(
                    "preprocessor crop_size {other:?} is not supported"
                )))
            }
        };
        let filter = Filter::from_pillow(config.resample).ok_or_else(|| {
            ModelError::Config(format!(
                "preprocessor resample = {} is not supported (1 = Lanczos, 2 = bilinear and 3 = bicubic are)",
                config.resample
            ))
        })?;
        Ok(Self {
            resize,
            filter,
            crop,
            levels: Levels::new(
                config.do_rescale.then_some(config.rescale_factor),
                config
                    .do_normalize
                    .then_some((config.image_mean, config.image_std)),
            ),
        })
    }

    /// The (height, width) of every processed image, when it does not depend on the input.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        match (self.crop, self.resize) {
            (Some(crop), _) => Some(crop),
            (None, Some(Resize::Exact { height, width })) => Some((height, width)),
            _ => None,
        }
    }

    /// The pixel values of `image`, channels first (3 × height × width).
    pub fn pixel_values(&self, image: &RgbImage) -> Vec<f32> {
        let resized;
        let mut image = image;
        if let Some(rule) = self.resize {
            let (width, height) = image.dimensions();
            let (new_height, new_width) = match rule {
                Resize::Exact { height, width } => (height, width),
                Resize::ShortestEdge(short) => {
                    // transformers: the long side becomes int(short · long / short_side).
                    let (short_side, long_side) = (width.min(height), width.max(height));
                    let long =
                        (f64::from(short) * f64::from(long_side) / f64::from(short_side)) as u32;
                    if width <= height {
                        (long, short)
                    } else {
                        (short, long)
                    }
                }
            };
            resized = resize(image, new_width, new_height, self.filter);
            image = &resized;
        }
        let (height, width) = self.crop.unwrap_or((image.height(), image.width()));
        let (in_w, in_h) = (image.width() as i64, image.height() as i64);
        // Centre crop; a smaller image is centred on zeros, as transformers pads it.
        let (top, left) = if in_h >= i64::from(height) && in_w >= i64::from(width) {
            (
                (in_h - i64::from(height)) / 2,
                (in_w - i64::from(width)) / 2,
            )
        } else {
            let pad_top = (i64::from(height) - in_h).max(0);
            let pad_left = (i64::from(width) - in_w).max(0);
            (
                (in_h - i64::from(height)).max(0) / 2 - (pad_top + 1) / 2,
                (in_w - i64::from(width)).max(0) / 2 - (pad_left + 1) / 2,
            )
        };
        let plane = (height * width) as usize;
        let mut out = vec![0f32; 3 * plane];
        let raw = image.as_raw();
        for y in 0..i64::from(height) {
            for x in 0..i64::from(width) {
                let (sy, sx) = (y + top, x + left);
                let pixel = if (0..in_h).contains(&sy) && (0..in_w).contains(&sx) {
                    let at = ((sy * in_w + sx) * 3) as usize;
                    [raw[at], raw[at + 1], raw[at + 2]]
                } else {
                    [0, 0, 0]
                };
                let at = (y as usize) * width as usize + x as usize;
                for (c, &level) in pixel.iter().enumerate() {
                    out[c * plane + at] = self.levels.value(c, level);
                }
            }
        }
        out
    }
}
