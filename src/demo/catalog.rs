//! The demo catalog's products: Kaggle "Fashion Product Images" columns and value sets, drawn with
//! the real catalog's proportions, plus the visual truth (material, pattern, …) that a
//! vision-language model should recover from each image.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use std::sync::LazyLock;

use rand::Rng;

/// One article type: where it sits in the category tree, how common it is, and how it looks.
pub struct ArticleType {
    /// Kaggle's `articleType`.
    pub name: &'static str,
    /// Kaggle's `masterCategory`.
    pub master: &'static str,
    /// Kaggle's `subCategory`.
    pub sub: &'static str,
    /// Products of this type in the real 44K catalog: the sampling weight.
    pub count: u32,
    /// The silhouette drawn for it.
    pub shape: Shape,
    /// Typical price in rupees.
    pub price: f64,
}

/// Silhouettes the image generator can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A garment with a torso and sleeves.
    Top,
    /// Trousers, shorts, track pants.
    Bottom,
    /// Dresses, skirts, sarees.
    Dress,
    /// Shoes and sandals.
    Shoe,
    /// A round dial on a strap.
    Watch,
    /// Handbags, backpacks, wallets.
    Bag,
    /// Belts, ties, scarves.
    Strip,
    /// Small round things: jewellery, caps, cosmetics.
    Small,
}

use Shape::*;

/// Article types and their counts in the real catalog: 60 of its 143, the most common ones plus
/// the rare master categories (Free Items, Sporting Goods, Home), 95% of its products in all.
pub const ARTICLE_TYPES: &[ArticleType] = &[
    ArticleType {
        name: "Tshirts",
        master: "Apparel",
        sub: "Topwear",
        count: 7067,
        shape: Top,
        price: 799.0,
    },
    ArticleType {
        name: "Shirts",
        master: "Apparel",
        sub: "Topwear",
        count: 3217,
        shape: Top,
        price: 1299.0,
    },
    ArticleType {
        name: "Casual Shoes",
        master: "Footwear",
        sub: "Shoes",
        count: 2845,
        shape: Shoe,
        price: 2499.0,
    },
    ArticleType {
        name: "Watches",
        master: "Accessories",
        sub: "Watches",
        count: 2542,
        shape: Watch,
        price: 4999.0,
    },
    ArticleType {
        name: "Sports Shoes",
        master: "Footwear",
        sub: "Shoes",
        count: 2036,
        shape: Shoe,
        price: 3499.0,
    },
    ArticleType {
        name: "Kurtas",
        master: "Apparel",
        sub: "Topwear",
        count: 1844,
        shape: Top,
        price: 999.0,
    },
    ArticleType {
        name: "Tops",
        master: "Apparel",
        sub: "Topwear",
        count: 1762,
        shape: Top,
        price: 899.0,
    },
    ArticleType {
        name: "Handbags",
        master: "Accessories",
        sub: "Bags",
        count: 1759,
        shape: Bag,
        price: 1999.0,
    },
    ArticleType {
        name: "Heels",
        master: "Footwear",
        sub: "Shoes",
        count: 1323,
        shape: Shoe,
        price: 1799.0,
    },
    ArticleType {
        name: "Sunglasses",
        master: "Accessories",
        sub: "Eyewear",
        count: 1073,
        shape: Small,
        price: 1499.0,
    },
    ArticleType {
        name: "Wallets",
        master: "Accessories",
        sub: "Wallets",
        count: 936,
        shape: Bag,
        price: 799.0,
    },
    ArticleType {
        name: "Flip Flops",
        master: "Footwear",
        sub: "Flip Flops",
        count: 914,
        shape: Shoe,
        price: 399.0,
    },
    ArticleType {
        name: "Sandals",
        master: "Footwear",
        sub: "Sandal",
        count: 897,
        shape: Shoe,
        price: 999.0,
    },
    ArticleType {
        name: "Briefs",
        master: "Apparel",
        sub: "Innerwear",
        count: 849,
        shape: Bottom,
        price: 349.0,
    },
    ArticleType {
        name: "Belts",
        master: "Accessories",
        sub: "Belts",
        count: 813,
        shape: Strip,
        price: 699.0,
    },
    ArticleType {
        name: "Backpacks",
        master: "Accessories",
        sub: "Bags",
        count: 724,
        shape: Bag,
        price: 1599.0,
    },
    ArticleType {
        name: "Socks",
        master: "Accessories",
        sub: "Socks",
        count: 686,
        shape: Strip,
        price: 199.0,
    },
    ArticleType {
        name: "Formal Shoes",
        master: "Footwear",
        sub: "Shoes",
        count: 637,
        shape: Shoe,
        price: 2999.0,
    },
    ArticleType {
        name: "Perfume and Body Mist",
        master: "Personal Care",
        sub: "Fragrance",
        count: 614,
        shape: Small,
        price: 1299.0,
    },
    ArticleType {
        name: "Jeans",
        master: "Apparel",
        sub: "Bottomwear",
        count: 609,
        shape: Bottom,
        price: 1699.0,
    },
    ArticleType {
        name: "Shorts",
        master: "Apparel",
        sub: "Bottomwear",
        count: 547,
        shape: Bottom,
        price: 699.0,
    },
    ArticleType {
        name: "Trousers",
        master: "Apparel",
        sub: "Bottomwear",
        count: 530,
        shape: Bottom,
        price: 1499.0,
    },
    ArticleType {
        name: "Flats",
        master: "Footwear",
        sub: "Shoes",
        count: 500,
        shape: Shoe,
        price: 899.0,
    },
    ArticleType {
        name: "Bra",
        master: "Apparel",
        sub: "Innerwear",
        count: 477,
        shape: Top,
        price: 499.0,
    },
    ArticleType {
        name: "Dresses",
        master: "Apparel",
        sub: "Dress",
        count: 464,
        shape: Dress,
        price: 1599.0,
    },
    ArticleType {
        name: "Sarees",
        master: "Apparel",
        sub: "Saree",
        count: 427,
        shape: Dress,
        price: 2499.0,
    },
    ArticleType {
        name: "Earrings",
        master: "Accessories",
        sub: "Jewellery",
        count: 416,
        shape: Small,
        price: 499.0,
    },
    ArticleType {
        name: "Deodorant",
        master: "Personal Care",
        sub: "Fragrance",
        count: 347,
        shape: Small,
        price: 249.0,
    },
    ArticleType {
        name: "Nail Polish",
        master: "Personal Care",
        sub: "Nails",
        count: 329,
        shape: Small,
        price: 149.0,
    },
    ArticleType {
        name: "Lipstick",
        master: "Personal Care",
        sub: "Lips",
        count: 315,
        shape: Small,
        price: 399.0,
    },
    ArticleType {
        name: "Track Pants",
        master: "Apparel",
        sub: "Bottomwear",
        count: 304,
        shape: Bottom,
        price: 999.0,
    },
    ArticleType {
        name: "Clutches",
        master: "Accessories",
        sub: "Bags",
        count: 290,
        shape: Bag,
        price: 1199.0,
    },
    ArticleType {
        name: "Sweatshirts",
        master: "Apparel",
        sub: "Topwear",
        count: 285,
        shape: Top,
        price: 1499.0,
    },
    ArticleType {
        name: "Caps",
        master: "Accessories",
        sub: "Headwear",
        count: 283,
        shape: Small,
        price: 399.0,
    },
    ArticleType {
        name: "Sweaters",
        master: "Apparel",
        sub: "Topwear",
        count: 277,
        shape: Top,
        price: 1799.0,
    },
    ArticleType {
        name: "Ties",
        master: "Accessories",
        sub: "Ties",
        count: 258,
        shape: Strip,
        price: 599.0,
    },
    ArticleType {
        name: "Jackets",
        master: "Apparel",
        sub: "Topwear",
        count: 258,
        shape: Top,
        price: 2999.0,
    },
    ArticleType {
        name: "Innerwear Vests",
        master: "Apparel",
        sub: "Innerwear",
        count: 242,
        shape: Top,
        price: 299.0,
    },
    ArticleType {
        name: "Kurtis",
        master: "Apparel",
        sub: "Topwear",
        count: 234,
        shape: Top,
        price: 799.0,
    },
    ArticleType {
        name: "Tunics",
        master: "Apparel",
        sub: "Topwear",
        count: 229,
        shape: Top,
        price: 899.0,
    },
    ArticleType {
        name: "Nightdress",
        master: "Apparel",
        sub: "Loungewear and Nightwear",
        count: 189,
        shape: Dress,
        price: 799.0,
    },
    ArticleType {
        name: "Leggings",
        master: "Apparel",
        sub: "Bottomwear",
        count: 177,
        shape: Bottom,
        price: 499.0,
    },
    ArticleType {
        name: "Pendant",
        master: "Accessories",
        sub: "Jewellery",
        count: 176,
        shape: Small,
        price: 899.0,
    },
    ArticleType {
        name: "Capris",
        master: "Apparel",
        sub: "Bottomwear",
        count: 175,
        shape: Bottom,
        price: 699.0,
    },
    ArticleType {
        name: "Necklace and Chains",
        master: "Accessories",
        sub: "Jewellery",
        count: 160,
        shape: Small,
        price: 999.0,
    },
    ArticleType {
        name: "Lip Gloss",
        master: "Personal Care",
        sub: "Lips",
        count: 144,
        shape: Small,
        price: 299.0,
    },
    ArticleType {
        name: "Night suits",
        master: "Apparel",
        sub: "Loungewear and Nightwear",
        count: 141,
        shape: Top,
        price: 999.0,
    },
    ArticleType {
        name: "Trunk",
        master: "Apparel",
        sub: "Innerwear",
        count: 140,
        shape: Bottom,
        price: 299.0,
    },
    ArticleType {
        name: "Skirts",
        master: "Apparel",
        sub: "Bottomwear",
        count: 128,
        shape: Dress,
        price: 899.0,
    },
    ArticleType {
        name: "Scarves",
        master: "Accessories",
        sub: "Scarves",
        count: 118,
        shape: Strip,
        price: 499.0,
    },
    ArticleType {
        name: "Ring",
        master: "Accessories",
        sub: "Jewellery",
        count: 118,
        shape: Small,
        price: 699.0,
    },
    ArticleType {
        name: "Dupatta",
        master: "Apparel",
        sub: "Apparel Set",
        count: 116,
        shape: Strip,
        price: 599.0,
    },
    ArticleType {
        name: "Accessory Gift Set",
        master: "Accessories",
        sub: "Accessories",
        count: 98,
        shape: Bag,
        price: 1499.0,
    },
    ArticleType {
        name: "Cufflinks",
        master: "Accessories",
        sub: "Cufflinks",
        count: 97,
        shape: Small,
        price: 799.0,
    },
    ArticleType {
        name: "Kajal and Eyeliner",
        master: "Personal Care",
        sub: "Eyes",
        count: 94,
        shape: Small,
        price: 249.0,
    },
    ArticleType {
        name: "Free Gifts",
        master: "Free Items",
        sub: "Free Gifts",
        count: 105,
        shape: Bag,
        price: 0.0,
    },
    ArticleType {
        name: "Basketballs",
        master: "Sporting Goods",
        sub: "Sports Equipment",
        count: 13,
        shape: Small,
        price: 1299.0,
    },
    ArticleType {
        name: "Wristbands",
        master: "Sporting Goods",
        sub: "Wristbands",
        count: 12,
        shape: Strip,
        price: 299.0,
    },
    ArticleType {
        name: "Cushion Covers",
        master: "Home",
        sub: "Home Furnishing",
        count: 1,
        shape: Bag,
        price: 599.0,
    },
    ArticleType {
        name: "Swimwear",
        master: "Apparel",
        sub: "Apparel Set",
        count: 17,
        shape: Top,
        price: 1299.0,
    },
];

/// Kaggle's 46 base colours, with the RGB used to draw them and their weight.
pub const BASE_COLOURS: &[(&str, [u8; 3], u32)] = &[
    ("Black", [25, 25, 25], 9728),
    ("White", [245, 245, 245], 5538),
    ("Blue", [40, 90, 200], 4923),
    ("Brown", [120, 75, 40], 3495),
    ("Grey", [128, 128, 128], 2735),
    ("Red", [200, 30, 40], 2455),
    ("Green", [40, 140, 60], 2116),
    ("Pink", [240, 140, 170], 1862),
    ("Navy Blue", [20, 30, 90], 1789),
    ("Purple", [110, 50, 140], 1640),
    ("Silver", [192, 192, 200], 1090),
    ("Yellow", [240, 210, 40], 781),
    ("Beige", [225, 205, 165], 753),
    ("Gold", [212, 175, 55], 628),
    ("Maroon", [110, 20, 35], 584),
    ("Orange", [245, 130, 30], 548),
    ("Olive", [110, 110, 40], 410),
    ("Multi", [160, 100, 160], 394),
    ("Cream", [250, 240, 210], 385),
    ("Steel", [160, 170, 180], 315),
    ("Charcoal", [60, 60, 65], 228),
    ("Peach", [250, 190, 150], 188),
    ("Off White", [240, 235, 225], 181),
    ("Skin", [230, 190, 160], 177),
    ("Lavender", [190, 160, 220], 164),
    ("Grey Melange", [150, 150, 155], 147),
    ("Khaki", [195, 175, 120], 139),
    ("Teal", [0, 128, 128], 117),
    ("Magenta", [200, 30, 140], 78),
    ("Mustard", [210, 170, 40], 76),
    ("Tan", [210, 180, 140], 71),
    ("Bronze", [140, 100, 50], 57),
    ("Copper", [184, 115, 51], 55),
    ("Rust", [180, 70, 30], 50),
    ("Turquoise Blue", [60, 200, 200], 46),
    ("Burgundy", [128, 0, 32], 45),
    ("Mauve", [200, 150, 180], 28),
    ("Sea Green", [46, 139, 87], 22),
    ("Metallic", [170, 170, 170], 19),
    ("Rose", [230, 100, 130], 18),
    ("Coffee Brown", [90, 60, 40], 13),
    ("Mushroom Brown", [160, 130, 110], 12),
    ("Nude", [225, 190, 170], 11),
    ("Lime Green", [170, 220, 50], 10),
    ("Fluorescent Green", [80, 255, 80], 5),
    ("Taupe", [140, 125, 110], 4),
];

const GENDERS: &[(&str, u32)] = &[
    ("Men", 22147),
    ("Women", 18631),
    ("Unisex", 2161),
    ("Boys", 830),
    ("Girls", 655),
];
const SEASONS: &[(Option<&str>, u32)] = &[
    (Some("Summer"), 21478),
    (Some("Fall"), 11445),
    (Some("Winter"), 8517),
    (Some("Spring"), 2983),
    (None, 21),
];
const YEARS: &[(i32, u32)] = &[
    (2011, 13672),
    (2012, 16539),
    (2013, 1212),
    (2014, 2730),
    (2015, 2948),
    (2016, 3945),
    (2017, 2885),
    (2018, 488),
];
const USAGES: &[(Option<&str>, u32)] = &[
    (Some("Casual"), 34406),
    (Some("Sports"), 4025),
    (Some("Ethnic"), 3208),
    (Some("Formal"), 2359),
    (Some("Smart Casual"), 67),
    (Some("Party"), 29),
    (Some("Travel"), 26),
    (Some("Home"), 1),
    (None, 317),
];
const BRANDS: &[&str] = &[
    "Nike",
    "Puma",
    "Adidas",
    "Reebok",
    "Roadster",
    "Fabindia",
    "Titan",
    "Fastrack",
    "Lavie",
    "Baggit",
    "Wildcraft",
    "Lee",
    "Levis",
    "Peter England",
    "Allen Solly",
    "Van Heusen",
    "United Colors of Benetton",
    "ADIDAS Originals",
    "Catwalk",
    "Inc 5",
    "Lakme",
    "Maybelline",
];

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
