//! Every benchmark run as a row of `embedding_benchmark_runs` (in the baseline index's schema):
//! the indexes with their parameters, the versions of the tables they were built from, the
//! models that embedded them, the seed, the engine version and every figure, so that a run can be
//! compared with any earlier one, or repeated.

use crate::engine::EngineSession;
use crate::error::{Result, VitrineError};
use crate::session::Session;
use crate::vector;

use super::run::QualityReport;

/// The runs table's name in the schema of the baseline index.
pub const RUNS_TABLE: &str = "embedding_benchmark_runs";

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What a run read from one index: the index entry (source, key, metric, kind, parameters,
/// synced version) and the models recorded on its source table.
async fn provenance(session: &EngineSession, index: &str) -> Result<serde_json::Value> {
    let parts: Vec<String> = index.split('.').map(str::to_string).collect();
    let name = session.qualify(&crate::catalog::TableName::from_parts(&parts)?);
    let entry = vector::catalog::get(session.warehouse(), &name)
        .await?
        .ok_or_else(|| VitrineError::NotFound(format!("vector index {name} does not exist")))?;
    let source_parts: Vec<String> = entry.source.split('.').map(str::to_string).collect();
    let models: serde_json::Map<String, serde_json::Value> =
        match session.table_entry(&crate::catalog::TableName::from_parts(&source_parts)?) {
            Ok((_, source)) => source
                .properties
                .iter()
                .filter(|(k, _)| k.starts_with("vitrine.model."))
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect(),
            Err(_) => Default::default(),
        };
    Ok(serde_json::json!({
        "index": name.to_string(),
        "entry": entry,
        "source_models": models,
    }))
}

/// Appends `report` to the runs table (created the first time); returns the table's name and
/// the run's id.
pub async fn record(session: &EngineSession, report: &QualityReport) -> Result<(String, String)> {
    let baseline = provenance(session, &report.baseline).await?;
    let candidate = provenance(session, &report.candidate).await?;
    let index = baseline["index"].as_str().unwrap_or_default().to_string();
    let schema = index.rsplit_once('.').map_or(index.as_str(), |(s, _)| s);
    let table = format!("{schema}.{RUNS_TABLE}");
    session
        .execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (run_id STRING, run_at TIMESTAMP, \
             baseline STRING, candidate STRING, k INT, seed BIGINT, queries INT, \
             baseline_index STRING, candidate_index STRING, engine_version STRING, \
             metrics STRING) \
             COMMENT 'Runs of vitrine bench quality: what was compared, from what, and every figure'"
        ))
        .await?;
    let run_at = chrono::Utc::now();
    let run_id = format!(
        "{}-{}-{}",
        run_at.format("%Y%m%dT%H%M%S%.3fZ"),
        report.seed,
        report.k
    );
    session
        .execute(&format!(
            "INSERT INTO {table} VALUES ({}, CAST({} AS TIMESTAMP), {}, {}, {}, {}, {}, {}, {}, {}, {})",
            literal(&run_id),
            literal(&run_at.to_rfc3339()),
            literal(&report.baseline),
            literal(&report.candidate),
            report.k,
            report.seed,
            report.queries.len(),
            literal(&baseline.to_string()),
            literal(&candidate.to_string()),
            literal(env!("CARGO_PKG_VERSION")),
            literal(&serde_json::to_string(report)?),
        ))
        .await
        .map_err(|e| e.context(format!("recording the run in {table}")))?;
    Ok((table, run_id))
}
