//! Benchmark queries drawn from a labelled catalog, with graded judgments.
//!
//! Each query asks for one or more facet values of a product picked at random (article type,
//! colour, gender, material, pattern, sleeve, collar, style), in the words a shopper types:
//! `red striped knit fabric tshirts for men`. A product's grade is the number of the query's
//! facet values it has; it is relevant when it has all of them, or all but one for queries of
//! three facets or more. Facet values that describe nothing (`unknown`, `not applicable`, …) are
//! never asked for. The same catalog and seed give the same queries.

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::metrics::Judgments;
use crate::error::{Result, VitrineError};

/// A facet of a product that queries ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Facet {
    /// `article_type`, e.g. Tshirts.
    Article,
    /// `base_color`.
    Colour,
    /// `gender`.
    Gender,
    /// The material (extraction vocabulary).
    Material,
    /// The pattern.
    Pattern,
    /// The sleeve length.
    Sleeve,
    /// The collar type.
    Collar,
    /// A style keyword (a product may have several).
    Style,
}

impl Facet {
    /// Every facet.
    pub const ALL: [Facet; 8] = [
        Facet::Article,
        Facet::Colour,
        Facet::Gender,
        Facet::Material,
        Facet::Pattern,
        Facet::Sleeve,
        Facet::Collar,
        Facet::Style,
    ];

    /// The facet's name in query kinds and reports.
    pub fn name(self) -> &'static str {
        match self {
            Facet::Article => "article",
            Facet::Colour => "colour",
            Facet::Gender => "gender",
            Facet::Material => "material",
            Facet::Pattern => "pattern",
            Facet::Sleeve => "sleeve",
            Facet::Collar => "collar",
            Facet::Style => "style",
        }
    }

    /// The facet called `name` ([`Facet::name`]).
    pub fn parse(name: &str) -> Result<Facet> {
        Facet::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Facet::ALL.iter().map(|f| f.name()).collect();
                VitrineError::Plan(format!(
                    "unknown facet '{name}': the facets are {}",
                    names.join(", ")
                ))
            })
    }
}

/// Facet values a shopper never asks for.
const UNINFORMATIVE: &[&str] = &[
    "",
    "unknown",
    "not applicable",
    "cannot determine",
    "no clear pattern",
    "no collar",
    "NA",
];

/// The kinds of query the benchmark draws, each a list of facets, in the order the query text
/// puts them.
pub const KINDS: &[&[Facet]] = &[
    &[Facet::Article],
    &[Facet::Colour, Facet::Article],
    &[Facet::Material, Facet::Article],
    &[Facet::Pattern, Facet::Article],
    &[Facet::Sleeve, Facet::Article],
    &[Facet::Collar, Facet::Article],
    &[Facet::Style, Facet::Article],
    &[
        Facet::Colour,
        Facet::Pattern,
        Facet::Material,
        Facet::Article,
        Facet::Gender,
    ],
    &[Facet::Pattern, Facet::Sleeve, Facet::Article, Facet::Gender],
];

/// A product with the facet values it really has (several for style).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledProduct {
    /// Its id, as the index's primary key holds it.
    pub id: String,
    /// Facet → its values.
    pub facets: BTreeMap<Facet, Vec<String>>,
}

impl LabelledProduct {
    fn has(&self, facet: Facet, value: &str) -> bool {
        self.facets
            .get(&facet)
            .is_some_and(|values| values.iter().any(|v| v.eq_ignore_ascii_case(value)))
    }
}

/// One benchmark query with its judgments.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `q<n>`.
    pub id: String,
    /// The facets it asks for, joined by `+` (`colour+article`).
    pub kind: String,
    /// What is searched for.
    pub text: String,
    /// Product → grade, for every product with a grade of 1 or more.
    pub judgments: Judgments,
}

/// `per_kind` queries of each kind of [`KINDS`], drawn from `catalog` with `seed`. A kind whose
/// facets no product has informative values for is skipped.
pub fn generate(catalog: &[LabelledProduct], per_kind: usize, seed: u64) -> Vec<Query> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut queries = Vec::new();
    for facets in KINDS {
        let candidates: Vec<&LabelledProduct> = catalog
            .iter()
            .filter(|p| facets.iter().all(|f| informative(p, *f).is_some()))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..per_kind * 4 {
            if seen.len() == per_kind {
                break;
            }
            let Some(anchor) = candidates.choose(&mut rng) else {
                break;
            };
            let asked: Vec<(Facet, String)> = facets
                .iter()
                .map(|f| {
                    let values: Vec<&String> = anchor.facets[f]
                        .iter()
                        .filter(|v| !UNINFORMATIVE.contains(&v.as_str()))
                        .collect();
                    (*f, (*values.choose(&mut rng).expect("informative")).clone())
                })
                .collect();
            let text = query_text(&asked);
            if !seen.insert(text.clone()) {
                continue;
            }
            queries.push(Query {
                id: format!("q{}", queries.len() + 1),
                kind: facets
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join("+"),
                text,
                judgments: judge(catalog, &asked),
            });
        }
    }
    queries
}

fn informative(product: &LabelledProduct, facet: Facet) -> Option<&String> {
    product
        .facets
        .get(&facet)?
        .iter()
        .find(|v| !UNINFORMATIVE.contains(&v.as_str()))
}

/// The grade of every product for a query asking for `asked`.
pub fn judge(catalog: &[LabelledProduct], asked: &[(Facet, String)]) -> Judgments {
    let needed = if asked.len() >= 3 {
        asked.len() - 1
    } else {
        asked.len()
    };
    catalog
        .iter()
        .filter_map(|p| {
            let grade = asked.iter().filter(|(f, v)| p.has(*f, v)).count();
            (grade >= needed).then(|| (p.id.clone(), grade as u32))
        })
        .collect()
}

/// The words a shopper would type: modifiers, then the article, then `for <gender>`.
fn query_text(asked: &[(Facet, String)]) -> String {
    let mut words: Vec<String> = asked
        .iter()
        .filter(|(f, _)| *f != Facet::Gender)
        .map(|(f, v)| match f {
            Facet::Style => format!("{} style", v.to_lowercase()),
            _ => v.to_lowercase(),
        })
        .collect();
    if let Some((_, gender)) = asked.iter().find(|(f, _)| *f == Facet::Gender) {
        words.push(format!("for {}", gender.to_lowercase()));
    }
    words.join(" ")
}

/// Reads queries from JSON lines: `{"id": "q1", "text": "red dress", "kind": "colour",
/// "judgments": {"1163": 2, "2040": 1}}` (`kind` optional); `file` names the source in errors.
pub fn read_jsonl(text: &str, file: &str) -> Result<Vec<Query>> {
    #[derive(serde::Deserialize)]
    struct Line {
        id: String,
        text: String,
        #[serde(default)]
        kind: Option<String>,
        judgments: BTreeMap<String, u32>,
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let line: Line = serde_json::from_str(line).map_err(|e| {
                VitrineError::Plan(format!(
                    "{file}:{}: expected {{\"id\", \"text\", \"judgments\": {{product: grade}}}}: {e}",
                    i + 1
                ))
            })?;
            Ok(Query {
                id: line.id,
                kind: line.kind.unwrap_or_else(|| "file".into()),
                text: line.text,
                judgments: line.judgments.into_iter().filter(|(_, g)| *g > 0).collect(),
            })
        })
        .collect()
}

/// Reads TREC topics (`id<TAB>text` per line) judged by `qrels`; a topic without judgments is
/// refused, naming it.
pub fn read_topics(
    text: &str,
    file: &str,
    qrels: &BTreeMap<String, Judgments>,
) -> Result<Vec<Query>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let (id, words) = line.split_once('\t').ok_or_else(|| {
                VitrineError::Plan(format!(
                    "{file}:{}: expected 'id<TAB>text', got '{line}'",
                    i + 1
                ))
            })?;
            let judgments = qrels.get(id.trim()).ok_or_else(|| {
                VitrineError::Plan(format!(
                    "{file}:{}: topic '{}' has no judgments in the qrels",
                    i + 1,
                    id.trim()
                ))
            })?;
            Ok(Query {
                id: id.trim().to_string(),
                kind: "file".into(),
                text: words.trim().to_string(),
                judgments: judgments
                    .iter()
                    .filter(|(_, g)| **g > 0)
                    .map(|(p, g)| (p.clone(), *g))
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, facets: &[(Facet, &str)]) -> LabelledProduct {
        let mut map: BTreeMap<Facet, Vec<String>> = BTreeMap::new();
        for (f, v) in facets {
            map.entry(*f).or_default().push(v.to_string());
        }
        LabelledProduct {
            id: id.into(),
            facets: map,
        }
    }

    fn catalog() -> Vec<LabelledProduct> {
        use Facet::*;
        vec![
            product(
                "1",
                &[
                    (Article, "Tshirts"),
                    (Colour, "Red"),
                    (Pattern, "striped"),
                    (Material, "knit fabric"),
                    (Gender, "Men"),
                    (Sleeve, "short sleeve"),
                    (Collar, "crew neck"),
                    (Style, "sporty"),
                    (Style, "casual"),
                ],
            ),
            product(
                "2",
                &[
                    (Article, "Tshirts"),
                    (Colour, "Red"),
                    (Pattern, "solid color"),
                    (Material, "knit fabric"),
                    (Gender, "Men"),
                    (Sleeve, "short sleeve"),
                    (Collar, "v-neck"),
                    (Style, "modern"),
                ],
            ),
            product(
                "3",
                &[
                    (Article, "Watches"),
                    (Colour, "Black"),
                    (Pattern, "no clear pattern"),
                    (Material, "metal"),
                    (Gender, "Women"),
                    (Sleeve, "not applicable"),
                    (Collar, "not applicable"),
                    (Style, "elegant"),
                ],
            ),
        ]
    }

    #[test]
    fn grades_count_the_facets_a_product_has() {
        let asked = vec![
            (Facet::Colour, "Red".to_string()),
            (Facet::Pattern, "striped".to_string()),
            (Facet::Material, "knit fabric".to_string()),
            (Facet::Article, "Tshirts".to_string()),
            (Facet::Gender, "Men".to_string()),
        ];
        let judged = judge(&catalog(), &asked);
        assert_eq!(judged.get("1"), Some(&5));
        assert_eq!(
            judged.get("2"),
            Some(&4),
            "all but one facet: partly relevant"
        );
        assert_eq!(judged.get("3"), None);
        assert_eq!(
            query_text(&asked),
            "red striped knit fabric tshirts for men"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_queries_and_uninformative_values_are_never_asked() {
        let a = generate(&catalog(), 2, 7);
        assert_eq!(a, generate(&catalog(), 2, 7));
        assert!(a
            .iter()
            .all(|q| !q.text.contains("not applicable") && !q.text.contains("no clear pattern")));
        assert!(a.iter().all(|q| q.judgments.values().any(|g| *g > 0)));
        let kinds: std::collections::BTreeSet<&str> = a.iter().map(|q| q.kind.as_str()).collect();
        assert!(
            kinds.contains("article") && kinds.contains("colour+pattern+material+article+gender")
        );
    }
}
