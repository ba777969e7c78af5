//! Recording what each statement of a session did: its row of `system.query.history` and, when
//! it wrote, its rows of `system.access.table_lineage` ([`crate::history`]). A statement is
//! recorded once it has ended, committed or not; a record that cannot be written becomes a
//! warning of a statement that succeeded (its commit already names it), never its failure.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use vitrine_udfs::context::ModelUse;
use vitrine_udfs::settings::{ModelSettings, SettingGroup};

use super::query_settings::QuerySettings;
use super::EngineSession;
use crate::config::{SessionSettings, MAX_SEED};
use crate::error::Result;
use crate::history::record::{self, FAILED, FINISHED};
use crate::history::{engine_version, ModelRecord, QueryRecord};
use crate::session::{RunningStatement, Session, StatementResult};

/// A statement as it began: what its record needs from that moment.
pub(super) struct StatementStart {
    running: RunningStatement,
    script: Option<(String, usize)>,
    started: DateTime<Utc>,
    settings: SessionSettings,
    schema: (String, String),
    seed: u64,
}

impl EngineSession {
    /// Begins recording a statement (from `script`'s line, if it came from one): a new id,
    /// the seed, and nothing read or written yet.
    pub(super) fn begin_record(&self, script: Option<(&str, usize)>) -> StatementStart {
        let id = uuid::Uuid::new_v4();
        let settings = self.settings();
        let seed = settings
            .core
            .seed
            .unwrap_or_else(|| id.as_u64_pair().1 & MAX_SEED);
        let running = RunningStatement {
            id: id.to_string(),
            script: script.map(|(file, line)| format!("{file}:{line}")),
        };
        *self.running_statement.lock().expect("statement lock") = running.clone();
        self.writes.lock().expect("writes lock").clear();
        self.rows_read.store(0, Ordering::Relaxed);
        self.catalogs().take_reads();
        let started = Utc::now();
        self.inputs
            .begin(settings.core.clock.unwrap_or(started), seed);
        if self.engine().workers.is_some() {
            let state = self.datafusion().state_ref();
            QuerySettings::new(&settings, seed).replace_in(state.write().config_mut());
        }
        StatementStart {
            running,
            script: script.map(|(file, line)| (file.to_string(), line)),
            started,
            schema: self.current_schema(),
            settings,
            seed,
        }
    }

    /// Records the statement that ran: `None` when recorded, else why it could not be.
    pub(super) async fn finish_record(
        &self,
        start: StatementStart,
        sql: &str,
        outcome: &Result<StatementResult>,
        models: &[ModelUse],
    ) -> Option<String> {
        let ended = Utc::now();
        let writes = std::mem::take(&mut *self.writes.lock().expect("writes lock"));
        let reads = self.catalogs().take_reads();
        let written = writes.iter().filter_map(|w| w.rows).reduce(|a, b| a + b);
        let scanned = self.rows_read.load(Ordering::Relaxed)
            + outcome.as_ref().ok().and_then(|r| r.read_rows).unwrap_or(0);
        let query = QueryRecord {
            statement_id: start.running.id.clone(),
            session_id: self.id.clone(),
            execution_status: if outcome.is_ok() { FINISHED } else { FAILED }.to_string(),
            statement_text: sql.trim().to_string(),
            statement_type: record::statement_type(sql),
            error_message: outcome.as_ref().err().map(ToString::to_string),
            executed_by: user(),
            client_application: self.client.lock().expect("client lock").clone(),
            script_file: start.script.as_ref().map(|(file, _)| file.clone()),
            script_line: start.script.as_ref().map(|(_, line)| *line as u64),
            start_time: start.started,
            end_time: ended,
            total_duration_ms: (ended - start.started).num_milliseconds(),
            read_rows: Some(scanned).filter(|n| *n > 0),
            produced_rows: outcome.as_ref().map_or(0, |r| r.num_rows() as u64),
            written_rows: written,
            current_catalog: start.schema.0.clone(),
            current_schema: start.schema.1.clone(),
            settings: start.settings.values().clone(),
            seed: Some(start.seed),
            engine_version: engine_version(),
        };
        let models = model_records(models, &start.settings);
        let lineage = record::lineage(&query, &reads, &writes, &models);
        match self.engine.history().append(&query, &lineage).await {
            Ok(()) => None,
            Err(e) => Some(format!(
                "the statement was not recorded in system.query.history: {e}"
            )),
        }
    }
}

/// The models a statement ran, with the settings that can change what they compute.
fn model_records(models: &[ModelUse], settings: &SessionSettings) -> Vec<ModelRecord> {
    let effective: BTreeMap<String, String> = ModelSettings::specs()
        .iter()
        .map(|spec| {
            let value = settings.get(spec.key).unwrap_or(spec.default);
            (spec.key.to_string(), value.to_string())
        })
        .collect();
    models
        .iter()
        .map(|model| ModelRecord {
            kind: model.name.clone(),
            id: model.id.clone(),
            revision: model.revision.clone(),
            dtype: effective["vitrine.dtype"].clone(),
            device: effective["vitrine.device"].clone(),
            settings: effective.clone(),
        })
        .collect()
}

/// The operating-system user running the engine.
fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}
