//! Product photos for the demo catalog, drawn so that the attributes are visible: the silhouette
//! follows the article type (and sleeves and collar for tops), the fill is the base colour, the
//! pattern is drawn in a contrasting colour, and the material adds its texture (knit ribs, denim
//! twill, metal sheen, …).

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

use super::catalog::{Product, Shape};
use crate::error::{Result, VitrineError};

/// Width of a demo photo, in pixels.
pub const WIDTH: u32 = 120;
/// Height of a demo photo, in pixels.
pub const HEIGHT: u32 = 160;
const BACKGROUND: [f32; 3] = [238.0, 238.0, 236.0];

/// Draws `product` and encodes it as a JPEG.
pub fn render_jpeg(product: &Product) -> Result<Vec<u8>> {
    let image = render(product);
    let mut bytes = Vec::with_capacity(8 * 1024);
    JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&image)
        .map_err(|e| {
            VitrineError::Plan(format!("encoding the image of product {}: {e}", product.id))
        })?;
    Ok(bytes)
}

/// Draws `product`.
pub fn render(product: &Product) -> RgbImage {
    let (_, rgb) = product.colour();
    let base = rgb.map(f32::from);
    let contrast = contrast_of(base);
    let truth = &product.truth;
    let shape = product.article_type().shape;
    RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let (u, v) = (x as f32 / WIDTH as f32, y as f32 / HEIGHT as f32);
        let Some(part) = inside(
            shape,
            truth.sleeve,
            truth.collar,
            product.article_type().name,
            u,
            v,
        ) else {
            return Rgb(BACKGROUND.map(|c| c as u8));
        };
        let share = if part == Part::Trim {
            1.0
        } else {
            pattern_share(truth.pattern, x, y)
        };
        let mut colour = [0, 1, 2].map(|i| base[i] + share * (contrast[i] - base[i]));
        colour = shaded(colour, texture(truth.material, x, y, u, v));
        Rgb(colour.map(|c| c as u8))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Body,
    /// Collars, dials, soles: drawn in the contrasting colour.
    Trim,
}

/// `colour` under a material's `shade` (1 leaves it as it is). The shading is added rather than
/// multiplied, on colours kept a little off black and white, so that a weave shows on a black
/// garment as it does on a white one.
fn shaded(colour: [f32; 3], shade: f32) -> [f32; 3] {
    colour.map(|c| (35.0 + c * 0.75 + 204.0 * (shade - 1.0)).clamp(0.0, 255.0))
}

fn contrast_of(rgb: [f32; 3]) -> [f32; 3] {
    let luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    if luminance > 140.0 {
        [30.0, 30.0, 40.0]
    } else {
        [240.0, 240.0, 235.0]
    }
}

fn between(x: f32, lo: f32, hi: f32) -> bool {
    x >= lo && x <= hi
}

fn in_circle(u: f32, v: f32, cu: f32, cv: f32, r: f32) -> bool {
    let (du, dv) = (u - cu, (v - cv) * HEIGHT as f32 / WIDTH as f32);
    du * du + dv * dv <= r * r
}

fn inside(shape: Shape, sleeve: &str, collar: &str, article: &str, u: f32, v: f32) -> Option<Part> {
    let body = |b: bool| if b { Some(Part::Body) } else { None };
    match shape {
        Shape::Top => {
            let neck_cut = match collar {
                "v-neck" => {
                    v < 0.2 + 0.12 * (1.0 - (u - 0.5).abs() / 0.08) && (u - 0.5).abs() < 0.08
                }
                "crew neck" | "scoop neck" => in_circle(
                    u,
                    v,
                    0.5,
                    0.18,
                    if collar == "crew neck" { 0.07 } else { 0.1 },
                ),
                _ => false,
            };
            if collar == "hooded" && in_circle(u, v, 0.5, 0.16, 0.11) && v < 0.22 {
                return Some(Part::Body);
            }
            if collar == "collar" && between(v, 0.17, 0.24) && between((u - 0.5).abs(), 0.01, 0.1) {
                return Some(Part::Trim);
            }
            if neck_cut {
                return None;
            }
            let torso_bottom = if article == "Kurtas" || article == "Tunics" || article == "Kurtis"
            {
                0.95
            } else {
                0.85
            };
            let torso = between(u, 0.3, 0.7) && between(v, 0.18, torso_bottom);
            // Arms hang beside the torso with a gap below the shoulder, so their length shows.
            let arm = |top: f32, bottom: f32| {
                let shoulder = between(v, top, top + 0.05) && between(u, 0.14, 0.86);
                shoulder
                    || ((between(u, 0.14, 0.28) || between(u, 0.72, 0.86))
                        && between(v, top, bottom))
            };
            let sleeves = match sleeve {
                "short sleeve" => arm(0.18, 0.36),
                "long sleeve" => arm(0.18, 0.8),
                "three-quarter sleeve" => arm(0.18, 0.6),
                _ => false,
            };
            body(torso || sleeves)
        }
        Shape::Bottom => {
            let leg_end = match article {
                "Shorts" => 0.55,
                "Briefs" | "Trunk" => 0.32,
                "Capris" => 0.75,
                _ => 0.95,
            };
            if between(u, 0.28, 0.72) && between(v, 0.08, 0.16) {
                return Some(Part::Trim);
            }
            let leg =
                between(v, 0.16, leg_end) && (between(u, 0.28, 0.485) || between(u, 0.515, 0.72));
            let seat = between(v, 0.16, 0.3) && between(u, 0.28, 0.72);
            body(leg || seat)
        }
        Shape::Dress => {
            let top = if article == "Skirts" { 0.3 } else { 0.12 };
            let half_width = 0.12 + 0.26 * ((v - top) / (0.92 - top)).max(0.0);
            body(between(v, top, 0.92) && (u - 0.5).abs() <= half_width)
        }
        Shape::Shoe => {
            if between(u, 0.12, 0.88) && between(v, 0.66, 0.72) {
                return Some(Part::Trim);
            }
            let upper = between(u, 0.12, 0.88)
                && between(v, 0.45, 0.66)
                && (v > 0.45 + 0.18 * (1.0 - (u - 0.12) / 0.4).max(0.0) || u > 0.52);
            let heel = article == "Heels" && between(u, 0.75, 0.82) && between(v, 0.72, 0.82);
            body(upper || heel)
        }
        Shape::Watch => {
            if in_circle(u, v, 0.5, 0.5, 0.14) {
                return Some(Part::Trim);
            }
            body(
                in_circle(u, v, 0.5, 0.5, 0.2)
                    || (between(u, 0.41, 0.59) && between(v, 0.08, 0.92)),
            )
        }
        Shape::Bag => {
            let handle =
                in_circle(u, v, 0.5, 0.36, 0.2) && !in_circle(u, v, 0.5, 0.36, 0.15) && v < 0.36;
            body(handle || (between(u, 0.18, 0.82) && between(v, 0.36, 0.85)))
        }
        Shape::Strip => body(((u - v * 0.75) - 0.12).abs() < 0.1),
        Shape::Small => body(in_circle(u, v, 0.5, 0.5, 0.22)),
    }
}

/// How much of the contrasting colour the pattern puts at (`x`, `y`): 1 on the motif, 0 off it.
/// Motifs are 8 pixels or more across, so that they survive the resize to a small model's frame
/// (a 96-pixel frame shrinks a 160-pixel photo to 0.6 of its size); "no clear pattern" is a faint,
/// soft mottle.
fn pattern_share(pattern: &str, x: u32, y: u32) -> f32 {
    let on = |motif: bool| if motif { 1.0 } else { 0.0 };
    match pattern {
        "striped" => on((y / 8).is_multiple_of(2)),
        "checkered" => on((x / 10 + y / 10).is_multiple_of(2)),
        "polka dots" => {
            // Rows of dots, every other row shifted by half a period.
            let shift = if (y / 20).is_multiple_of(2) { 0 } else { 10 };
            let (dx, dy) = (((x + shift) % 20) as i32 - 10, (y % 20) as i32 - 10);
            on(dx * dx + dy * dy <= 25)
        }
        "floral print" => {
            // Five-petalled flowers 16 pixels across.
            let (cx, cy) = ((x % 24) as f32 - 12.0, (y % 24) as f32 - 12.0);
            let r = (cx * cx + cy * cy).sqrt();
            let petal = (5.0 * cy.atan2(cx)).cos();
            on(r < 3.0 + 5.0 * petal.max(0.0))
        }
        "geometric" => {
            on(((x + y) / 12).is_multiple_of(2) && ((x + 240 - y) / 12).is_multiple_of(2))
        }
        "abstract print" => {
            let (fx, fy) = (x as f32 * 0.13, y as f32 * 0.11);
            on((fx.sin() * fy.cos() + (fx * 0.5 + fy * 0.7).sin()) > 0.9)
        }
        "no clear pattern" => 0.35 * smooth_noise(x, y, 14),
        _ => 0.0,
    }
}

/// Value noise in 0..1, interpolated between lattice points `cell` pixels apart.
fn smooth_noise(x: u32, y: u32, cell: u32) -> f32 {
    let (cx, cy) = (x / cell, y / cell);
    let (fx, fy) = (
        (x % cell) as f32 / cell as f32,
        (y % cell) as f32 / cell as f32,
    );
    let top = noise(cx, cy) * (1.0 - fx) + noise(cx + 1, cy) * fx;
    let bottom = noise(cx, cy + 1) * (1.0 - fx) + noise(cx + 1, cy + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

fn noise(x: u32, y: u32) -> f32 {
    let mut h = x.wrapping_mul(374_761_393) ^ y.wrapping_mul(668_265_263);
    h = (h ^ (h >> 13)).wrapping_mul(1_274_126_177);
    (h & 0xffff) as f32 / 65535.0
}

/// The material's shading of the pixel at (`x`, `y`), (`u`, `v`) across the photo: weaves and
/// grains a few pixels wide and strong enough to survive the resize to a small model's frame
/// (a 96-pixel frame keeps a 6-pixel rib) and JPEG.
fn texture(material: &str, x: u32, y: u32, u: f32, v: f32) -> f32 {
    match material {
        // Vertical ribs.
        "knit fabric" => {
            if x % 6 < 3 {
                0.8
            } else {
                1.06
            }
        }
        // Diagonal twill.
        "denim" => {
            if (x + y) % 10 < 5 {
                0.76
            } else {
                1.06
            }
        }
        // Basket weave: a checkerboard of 5-pixel squares.
        "woven fabric" => {
            if (x / 5 + y / 5).is_multiple_of(2) {
                0.78
            } else {
                1.06
            }
        }
        // Grain: blotches 5 pixels across, darker towards the bottom.
        "leather" => 0.72 + 0.4 * noise(x / 5, y / 5) + 0.1 * (1.0 - v),
        // A bright vertical sheen.
        "metal" => 0.75 + 0.55 * (1.0 - ((u - 0.42) * 5.0).abs().min(1.0)),
        // A coarse grid of 3-pixel threads.
        "canvas" if x % 10 < 3 || y % 10 < 3 => 0.8,
        "canvas" => 1.02,
        // A glossy sheen: a soft bright band every 24 pixels down the item.
        "synthetic" => 0.88 + 0.4 * (-(((y % 24) as f32 - 12.0) / 3.0).powi(2)).exp(),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::catalog::product;
    use rand::SeedableRng;

    #[test]
    fn images_decode_at_their_size_and_show_the_base_colour() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for i in 0..20 {
            let p = product(&mut rng, i);
            let jpeg = render_jpeg(&p).unwrap();
            let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
            assert_eq!(decoded.dimensions(), (WIDTH, HEIGHT));
            let raw = render(&p);
            let non_background = raw
                .pixels()
                .filter(|px| px.0 != BACKGROUND.map(|c| c as u8))
                .count();
            assert!(
                non_background > 200,
                "product {} ({}) drew {non_background} pixels",
                p.id,
                p.article_type().name
            );
        }
    }

    #[test]
    fn stripes_alternate_bands_and_unclear_patterns_are_faint() {
        assert_eq!(pattern_share("striped", 0, 0), 1.0);
        assert_eq!(pattern_share("striped", 0, 8), 0.0);
        assert_eq!(pattern_share("solid color", 3, 3), 0.0);
        let faint: Vec<f32> = (0..40)
            .map(|i| pattern_share("no clear pattern", i * 3, i * 5))
            .collect();
        assert!(faint.iter().all(|&s| (0.0..=0.35).contains(&s)));
        assert!(faint.iter().any(|&s| s > 0.05), "{faint:?}");
    }
}
