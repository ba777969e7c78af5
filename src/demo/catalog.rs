//! The demo catalog's generator: products with Kaggle "Fashion Product Images" columns, drawn from
//! the value sets of [`super::data`] with the real catalog's proportions, plus the visual truth
//! (material, pattern, …) that a vision-language model should recover from each image.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use std::sync::LazyLock;

use rand::Rng;

pub use super::data::{ArticleType, Shape, ARTICLE_TYPES, BASE_COLOURS};
use super::data::{BRANDS, GENDERS, SEASONS, USAGES, YEARS};
use Shape::*;

/// The extraction vocabulary (REFERENCE §4) the ground truth draws from: the one SmolVLM is asked
/// for.
pub use vitrine_udfs::smolvlm::extract as vocabulary;

/// One generated product with its visual truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Kaggle's `id`.
    pub id: i32,
    /// Index into [`ARTICLE_TYPES`].
    pub article: usize,
    /// Index into [`BASE_COLOURS`].
    pub colour: usize,
    /// `gender`.
    pub gender: &'static str,
    /// `season`.
    pub season: Option<&'static str>,
    /// `year`.
    pub year: i32,
    /// `usage`.
    pub usage: Option<&'static str>,
    /// `productDisplayName`.
    pub display_name: String,
    /// Price in rupees.
    pub price: f64,
    /// The truth a model should extract from the image.
    pub truth: VisualTruth,
}

impl Product {
    /// The product's article type.
    pub fn article_type(&self) -> &'static ArticleType {
        &ARTICLE_TYPES[self.article]
    }

    /// The product's colour name and RGB.
    pub fn colour(&self) -> (&'static str, [u8; 3]) {
        let (name, rgb, _) = BASE_COLOURS[self.colour];
        (name, rgb)
    }
}

/// What the image shows, in the extraction vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct VisualTruth {
    /// Material.
    pub material: &'static str,
    /// Pattern.
    pub pattern: &'static str,
    /// Formality.
    pub formality: &'static str,
    /// Collar type.
    pub collar: &'static str,
    /// Sleeve length.
    pub sleeve: &'static str,
    /// Fit.
    pub fit: &'static str,
    /// Style keywords (1–3).
    pub style_keywords: Vec<&'static str>,
    /// Visual details.
    pub details: Vec<&'static str>,
}

fn pick<T: Copy, R: Rng>(rng: &mut R, items: &[(T, u32)]) -> T {
    let index = WeightedIndex::new(items.iter().map(|(_, w)| *w))
        .expect("weights")
        .sample(rng);
    items[index].0
}

fn material_for<R: Rng>(rng: &mut R, article: &ArticleType) -> &'static str {
    let choices: &[(&'static str, u32)] = match article.name {
        "Watches" => &[("metal", 92), ("leather", 5), ("synthetic", 3)],
        "Tshirts" | "Sweatshirts" | "Sweaters" | "Innerwear Vests" | "Socks" | "Track Pants"
        | "Leggings" | "Briefs" | "Trunk" => &[("knit fabric", 90), ("synthetic", 10)],
        "Jeans" => &[("denim", 95), ("woven fabric", 5)],
        "Shirts" | "Kurtas" | "Kurtis" | "Tunics" | "Trousers" | "Dresses" | "Sarees"
        | "Skirts" | "Dupatta" | "Capris" | "Shorts" | "Tops" => &[
            ("woven fabric", 75),
            ("knit fabric", 15),
            ("denim", 5),
            ("synthetic", 5),
        ],
        "Jackets" => &[("denim", 30), ("leather", 30), ("synthetic", 40)],
        "Casual Shoes" => &[("canvas", 40), ("leather", 35), ("synthetic", 25)],
        "Sports Shoes" => &[("synthetic", 80), ("canvas", 10), ("leather", 10)],
        "Formal Shoes" | "Belts" | "Wallets" => &[("leather", 85), ("synthetic", 15)],
        "Heels" | "Flats" | "Sandals" | "Flip Flops" => &[("synthetic", 60), ("leather", 40)],
        "Handbags" | "Clutches" => &[("leather", 55), ("synthetic", 35), ("canvas", 10)],
        "Backpacks" => &[("canvas", 50), ("synthetic", 50)],
        "Earrings" | "Pendant" | "Ring" | "Necklace and Chains" | "Cufflinks" | "Sunglasses" => {
            &[("metal", 80), ("synthetic", 20)]
        }
        "Caps" | "Ties" | "Scarves" => {
            &[("woven fabric", 60), ("knit fabric", 20), ("synthetic", 20)]
        }
        _ => &[("synthetic", 50), ("unknown", 50)],
    };
    pick(rng, choices)
}

fn pattern_for<R: Rng>(rng: &mut R, article: &ArticleType) -> &'static str {
    match article.shape {
        Top | Bottom | Dress | Strip => pick(
            rng,
            &[
                ("solid color", 50),
                ("striped", 15),
                ("checkered", 10),
                ("polka dots", 6),
                ("floral print", 7),
                ("geometric", 6),
                ("abstract print", 6),
            ],
        ),
        Bag | Shoe => pick(
            rng,
            &[
                ("solid color", 80),
                ("striped", 5),
                ("geometric", 5),
                ("checkered", 5),
                ("abstract print", 5),
            ],
        ),
        Watch | Small => pick(rng, &[("solid color", 85), ("no clear pattern", 15)]),
    }
}

fn formality_for(usage: Option<&str>, article: &ArticleType) -> &'static str {
    match (usage, article.name) {
        (_, "Formal Shoes" | "Ties" | "Cufflinks") => "formal",
        (Some("Formal"), _) => "formal",
        (Some("Sports"), _) => "athletic",
        (Some("Smart Casual") | Some("Party"), _) => "business casual",
        (_, "Shirts" | "Trousers" | "Watches") => "business casual",
        _ => "casual",
    }
}

fn garment_parts<R: Rng>(
    rng: &mut R,
    article: &ArticleType,
) -> (&'static str, &'static str, &'static str) {
    match article.name {
        "Tshirts" => (
            pick(
                rng,
                &[
                    ("crew neck", 60),
                    ("v-neck", 20),
                    ("collar", 15),
                    ("hooded", 5),
                ],
            ),
            pick(
                rng,
                &[("short sleeve", 80), ("long sleeve", 15), ("sleeveless", 5)],
            ),
            pick(
                rng,
                &[
                    ("regular", 60),
                    ("fitted", 25),
                    ("loose", 10),
                    ("oversized", 5),
                ],
            ),
        ),
        "Shirts" => (
            "collar",
            pick(rng, &[("long sleeve", 70), ("short sleeve", 30)]),
            pick(rng, &[("regular", 60), ("fitted", 40)]),
        ),
        "Sweatshirts" | "Jackets" => (
            pick(rng, &[("hooded", 50), ("crew neck", 30), ("collar", 20)]),
            "long sleeve",
            pick(rng, &[("regular", 50), ("loose", 30), ("oversized", 20)]),
        ),
        "Sweaters" => (
            pick(
                rng,
                &[("crew neck", 50), ("v-neck", 30), ("turtleneck", 20)],
            ),
            "long sleeve",
            "regular",
        ),
        "Kurtas" | "Kurtis" | "Tunics" | "Tops" | "Night suits" => (
            pick(
                rng,
                &[
                    ("scoop neck", 30),
                    ("v-neck", 30),
                    ("collar", 20),
                    ("no collar", 20),
                ],
            ),
            pick(
                rng,
                &[
                    ("three-quarter sleeve", 40),
                    ("short sleeve", 30),
                    ("sleeveless", 15),
                    ("long sleeve", 15),
                ],
            ),
            pick(rng, &[("regular", 50), ("loose", 30), ("fitted", 20)]),
        ),
        "Dresses" | "Nightdress" => (
            pick(
                rng,
                &[("scoop neck", 40), ("v-neck", 40), ("no collar", 20)],
            ),
            pick(
                rng,
                &[
                    ("sleeveless", 50),
                    ("short sleeve", 40),
                    ("long sleeve", 10),
                ],
            ),
            pick(rng, &[("fitted", 50), ("loose", 30), ("regular", 20)]),
        ),
        "Innerwear Vests" | "Bra" | "Swimwear" => ("scoop neck", "sleeveless", "fitted"),
        _ => match article.shape {
            Bottom => (
                "not applicable",
                "not applicable",
                pick(rng, &[("regular", 50), ("fitted", 30), ("loose", 20)]),
            ),
            Dress => (
                "not applicable",
                "not applicable",
                pick(rng, &[("loose", 50), ("regular", 50)]),
            ),
            _ => ("not applicable", "not applicable", "cannot determine"),
        },
    }
}

fn style_for<R: Rng>(rng: &mut R, formality: &str) -> Vec<&'static str> {
    let pool: &[&'static str] = match formality {
        "formal" => &["professional", "elegant", "sophisticated", "minimalist"],
        "business casual" => &["modern", "contemporary", "professional", "simple"],
        "athletic" => &["athletic", "sporty", "modern", "urban"],
        _ => &[
            "simple",
            "modern",
            "streetwear",
            "urban",
            "vintage",
            "retro",
            "bohemian",
            "contemporary",
        ],
    };
    let n = rng.random_range(1..=3usize);
    let mut chosen: Vec<&'static str> = Vec::new();
    while chosen.len() < n {
        let k = pool[rng.random_range(0..pool.len())];
        if !chosen.contains(&k) {
            chosen.push(k);
        }
    }
    chosen
}

fn details_for<R: Rng>(rng: &mut R, article: &ArticleType, collar: &str) -> Vec<&'static str> {
    let mut details = Vec::new();
    let mut maybe = |detail: &'static str, p: f64, rng: &mut R| {
        if rng.random_bool(p) {
            details.push(detail);
        }
    };
    match article.shape {
        Top => {
            if collar == "collar" {
                maybe("has collar", 1.0, rng);
                maybe("has buttons", 0.9, rng);
            }
            if collar == "hooded" {
                maybe("has hood", 1.0, rng);
                maybe("has drawstrings", 0.6, rng);
            }
            maybe("has logo", 0.3, rng);
            maybe("has pockets", 0.2, rng);
        }
        Bottom => {
            maybe("has pockets", 0.8, rng);
            maybe("has belt", 0.1, rng);
            maybe("has drawstrings", 0.2, rng);
        }
        Shoe => {
            maybe(
                "has laces",
                if article.name.contains("Shoes") {
                    0.8
                } else {
                    0.0
                },
                rng,
            );
            maybe("has logo", 0.4, rng);
        }
        Bag => {
            maybe("has zipper", 0.8, rng);
            maybe("has pockets", 0.4, rng);
        }
        Watch => maybe("has logo", 0.5, rng),
        _ => {}
    }
    details
}

/// The singular of an article type, as display names use it ("Casual Shoe", "Watch", "Jeans").
fn singular(article: &str) -> &str {
    const PLURAL_ONLY: &[&str] = &[
        "Jeans",
        "Shorts",
        "Trousers",
        "Capris",
        "Leggings",
        "Briefs",
        "Sunglasses",
        "Track Pants",
        "Night suits",
        "Swimwear",
    ];
    if PLURAL_ONLY.contains(&article) || !article.ends_with('s') {
        article
    } else if article.ends_with("ches") || article.ends_with("sses") {
        &article[..article.len() - 2]
    } else {
        &article[..article.len() - 1]
    }
}

/// Draws product number `index` (ids start at 10000, as in the Kaggle catalog's range).
pub fn product<R: Rng>(rng: &mut R, index: usize) -> Product {
    static ARTICLE_WEIGHTS: LazyLock<WeightedIndex<u32>> = LazyLock::new(|| {
        WeightedIndex::new(ARTICLE_TYPES.iter().map(|a| a.count)).expect("weights")
    });
    static COLOUR_WEIGHTS: LazyLock<WeightedIndex<u32>> =
        LazyLock::new(|| WeightedIndex::new(BASE_COLOURS.iter().map(|c| c.2)).expect("weights"));
    let article_index = ARTICLE_WEIGHTS.sample(rng);
    let article = &ARTICLE_TYPES[article_index];
    let colour = COLOUR_WEIGHTS.sample(rng);
    let gender = match article.master {
        "Personal Care" => pick(rng, &[("Women", 70), ("Men", 20), ("Unisex", 10)]),
        _ if matches!(
            article.name,
            "Sarees"
                | "Kurtis"
                | "Dresses"
                | "Heels"
                | "Bra"
                | "Handbags"
                | "Clutches"
                | "Skirts"
                | "Leggings"
                | "Dupatta"
        ) =>
        {
            pick(rng, &[("Women", 95), ("Girls", 5)])
        }
        _ => pick(rng, GENDERS),
    };
    let season = pick(rng, SEASONS);
    let year = pick(rng, YEARS);
    let usage = pick(rng, USAGES);
    let material = material_for(rng, article);
    let pattern = pattern_for(rng, article);
    let formality = formality_for(usage, article);
    let (collar, sleeve, fit) = garment_parts(rng, article);
    let style_keywords = style_for(rng, formality);
    let details = details_for(rng, article, collar);
    let brand = BRANDS[rng.random_range(0..BRANDS.len())];
    let pattern_word = match pattern {
        "striped" => " Striped",
        "checkered" => " Checked",
        "polka dots" => " Polka Dot",
        "floral print" => " Floral",
        "geometric" | "abstract print" => " Printed",
        _ => "",
    };
    let singular = singular(article.name);
    let display_name = format!(
        "{brand} {gender} {}{pattern_word} {singular}",
        BASE_COLOURS[colour].0
    );
    let price = (article.price * rng.random_range(0.6..1.6f64))
        .round()
        .max(0.0);
    Product {
        id: 10000 + index as i32,
        article: article_index,
        colour,
        gender,
        season,
        year,
        usage,
        display_name,
        price,
        truth: VisualTruth {
            material,
            pattern,
            formality,
            collar,
            sleeve,
            fit,
            style_keywords,
            details,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn truth_uses_only_the_extraction_vocabulary() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for i in 0..2000 {
            let p = product(&mut rng, i);
            assert!(
                vocabulary::MATERIALS.contains(&p.truth.material),
                "{}",
                p.truth.material
            );
            assert!(vocabulary::PATTERNS.contains(&p.truth.pattern));
            assert!(vocabulary::FORMALITIES.contains(&p.truth.formality));
            assert!(vocabulary::COLLARS.contains(&p.truth.collar));
            assert!(vocabulary::SLEEVES.contains(&p.truth.sleeve));
            assert!(vocabulary::FITS.contains(&p.truth.fit));
            assert!((1..=3).contains(&p.truth.style_keywords.len()));
            assert!(p
                .truth
                .style_keywords
                .iter()
                .all(|k| vocabulary::STYLES.contains(k)));
            assert!(p
                .truth
                .details
                .iter()
                .all(|d| vocabulary::DETAILS.contains(d)));
        }
    }

    #[test]
    fn the_value_sets_have_kaggles_sizes() {
        assert_eq!(BASE_COLOURS.len(), 46);
        let masters: std::collections::BTreeSet<_> =
            ARTICLE_TYPES.iter().map(|a| a.master).collect();
        assert_eq!(masters.len(), 7);
    }
}
