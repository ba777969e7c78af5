//! `vitrine lineage` and `vitrine reproduce`: a table version's ancestry, and its re-derivation.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use vitrine::catalog::{QualifiedName, TableName};
use vitrine::config::{DEFAULT_CATALOG, DEFAULT_SCHEMA};
use vitrine::history::graph;
use vitrine::reproduce::{self, compare::Comparison};
use vitrine::{Engine, EngineConfig};

/// How `vitrine lineage` draws the ancestry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LineageFormat {
    /// An indented tree.
    Text,
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// A table named on the command line, with `VERSION AS OF n` after it or `--version n`.
pub fn parse_target(
    words: &[String],
    version: Option<u64>,
) -> Result<(QualifiedName, Option<u64>)> {
    let text = words.join(" ");
    let mut parts = text.split_whitespace();
    let name = parts.next().context("name a table")?;
    let rest: Vec<String> = parts.map(str::to_uppercase).collect();
    let written = match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => None,
        ["VERSION", "AS", "OF", n] => Some(
            n.parse::<u64>()
                .with_context(|| format!("'{n}' is not a version number"))?,
        ),
        _ => bail!("expected TABLE [VERSION AS OF n], got '{text}'"),
    };
    if let (Some(a), Some(b)) = (written, version) {
        if a != b {
            bail!("two versions given: VERSION AS OF {a} and --version {b}");
        }
    }
    let parts: Vec<String> = name.split('.').map(str::to_lowercase).collect();
    let table = TableName::from_parts(&parts)?.resolve(DEFAULT_CATALOG, DEFAULT_SCHEMA);
    Ok((table, written.or(version)))
}

/// Prints the ancestry of a table version.
pub async fn lineage(
    config: EngineConfig,
    table: &QualifiedName,
    version: Option<u64>,
    format: LineageFormat,
) -> Result<ExitCode> {
    let engine = Engine::open(config).await?;
    let records = engine.history();
    let ancestry = graph::ancestry(
        &records.lineage().await?,
        &records.queries().await?,
        table,
        version,
    )?;
    print!(
        "{}",
        match format {
            LineageFormat::Text => ancestry.text(),
            LineageFormat::Dot => ancestry.dot(),
            LineageFormat::Mermaid => ancestry.mermaid(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Re-derives a table version (and with `chain` its ancestors) and reports each; fails when any
/// differs.
pub async fn reproduce(config: EngineConfig, request: &reproduce::Request) -> Result<ExitCode> {
    let engine = Engine::open(config).await?;
    let steps = reproduce::reproduce(&engine, request, &|step| {
        eprintln!("{step}");
    })
    .await?;
    let mut differing = 0;
    for step in &steps {
        let origin = step
            .script
            .as_ref()
            .map_or(String::new(), |s| format!(" by {s}"));
        let origin = match &step.note {
            Some(note) => format!("{origin} ({note})"),
            None => origin,
        };
        if step.identical() {
            println!(
                "{} version {}{origin}: identical ({} rows)",
                step.table, step.version, step.rows
            );
            continue;
        }
        differing += 1;
        println!("{} version {}{origin}: DIFFERS", step.table, step.version);
        if let Comparison::Differs(lines) = &step.comparison {
            for line in lines {
                println!("  {line}");
            }
        }
        for change in &step.model_changes {
            println!("  model {change}");
        }
    }
    Ok(if differing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
