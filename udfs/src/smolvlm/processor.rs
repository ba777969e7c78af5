//! SmolVLM's (Idefics3's) image processor, step for step as transformers'
//! `Idefics3ImageProcessor` (Pillow backend): resize so the longest edge is `size.longest_edge`
//! (small images are enlarged; Lanczos), round each side up to a multiple of the tile size
//! (`max_image_size.longest_edge`), cut the tiles row by row, add the whole image resized to one
//! tile (the global image), then rescale and normalise each frame. An image that already fits
//! one tile is that one frame.

use image::RgbImage;
use serde::Deserialize;

use crate::image::levels::Levels;
use crate::image::resample::{resize, Filter};
use crate::ModelError;

/// transformers' absolute bound on either side after the first resize.
const MAX_IMAGE_SIZE: u32 = 4096;

/// `{"longest_edge": n}`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LongestEdge {
    /// The length of the longest edge.
    pub longest_edge: u32,
}

/// An `Idefics3ImageProcessor`'s `preprocessor_config.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Idefics3ProcessorConfig {
    /// Resize first.
    pub do_resize: bool,
    /// The longest edge after the first resize (2048 for SmolVLM-256M/500M).
    pub size: LongestEdge,
    /// The tile side (512 for SmolVLM-256M/500M, 384 for SmolVLM-Instruct).
    pub max_image_size: LongestEdge,
    /// Cut into tiles plus a global image; otherwise one frame of the tile size.
    pub do_image_splitting: bool,
    /// Pillow's filter number (1 = Lanczos).
    pub resample: u32,
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// 1/255.
    pub rescale_factor: f64,
    /// Subtract the mean and divide by the standard deviation.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation.
    pub image_std: [f64; 3],
}

impl Default for Idefics3ProcessorConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: LongestEdge {
                longest_edge: 4 * 364,
            },
            max_image_size: LongestEdge { longest_edge: 364 },
            do_image_splitting: true,
            resample: 1,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }
}

/// One image, processed: its frames (tiles row by row, then the global image), each
/// 3 × tile × tile channels first, and the tile grid (0 × 0 when the image is one frame).
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    /// The frames' pixel values.
    pub frames: Vec<Vec<f32>>,
    /// Tile rows.
    pub rows: usize,
    /// Tile columns.
    pub cols: usize,
}

/// A configured Idefics3 image processor.
#[derive(Debug, Clone)]
pub struct Idefics3ImageProcessor {
    config: Idefics3ProcessorConfig,
    filter: Filter,
    levels: Levels,
}

/// transformers' `_resize_output_size_rescale_to_max_len`: the longest edge becomes `max_len`,
/// the other keeps the aspect ratio, rounded up to an even number.
fn rescale_to_max_len(height: u32, width: u32, max_len: u32) -> (u32, u32) {
    let aspect = f64::from(width) / f64::from(height);
    let (h, w) = if width >= height {
        let h = (f64::from(max_len) / aspect) as u32;
        (h + h % 2, max_len)
    } else {
        let w = (f64::from(max_len) * aspect) as u32;
        (max_len, w + w % 2)
    };
    (h.max(1), w.max(1))
}

/// transformers' `_resize_output_size_scale_below_upper_bound`.
fn scale_below(height: u32, width: u32, max_len: u32) -> (u32, u32) {
    let aspect = f64::from(width) / f64::from(height);
    let (mut h, mut w) = (height, width);
    if width >= height && width > max_len {
        w = max_len;
        h = (f64::from(w) / aspect) as u32;
    } else if height > width && height > max_len {
        h = max_len;
        w = (f64::from(h) * aspect) as u32;
    }
    (h.max(1), w.max(1))
}

/// transformers' `resize_for_vision_encoder`: both sides up to multiples of the tile.
fn round_up_to_tiles(height: u32, width: u32, tile: u32) -> (u32, u32) {
    let aspect = f64::from(width) / f64::from(height);
    let up = |x: u32| x.div_ceil(tile) * tile;
    if width >= height {
        let w = up(width);
        let h = up((f64::from(w) / aspect) as u32);
        (h, w)
    } else {
        let h = up(height);
        let w = up((f64::from(h) * aspect) as u32);
        (h, w)
    }
}

impl Idefics3ImageProcessor {
    /// Checks `config`.
    pub fn new(config: Idefics3ProcessorConfig) -> Result<Self, ModelError> {
        let filter = Filter::from_pillow(config.resample).ok_or_else(|| {
            ModelError::Config(format!(
                "preprocessor resample = {} is not supported (1 = Lanczos, 2 = bilinear, 3 = bicubic are)",
                config.resample
            ))
        })?;
        if config.max_image_size.longest_edge == 0 || config.size.longest_edge == 0 {
            return Err(ModelError::Config(
                "size and max_image_size must be positive".into(),
            ));
        }
        let levels = Levels::new(
            config.do_rescale.then_some(config.rescale_factor),
            config
                .do_normalize
                .then_some((config.image_mean, config.image_std)),
        );
        Ok(Self {
            config,
            filter,
            levels,
        })
    }

    /// A copy with another longest edge for the first resize (fewer tiles: faster, less detail).
    pub fn with_longest_edge(&self, longest_edge: u32) -> Self {
        let mut config = self.config.clone();
        config.size.longest_edge = longest_edge.max(1);
        Self {
            config,
            filter: self.filter,
            levels: self.levels.clone(),
        }
    }

    /// The tile side in pixels.
    pub fn tile(&self) -> u32 {
        self.config.max_image_size.longest_edge
    }

    /// The most frames one photo becomes: one when photos are not cut into tiles, else the
    /// tiles of a square photo at the first resize's longest edge, and the whole photo.
    pub fn most_frames(&self) -> usize {
        if !self.config.do_image_splitting {
            return 1;
        }
        let edge = match self.config.do_resize {
            true => self.config.size.longest_edge.min(MAX_IMAGE_SIZE),
            false => MAX_IMAGE_SIZE,
        };
        match edge.div_ceil(self.tile()) as usize {
            0 | 1 => 1,
            side => side * side + 1,
        }
    }

    fn resized(&self, image: &RgbImage, height: u32, width: u32) -> RgbImage {
        resize(image, width, height, self.filter)
    }

    fn pixel_values(&self, image: &RgbImage) -> Vec<f32> {
        self.levels.channels_first(image.as_raw())
    }

    /// Processes one decoded image.
    pub fn process(&self, image: &RgbImage) -> ProcessedImage {
        let tile = self.tile();
        let mut image = image.clone();
        if self.config.do_resize {
            let (width, height) = image.dimensions();
            let (h, w) = rescale_to_max_len(height, width, self.config.size.longest_edge);
            let (h, w) = scale_below(h, w, MAX_IMAGE_SIZE);
            image = self.resized(&image, h, w);
        }
        if !self.config.do_image_splitting {
            let frame = self.resized(&image, tile, tile);
            return ProcessedImage {
                frames: vec![self.pixel_values(&frame)],
                rows: 0,
                cols: 0,
            };
        }
        let (h, w) = round_up_to_tiles(image.height(), image.width(), tile);
        image = self.resized(&image, h, w);
        if h <= tile && w <= tile {
            return ProcessedImage {
                frames: vec![self.pixel_values(&image)],
                rows: 0,
                cols: 0,
            };
        }
        let (rows, cols) = ((h - tile) / tile + 1, (w - tile) / tile + 1);
        let mut frames = Vec::with_capacity((rows * cols + 1) as usize);
        for r in 0..rows {
            for c in 0..cols {
                let crop =
                    image::imageops::crop_imm(&image, c * tile, r * tile, tile, tile).to_image();
                frames.push(self.pixel_values(&crop));
            }
        }
        frames.push(self.pixel_values(&self.resized(&image, tile, tile)));
        ProcessedImage {
            frames,
            rows: rows as usize,
            cols: cols as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_transformers_rounding() {
        // 160 × 120 (w × h) to a longest edge of 96: width 96, height int(96 / 1.333) = 72.
        assert_eq!(rescale_to_max_len(120, 160, 96), (72, 96));
        // Odd heights are rounded up to even.
        assert_eq!(rescale_to_max_len(97, 31 * 4, 100), (78, 100));
        assert_eq!(round_up_to_tiles(72, 96, 32), (96, 96));
        assert_eq!(scale_below(5000, 100, 4096), (4096, 81));
    }

    #[test]
    fn no_photo_becomes_more_frames_than_the_most() {
        let processor = Idefics3ImageProcessor::new(Idefics3ProcessorConfig {
            size: LongestEdge { longest_edge: 96 },
            max_image_size: LongestEdge { longest_edge: 32 },
            ..Default::default()
        })
        .unwrap();
        // 96 px in tiles of 32: 3 × 3 tiles and the whole photo.
        assert_eq!(processor.most_frames(), 10);
        let frames = |w, h| processor.process(&RgbImage::new(w, h)).frames.len();
        assert_eq!(frames(300, 300), 10, "a square photo reaches the most");
        assert_eq!(
            frames(300, 120),
            7,
            "a wide one takes 3 × 2 tiles and the whole"
        );
        assert_eq!(
            frames(20, 20),
            10,
            "a small one is enlarged to the longest edge"
        );
        assert_eq!(processor.with_longest_edge(32).most_frames(), 1);
        let unsplit = Idefics3ImageProcessor::new(Idefics3ProcessorConfig {
            do_image_splitting: false,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(unsplit.most_frames(), 1);
        assert_eq!(unsplit.process(&RgbImage::new(900, 900)).frames.len(), 1);
    }
}
