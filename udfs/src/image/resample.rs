//! Image resizing that gives Pillow's pixels.
//!
//! Hugging Face's image processors resize with Pillow (`Image.resize`), and the embeddings a
//! model was validated with come from those pixels. The `image` crate's filters are close but not
//! equal (different kernel windows and float rounding), so this module follows Pillow's
//! `Resample.c` instead: separable convolution, horizontal pass first, coefficients normalised to
//! 22-bit fixed point, each pass rounded and clamped to 8 bits. The result is byte-identical to
//! Pillow's for the filters here.

use image::RgbImage;

/// A resampling filter, numbered as Pillow numbers them (`PIL.Image.Resampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `LANCZOS` (1): the sinc windowed by a sinc three lobes wide.
    Lanczos,
    /// `BILINEAR` (2): the triangle filter.
    Bilinear,
    /// `BICUBIC` (3): Keys' cubic with a = −0.5.
    Bicubic,
}

impl Filter {
    /// The filter with Pillow's number, if this module has it.
    pub fn from_pillow(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Lanczos => 3.0,
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        };
        match self {
            Self::Lanczos if x < 3.0 => sinc(x) * sinc(x / 3.0),
            Self::Lanczos => 0.0,
            Self::Bilinear => (1.0 - x).max(0.0),
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point precision of the coefficients, as Pillow's `PRECISION_BITS` for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output pixel, the first input pixel, the number of inputs and their fixed-point
/// weights.
struct Coefficients {
    window: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter.support() * filter_scale;
        let window = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * window];
        let mut row = vec![0f64; window];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = max.saturating_sub(min);
            let mut total = 0.0;
            for (x, w) in row.iter_mut().enumerate().take(count) {
                *w = filter.weight((x as f64 + min as f64 - center + 0.5) / filter_scale);
                total += *w;
            }
            for (x, w) in row.iter().enumerate().take(count) {
                let w = if total != 0.0 { w / total } else { *w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                weights[xx * window + x] = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            bounds.push((min, count));
        }
        Self {
            window,
            bounds,
            weights,
        }
    }

    fn of(&self, out: usize) -> (usize, &[i32]) {
        let (min, count) = self.bounds[out];
        let start = out * self.window;
        (min, &self.weights[start..start + count])
    }
}

fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `image` to `width` × `height` as Pillow's `Image.resize(…, resample=filter)` does.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    if (in_w, in_h) == (width, height) {
        return image.clone();
    }
    let horizontal = Coefficients::new(in_w as usize, width as usize, filter);
    let vertical = Coefficients::new(in_h as usize, height as usize, filter);
    let half = 1i64 << (PRECISION_BITS - 1);

    // Horizontal pass, over the rows the vertical pass will read.
    let first_row = vertical.bounds.first().map_or(0, |b| b.0);
    let last_row = vertical.bounds.last().map_or(0, |b| b.0 + b.1);
    let temp = if in_w == width {
        image.clone()
    } else {
        let src = image.as_raw();
        let mut out = vec![0u8; width as usize * (last_row - first_row) * 3];
        for y in first_row..last_row {
            let src_row = &src[y * in_w as usize * 3..(y + 1) * in_w as usize * 3];
            let dst_row = &mut out[(y - first_row) * width as usize * 3..][..width as usize * 3];
            for xx in 0..width as usize {
                let (min, weights) = horizontal.of(xx);
                for c in 0..3 {
                    let mut sum = half;
                    for (k, w) in weights.iter().enumerate() {
                        sum += i64::from(src_row[(min + k) * 3 + c]) * i64::from(*w);
                    }
                    dst_row[xx * 3 + c] = clip8(sum);
                }
            }
        }
        RgbImage::from_raw(width, (last_row - first_row) as u32, out)
            .expect("buffer sized for the image")
    };
    let row_offset = if in_w == width { 0 } else { first_row };
    if in_h == height {
        return temp;
    }

    // Vertical pass.
    let src = temp.as_raw();
    let stride = width as usize * 3;
    let mut out = vec![0u8; stride * height as usize];
    for yy in 0..height as usize {
        let (min, weights) = vertical.of(yy);
        let dst_row = &mut out[yy * stride..(yy + 1) * stride];
        for (x, dst) in dst_row.iter_mut().enumerate() {
            let mut sum = half;
            for (k, w) in weights.iter().enumerate() {
                sum += i64::from(src[(min - row_offset + k) * stride + x]) * i64::from(*w);
            }
            *dst = clip8(sum);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized for the image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_each_output_pixel_sum_to_one() {
        for (from, to) in [(500, 224), (100, 224), (224, 224), (7, 3)] {
            let c = Coefficients::new(from, to, Filter::Bicubic);
            for out in 0..to {
                let (_, w) = c.of(out);
                let sum: i64 = w.iter().map(|&w| i64::from(w)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64,
                    "{from}->{to} at {out}: {sum}"
                );
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_and_sizes_are_honoured() {
        let image = RgbImage::from_pixel(97, 31, image::Rgb([200, 10, 77]));
        let out = resize(&image, 224, 71, Filter::Bicubic);
        assert_eq!(out.dimensions(), (224, 71));
        assert!(out.pixels().all(|p| p.0 == [200, 10, 77]));
    }
}
