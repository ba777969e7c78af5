//! Every benchmark run as a row of `embedding_benchmark_runs` (in the baseline index's schema):
//! the indexes with their parameters, the versions of the tables they were built from, the
//! models that embedded them, the seed, the engine version and every figure, so that a run can be
//! compared with any earlier one, or repeated.

use crate::engine::EngineSession;
use crate::error::Result;

use crate::quality::QualityReport;

/// The runs table's name in the schema of the baseline index.
pub const RUNS_TABLE: &str = "embedding_benchmark_runs";

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Appends `report` to the runs table (created the first time); returns the table's name and
/// the run's id.
pub async fn record(session: &EngineSession, report: &QualityReport) -> Result<(String, String)> {
    let [baseline, candidate] = &report.indexes;
    let schema = baseline
        .index
        .rsplit_once('.')
        .map_or(baseline.index.as_str(), |(s, _)| s);
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
            literal(&serde_json::to_string(baseline)?),
            literal(&serde_json::to_string(candidate)?),
            literal(env!("CARGO_PKG_VERSION")),
            literal(&serde_json::to_string(report)?),
        ))
        .await
        .map_err(|e| e.context(format!("recording the run in {table}")))?;
    Ok((table, run_id))
}
