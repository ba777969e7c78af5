//! Image resizing that gives Pillow's pixels.
//!
//! Hugging Face's image processors resize with Pillow (`Image.resize`), and the embeddings a
//! model was validated with come from those pixels. The `image` crate's filters are close but not
//! equal (different kernel windows and float rounding), so this module follows Pillow's
//! `Resample.c` instead: separable convolution, horizontal pass first, coefficients normalised to
//! 22-bit fixed point, sums in 32-bit integers, each pass rounded and clamped to 8 bits. The
//! result is byte-identical to Pillow's for the filters here.

use image::RgbImage;

use crate::cpu_ops::widest_simd;

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

/// Rows the horizontal pass transposes at a time: 48 values a column, three AVX-512 registers
/// of sums.
const BLOCK_ROWS: usize = 16;

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

fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `image` to `width` × `height` as Pillow's `Image.resize(…, resample=filter)` does.
///
/// Pillow sums in 32-bit integers (its coefficients are scaled so that no sum of 8-bit values
/// overflows), and so does this: each pass adds whole rows of values, weighted, to a row of
/// sums, a loop compiled for the widest SIMD the processor has (the horizontal pass on blocks
/// of rows transposed).
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    if (in_w, in_h) == (width, height) {
        return image.clone();
    }
    let horizontal = Coefficients::new(in_w as usize, width as usize, filter);
    let vertical = Coefficients::new(in_h as usize, height as usize, filter);

    // Horizontal pass, over the rows the vertical pass will read.
    let first_row = vertical.bounds.first().map_or(0, |b| b.0);
    let last_row = vertical.bounds.last().map_or(0, |b| b.0 + b.1);
    let temp = if in_w == width {
        image.clone()
    } else {
        let in_stride = in_w as usize * 3;
        let rows = &image.as_raw()[first_row * in_stride..last_row * in_stride];
        let out = resize_across(rows, in_w as usize, width as usize, &horizontal);
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
    let mut sums = vec![0i32; stride];
    for (yy, dst_row) in out.chunks_exact_mut(stride).enumerate() {
        let (min, weights) = vertical.of(yy);
        let first = (min - row_offset) * stride;
        let window = &src[first..first + weights.len() * stride];
        weighted_rows(window, weights, &mut sums, dst_row);
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized for the image")
}

/// Rows of RGB pixels `in_w` wide resampled across to `width`, in blocks of [`BLOCK_ROWS`] rows:
/// each block's pixels transposed into columns (a column holds the block's rows, three values
/// a row), so that each output column is the weighted sum of a window of whole input columns,
/// the vertical pass's SIMD loop, and then transposed back.
fn resize_across(rows: &[u8], in_w: usize, width: usize, coefficients: &Coefficients) -> Vec<u8> {
    let (in_stride, out_stride) = (in_w * 3, width * 3);
    let mut out = vec![0u8; rows.len() / in_stride * out_stride];
    let mut columns = vec![0u8; in_w * BLOCK_ROWS * 3];
    let mut resized = vec![0u8; width * BLOCK_ROWS * 3];
    let mut sums = [0i32; BLOCK_ROWS * 3];
    for (block, out_block) in rows
        .chunks(in_stride * BLOCK_ROWS)
        .zip(out.chunks_mut(out_stride * BLOCK_ROWS))
    {
        let column = block.len() / in_stride * 3;
        for (y, row) in block.chunks_exact(in_stride).enumerate() {
            for (x, pixel) in row.chunks_exact(3).enumerate() {
                columns[x * column + y * 3..][..3].copy_from_slice(pixel);
            }
        }
        let sums = &mut sums[..column];
        for (xx, dst) in resized[..width * column]
            .chunks_exact_mut(column)
            .enumerate()
        {
            let (min, weights) = coefficients.of(xx);
            let window = &columns[min * column..(min + weights.len()) * column];
            weighted_rows(window, weights, sums, dst);
        }
        for (xx, dst) in resized[..width * column].chunks_exact(column).enumerate() {
            for (y, pixel) in dst.chunks_exact(3).enumerate() {
                out_block[y * out_stride + xx * 3..][..3].copy_from_slice(pixel);
            }
        }
    }
    out
}

/// `dst` = the rows of `window` (each `dst.len()` values) weighted by `weights` and summed, in
/// `sums`.
fn weighted_rows(window: &[u8], weights: &[i32], sums: &mut [i32], dst: &mut [u8]) {
    const HALF: i32 = 1 << (PRECISION_BITS - 1);
    widest_simd(
        #[inline(always)]
        || {
            sums.fill(HALF);
            for (row, &w) in window.chunks_exact(dst.len()).zip(weights) {
                for (sum, &p) in sums.iter_mut().zip(row) {
                    *sum += i32::from(p) * w;
                }
            }
            for (d, &sum) in dst.iter_mut().zip(sums.iter()) {
                *d = clip8(sum);
            }
        },
    )
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

    /// Pillow's two passes written plainly, in 64-bit sums: what the fast passes must equal.
    fn plain_resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
        let (in_w, in_h) = image.dimensions();
        let horizontal = Coefficients::new(in_w as usize, width as usize, filter);
        let vertical = Coefficients::new(in_h as usize, height as usize, filter);
        let half = 1i64 << (PRECISION_BITS - 1);
        let clip = |sum: i64| (sum >> PRECISION_BITS).clamp(0, 255) as u8;
        let across = RgbImage::from_fn(width, in_h, |x, y| {
            let (min, weights) = horizontal.of(x as usize);
            image::Rgb(std::array::from_fn(|c| {
                let terms = weights.iter().enumerate().map(|(k, &w)| {
                    i64::from(image.get_pixel((min + k) as u32, y).0[c]) * i64::from(w)
                });
                clip(half + terms.sum::<i64>())
            }))
        });
        let across = if in_w == width { image.clone() } else { across };
        RgbImage::from_fn(width, height, |x, y| {
            if in_h == height {
                return *across.get_pixel(x, y);
            }
            let (min, weights) = vertical.of(y as usize);
            image::Rgb(std::array::from_fn(|c| {
                let terms = weights.iter().enumerate().map(|(k, &w)| {
                    i64::from(across.get_pixel(x, (min + k) as u32).0[c]) * i64::from(w)
                });
                clip(half + terms.sum::<i64>())
            }))
        })
    }

    #[test]
    fn the_fast_passes_give_the_plain_passes_bytes() {
        // Noise with hard edges: sums reach both ends of the clamp with every filter.
        let mut state = 0x2545_f491_u32;
        let image = RgbImage::from_fn(123, 77, |x, y| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 24) as u8;
            let edge = if (x / 9 + y / 7) % 2 == 0 { 255 } else { 0 };
            image::Rgb([noise, edge, noise.wrapping_add(edge)])
        });
        for filter in [Filter::Lanczos, Filter::Bilinear, Filter::Bicubic] {
            for (w, h) in [
                (224, 224),
                (50, 31),
                (123, 40),
                (61, 77),
                (300, 101),
                (1, 1),
            ] {
                assert_eq!(
                    resize(&image, w, h, filter),
                    plain_resize(&image, w, h, filter),
                    "{filter:?} to {w}×{h}"
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
