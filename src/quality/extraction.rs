//! How well phase 1 extracted the attributes: per attribute, the accuracy, the macro-F1 and the
//! confusion matrix of the extracted values against the ground truth, over the products whose
//! extraction succeeded (failed extractions are counted apart).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use serde::Serialize;

use crate::error::Result;
use crate::session::Session;
use crate::sql::dml::quote;

/// The attributes compared, as both tables name their columns.
pub const ATTRIBUTES: &[&str] = &[
    "material",
    "pattern",
    "formality",
    "collar_type",
    "sleeve_length",
    "fit_type",
];

/// One attribute's agreement with the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeQuality {
    /// The column.
    pub attribute: String,
    /// Products compared (successful extractions with a true value).
    pub products: usize,
    /// Share of them whose extracted value equals the true one.
    pub accuracy: f64,
    /// Mean over the values seen (true or extracted) of each value's F1.
    pub macro_f1: f64,
    /// True value → extracted value → products.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
}

/// What the extraction got right, per attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractionQuality {
    /// The table of extracted attributes.
    pub extracted: String,
    /// Products with a ground truth.
    pub products: usize,
    /// Those whose extraction failed (`extraction_success` false or NULL).
    pub failed: usize,
    /// Each attribute of [`ATTRIBUTES`].
    pub attributes: Vec<AttributeQuality>,
}

/// Scores one attribute from (true, extracted) pairs; a missing extracted value counts as wrong.
pub fn score(attribute: &str, pairs: &[(String, Option<String>)]) -> AttributeQuality {
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (truth, extracted) in pairs {
        let extracted = extracted.clone().unwrap_or_else(|| "(none)".into());
        *confusion
            .entry(truth.clone())
            .or_default()
            .entry(extracted)
            .or_default() += 1;
    }
    let correct: usize = pairs
        .iter()
        .filter(|(t, e)| e.as_deref() == Some(t.as_str()))
        .count();
    let labels: BTreeSet<&String> = confusion
        .keys()
        .chain(confusion.values().flat_map(|row| row.keys()))
        .collect();
    let f1: Vec<f64> = labels
        .iter()
        .map(|label| {
            let tp = confusion
                .get(*label)
                .and_then(|row| row.get(*label))
                .copied()
                .unwrap_or(0) as f64;
            let truth: usize = confusion.get(*label).map_or(0, |row| row.values().sum());
            let predicted: usize = confusion.values().filter_map(|row| row.get(*label)).sum();
            if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (truth + predicted) as f64
            }
        })
        .collect();
    AttributeQuality {
        attribute: attribute.to_string(),
        products: pairs.len(),
        accuracy: if pairs.is_empty() {
            0.0
        } else {
            correct as f64 / pairs.len() as f64
        },
        macro_f1: if f1.is_empty() {
            0.0
        } else {
            f1.iter().sum::<f64>() / f1.len() as f64
        },
        confusion,
    }
}

/// Compares `extracted` with `ground_truth`, joined on `key`.
pub async fn measure(
    session: &dyn Session,
    extracted: &str,
    ground_truth: &str,
    key: &str,
) -> Result<ExtractionQuality> {
    let key = quote(key);
    let columns: Vec<String> = ATTRIBUTES
        .iter()
        .map(|a| format!("g.{0} AS true_{1}, e.{0} AS got_{1}", quote(a), a))
        .collect();
    let sql = format!(
        "SELECT COALESCE(e.extraction_success, false) AS ok, {} FROM {ground_truth} g \
         LEFT JOIN {extracted} e ON g.{key} = e.{key}",
        columns.join(", ")
    );
    let batches = session
        .plan_sql(&sql)
        .await
        .map_err(|e| e.context(format!("comparing {extracted} with {ground_truth}")))?
        .collect()
        .await?;
    let mut pairs: Vec<Vec<(String, Option<String>)>> = vec![Vec::new(); ATTRIBUTES.len()];
    let (mut products, mut failed) = (0, 0);
    for batch in &batches {
        let ok = batch.column(0).as_boolean();
        let text: Vec<_> = (1..batch.num_columns())
            .map(|i| datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            products += 1;
            if !ok.value(row) {
                failed += 1;
                continue;
            }
            for (a, pair) in pairs.iter_mut().enumerate() {
                let (truth, got) = (
                    text[2 * a].as_string::<i32>(),
                    text[2 * a + 1].as_string::<i32>(),
                );
                if truth.is_null(row) || truth.value(row).is_empty() {
                    continue;
                }
                let got = (!got.is_null(row)).then(|| got.value(row).to_string());
                pair.push((truth.value(row).to_string(), got));
            }
        }
    }
    Ok(ExtractionQuality {
        extracted: extracted.to_string(),
        products,
        failed,
        attributes: ATTRIBUTES
            .iter()
            .zip(&pairs)
            .map(|(a, p)| score(a, p))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::score;

    fn pairs(items: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        items
            .iter()
            .map(|(t, e)| (t.to_string(), e.map(str::to_string)))
            .collect()
    }

    #[test]
    fn accuracy_macro_f1_and_confusion_follow_their_definitions() {
        // truth: a a b b; extracted: a b b (none)
        let q = score(
            "material",
            &pairs(&[
                ("a", Some("a")),
                ("a", Some("b")),
                ("b", Some("b")),
                ("b", None),
            ]),
        );
        assert_eq!(q.products, 4);
        assert_eq!(q.accuracy, 0.5);
        // a: tp 1, 2 true, 1 predicted → 2/3; b: tp 1, 2 true, 2 predicted → 1/2; (none): 0.
        assert!(
            (q.macro_f1 - (2.0 / 3.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12,
            "{}",
            q.macro_f1
        );
        assert_eq!(q.confusion["a"]["b"], 1);
        assert_eq!(q.confusion["b"]["(none)"], 1);
    }
}
