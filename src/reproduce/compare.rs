//! Whether two tables hold the same content, rows in any order: each row is written as one JSON
//! line (every column, nulls explicit) and hashed; the tables are identical when their columns
//! and the multisets of row hashes are. A table's [`Content::digest`] is the hash of its sorted
//! row hashes, the same for the same rows whatever their order or file layout. When they differ,
//! the rows found on one side only are read again to name the columns that differ and their first
//! differing values.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::prelude::DataFrame;
use futures::TryStreamExt;
use md5::{Digest, Md5};

use crate::error::Result;

/// Differing rows read back to describe a difference.
const ROWS_SHOWN: usize = 5;

/// A table's content, order aside.
#[derive(Debug, Clone)]
pub struct Content {
    /// Column names and types.
    pub columns: Vec<String>,
    /// Column names, in order.
    names: Vec<String>,
    /// Row count.
    pub rows: u64,
    /// How many rows have each hash.
    hashes: HashMap<[u8; 16], u64>,
}

impl Content {
    /// Reads every row of `df`.
    pub async fn read(df: DataFrame) -> Result<Self> {
        let columns = df
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        let names = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut hashes = HashMap::new();
        let mut rows = 0;
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            for line in json_lines(&batch)? {
                *hashes.entry(Md5::digest(&line).into()).or_insert(0) += 1;
                rows += 1;
            }
        }
        Ok(Self {
            columns,
            names,
            rows,
            hashes,
        })
    }

    /// The hash of the content: its columns and its rows' hashes, sorted.
    pub fn digest(&self) -> String {
        let mut sorted: Vec<(&[u8; 16], &u64)> = self.hashes.iter().collect();
        sorted.sort();
        let mut md5 = Md5::new();
        for column in &self.columns {
            md5.update(column.as_bytes());
            md5.update(b"\n");
        }
        for (hash, count) in sorted {
            md5.update(hash);
            md5.update(count.to_le_bytes());
        }
        format!("{:x}", md5.finalize())
    }

    /// The row hashes `self` has more of than `other`.
    fn surplus(&self, other: &Content) -> HashMap<[u8; 16], u64> {
        self.hashes
            .iter()
            .filter_map(|(hash, count)| {
                let theirs = other.hashes.get(hash).copied().unwrap_or(0);
                (*count > theirs).then_some((*hash, count - theirs))
            })
            .collect()
    }
}

/// How a re-derived table compares with the recorded one.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// Same columns, same rows.
    Identical,
    /// What differs, one line each.
    Differs(Vec<String>),
}

/// Compares `expected` (the recorded version, read by `expected_df`) with `got` (the
/// re-derived table, read by `got_df`); the frames are read again only when rows differ.
pub async fn compare(
    expected: &Content,
    expected_df: DataFrame,
    got: &Content,
    got_df: DataFrame,
) -> Result<Comparison> {
    let mut lines = Vec::new();
    if expected.columns != got.columns {
        lines.push(format!(
            "columns: recorded [{}], re-derived [{}]",
            expected.columns.join(", "),
            got.columns.join(", ")
        ));
        return Ok(Comparison::Differs(lines));
    }
    let missing = expected.surplus(got);
    let extra = got.surplus(expected);
    if missing.is_empty() && extra.is_empty() {
        return Ok(Comparison::Identical);
    }
    lines.push(format!(
        "rows: recorded {}, re-derived {}; {} recorded row(s) not re-derived, {} re-derived row(s) not recorded",
        expected.rows,
        got.rows,
        missing.values().sum::<u64>(),
        extra.values().sum::<u64>()
    ));
    let before = rows_with(expected_df, &missing).await?;
    let after = rows_with(got_df, &extra).await?;
    lines.extend(describe(&expected.names, &before, &after));
    Ok(Comparison::Differs(lines))
}

/// Up to [`ROWS_SHOWN`] × 20 rows of `df` whose hash is in `wanted`, as JSON objects.
async fn rows_with(
    df: DataFrame,
    wanted: &HashMap<[u8; 16], u64>,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut found = Vec::new();
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.try_next().await? {
        for line in json_lines(&batch)? {
            let hash: [u8; 16] = Md5::digest(&line).into();
            if wanted.contains_key(&hash) {
                if let Ok(serde_json::Value::Object(row)) = serde_json::from_slice(&line) {
                    found.push(row);
                }
                if found.len() >= ROWS_SHOWN * 20 {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}

/// Pairs the differing rows by their first column and names the columns that differ, with the
/// first values on each side.
fn describe(
    names: &[String],
    before: &[serde_json::Map<String, serde_json::Value>],
    after: &[serde_json::Map<String, serde_json::Value>],
) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(key_name) = names.first() else {
        return lines;
    };
    let mut differing_columns: Vec<String> = Vec::new();
    for old in before {
        let Some(key_value) = old.get(key_name) else {
            continue;
        };
        let Some(new) = after.iter().find(|r| r.get(key_name) == Some(key_value)) else {
            continue;
        };
        let columns: Vec<&String> = names
            .iter()
            .filter(|c| old.get(*c) != new.get(*c))
            .collect();
        for column in &columns {
            if !differing_columns.contains(column) {
                differing_columns.push((*column).clone());
            }
        }
        if lines.len() < ROWS_SHOWN {
            let values: Vec<String> = columns
                .iter()
                .map(|c| format!("{c}: {} -> {}", shown(old.get(*c)), shown(new.get(*c))))
                .collect();
            lines.push(format!("{key_name} = {key_value}: {}", values.join("; ")));
        }
    }
    if !differing_columns.is_empty() {
        lines.insert(
            0,
            format!("columns that differ: {}", differing_columns.join(", ")),
        );
    }
    if lines.is_empty() {
        for row in before.iter().take(ROWS_SHOWN) {
            lines.push(format!(
                "recorded only: {}",
                shown(Some(&serde_json::Value::Object(row.clone())))
            ));
        }
        for row in after.iter().take(ROWS_SHOWN) {
            lines.push(format!(
                "re-derived only: {}",
                shown(Some(&serde_json::Value::Object(row.clone())))
            ));
        }
    }
    lines
}

/// A value as a short text (long arrays and strings cut).
fn shown(value: Option<&serde_json::Value>) -> String {
    let text = value.map_or("absent".to_string(), |v| v.to_string());
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Each row of `batch` as one JSON object, every column present (nulls as `null`).
fn json_lines(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut buffer = Vec::new();
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(&mut buffer);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(buffer
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
