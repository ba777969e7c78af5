//! Model statements: `CREATE [OR REPLACE] MODEL … OPTIONS (…) AS SELECT …`, `SHOW MODELS`,
//! `DESCRIBE MODEL`, `DROP MODEL`.
//!
//! `CREATE MODEL` runs the query, hands its rows to the kind `model_type` names (the model crate
//! trains; the engine never names a model), and publishes the folder the kind wrote as a new
//! revision. Checkpoints stay in a scratch folder between attempts, so that running the same
//! statement again after an interruption resumes from the last finished epoch.

use std::time::Instant;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::Result as DataFusionResult;
use datafusion::sql::sqlparser::ast::{visit_relations, Query};
use vitrine_udfs::context::ProgressUpdate;
use vitrine_udfs::runtime::source::digest_prefix;
use vitrine_udfs::train::{TrainingJob, TrainingProgress};

use super::catalog;
use super::entry::{ModelEntry, TableRead};
use crate::catalog::{storage, QualifiedName, TableName};
use crate::error::{Result, ResultExt, VitrineError};
use crate::session::{Session, StatementResult};
use crate::sql::parser::{object_name_parts, CreateModel};

/// The function name training progress is reported under.
const PROGRESS_NAME: &str = "create_model";

/// The tables `query` reads, with their current versions.
async fn tables_read(session: &dyn Session, query: &Query) -> Result<Vec<TableRead>> {
    let mut names = Vec::new();
    let _ = visit_relations(query, |relation| {
        if let Ok(parts) = object_name_parts(relation) {
            if let Ok(name) = TableName::from_parts(&parts) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let mut read = Vec::new();
    for name in names {
        // Common table expressions and the like are not warehouse tables.
        let Ok((qualified, entry)) = session.table_entry(&name) else {
            continue;
        };
        let version = if entry.format.is_writable() {
            storage(entry.format)?.version(&entry.location).await?
        } else {
            None
        };
        read.push(TableRead {
            table: qualified.to_string(),
            version,
        });
    }
    Ok(read)
}

/// Runs `f`, which blocks for long (training), without stalling the runtime's other tasks when
/// the runtime has worker threads to spare.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `batches`' rows sorted by all their columns, as one batch: the held-out rows and the seeded
/// shuffle are drawn by position, and a query's rows may arrive in another order each run (a
/// `UNION ALL`, a parallel scan), so the same rows must train the same model whatever order they
/// come in. Rows of types arrow cannot compare keep the query's order.
fn in_canonical_order(batches: Vec<RecordBatch>) -> DataFusionResult<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let schema = first.schema();
    let fields: Vec<SortField> = schema
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    if !RowConverter::supports_fields(&fields) {
        return Ok(batches);
    }
    let all = concat_batches(&schema, &batches)?;
    let rows = RowConverter::new(fields)?.convert_columns(all.columns())?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    Ok(vec![take_record_batch(&all, &UInt32Array::from(order))?])
}

/// `CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name OPTIONS (model_type = …, …) AS query`.
pub async fn create(session: &dyn Session, create: CreateModel) -> Result<StatementResult> {
    let started = Instant::now();
    let name = session.qualify(&create.name);
    let warehouse = session.warehouse();
    if catalog::get(warehouse, &name).await?.is_some() {
        if create.if_not_exists {
            return Ok(StatementResult::message(format!(
                "model {name} already exists"
            )));
        }
        if !create.or_replace {
            return Err(VitrineError::AlreadyExists(format!(
                "model {name} already exists (CREATE OR REPLACE MODEL trains it again)"
            )));
        }
    }
    let mut options = create.options.clone();
    let model_type = options.remove("model_type").ok_or_else(|| {
        VitrineError::Plan(format!(
            "CREATE MODEL {name}: OPTIONS needs model_type ({})",
            vitrine_udfs::models::kinds()
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let kind = vitrine_udfs::models::kind(&model_type)
        .map_err(|e| VitrineError::Plan(format!("CREATE MODEL {name}: {e}")))?;
    let context = session.model_functions();
    let base_spec = options.remove("base");
    let base = base_spec
        .as_deref()
        .map(|spec| context.locate(spec, kind.files()))
        .transpose()
        .map_err(|e| VitrineError::Plan(format!("CREATE MODEL {name}: base: {e}")))?;
    let tables_read = tables_read(session, &create.query).await?;
    let query = create.query.to_string();
    let rows = session
        .plan_query(*create.query)
        .await?
        .collect()
        .await
        .and_then(in_canonical_order)
        .map_err(|e| {
            VitrineError::from(e).context(format!("CREATE MODEL {name}: the training query"))
        })?;

    let scratch = catalog::scratch(warehouse, &name, &super::objects::default_cache());
    let output = scratch.join("output");
    if output.exists() {
        std::fs::remove_dir_all(&output).context(|| format!("clearing '{}'", output.display()))?;
    }
    let progress = |p: &TrainingProgress| {
        context.report_progress(&ProgressUpdate {
            function: PROGRESS_NAME,
            rows: p.step,
            expected_rows: Some(p.steps),
            detail: Some(format!(
                "epoch {}/{} · loss {:.4}",
                p.epoch, p.epochs, p.loss
            )),
        });
        Ok(())
    };
    let job = TrainingJob {
        options: options.clone(),
        base: base.clone(),
        rows,
        output: output.clone(),
        checkpoints: scratch.join("checkpoints"),
        context,
        progress: &progress,
    };
    let training = blocking(|| kind.train(job))
        .map_err(|e| VitrineError::Plan(format!("CREATE MODEL {name}: {e}")))?;

    let weights = output.join("model.safetensors");
    let revision = format!(
        "sha256:{}",
        digest_prefix(&weights).map_err(|e| VitrineError::Plan(e.to_string()))?
    );
    let entry = ModelEntry {
        model_type,
        base: base_spec,
        base_revision: base.map(|b| b.revision),
        options,
        query,
        tables_read,
        training,
        location: catalog::location(warehouse, &name, &revision),
        revision,
        created_at: chrono::Utc::now().to_rfc3339(),
        seconds: started.elapsed().as_secs_f64(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    catalog::publish(warehouse, &name, &output, &entry).await?;
    std::fs::remove_dir_all(&scratch).context(|| format!("removing '{}'", scratch.display()))?;
    Ok(StatementResult::message(summary_line(&name, &entry)))
}

fn summary_line(name: &QualifiedName, entry: &ModelEntry) -> String {
    let t = &entry.training;
    let last = t.epochs.last();
    let loss = match last.and_then(|e| e.eval_loss) {
        Some(eval) => format!("eval loss {eval:.4}"),
        None => format!("train loss {:.4}", last.map_or(f64::NAN, |e| e.train_loss)),
    };
    let resumed = t
        .resumed_after
        .map(|e| format!(", resumed after epoch {e}"))
        .unwrap_or_default();
    let skipped = if t.skipped_rows > 0 {
        format!(", {} rows skipped", t.skipped_rows)
    } else {
        String::new()
    };
    format!(
        "created model {name} ({}, {} training rows, {} held out{skipped}, {} epochs, {loss}{resumed}, {:.0} s)",
        entry.model_type,
        t.train_rows,
        t.eval_rows,
        t.epochs.len(),
        entry.seconds
    )
}

/// A model's entry, or an error naming it.
pub async fn model_entry(
    session: &dyn Session,
    name: &TableName,
) -> Result<(QualifiedName, ModelEntry)> {
    let name = session.qualify(name);
    match catalog::get(session.warehouse(), &name).await? {
        Some(entry) => Ok((name, entry)),
        None => Err(VitrineError::NotFound(format!(
            "model {name} does not exist"
        ))),
    }
}

/// `DROP MODEL [IF EXISTS] name`.
pub async fn drop(
    session: &dyn Session,
    name: &TableName,
    if_exists: bool,
) -> Result<StatementResult> {
    let qualified = session.qualify(name);
    if catalog::get(session.warehouse(), &qualified)
        .await?
        .is_none()
    {
        if if_exists {
            return Ok(StatementResult::message(format!(
                "model {qualified} does not exist"
            )));
        }
        return Err(VitrineError::NotFound(format!(
            "model {qualified} does not exist"
        )));
    }
    catalog::delete(session.warehouse(), &qualified).await?;
    Ok(StatementResult::message(format!(
        "dropped model {qualified}"
    )))
}

/// `SHOW MODELS [IN [catalog.]schema]`.
pub async fn show(session: &dyn Session, schema: Option<Vec<String>>) -> Result<StatementResult> {
    let (catalog_name, schema) = session.schema_named(schema.as_deref())?;
    let rows = catalog::list(session.warehouse(), &catalog_name, &schema)
        .await?
        .into_iter()
        .map(|(model, e)| {
            let last = e.training.epochs.last();
            vec![
                Some(format!("{catalog_name}.{schema}.{model}")),
                Some(e.model_type),
                e.base,
                Some(e.training.train_rows.to_string()),
                Some(e.training.epochs.len().to_string()),
                last.and_then(|l| l.eval_loss).map(|l| format!("{l:.4}")),
                Some(e.revision),
                Some(e.created_at),
            ]
        })
        .collect();
    StatementResult::strings(
        &[
            "name",
            "model_type",
            "base",
            "train_rows",
            "epochs",
            "eval_loss",
            "revision",
            "created_at",
        ],
        rows,
    )
}

/// `DESCRIBE MODEL name`: how it was trained, from what, and its loss curve.
pub async fn describe(session: &dyn Session, name: &TableName) -> Result<StatementResult> {
    let (name, e) = model_entry(session, name).await?;
    let t = &e.training;
    let join = |items: Vec<String>| items.join(", ");
    let mut options: Vec<String> = e.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    options.sort();
    let curve: Vec<String> = t
        .epochs
        .iter()
        .map(|r| match r.eval_loss {
            Some(eval) => format!(
                "epoch {}: train {:.4}, eval {eval:.4} ({:.0} s)",
                r.epoch, r.train_loss, r.seconds
            ),
            None => format!(
                "epoch {}: train {:.4} ({:.0} s)",
                r.epoch, r.train_loss, r.seconds
            ),
        })
        .collect();
    let rows: Vec<(&str, String)> = vec![
        ("name", name.to_string()),
        ("model_type", e.model_type.clone()),
        (
            "base",
            e.base.clone().unwrap_or_else(|| "(from scratch)".into()),
        ),
        ("base_revision", e.base_revision.clone().unwrap_or_default()),
        ("revision", e.revision.clone()),
        ("location", e.location.clone()),
        ("options", join(options)),
        (
            "training options",
            format!(
                "epochs={}, batch_size={}, learning_rate={}, lr_schedule={}, warmup_fraction={}, \
                 weight_decay={}, eval_fraction={}, seed={}",
                t.options.epochs,
                t.options.batch_size,
                t.options.learning_rate,
                t.options.lr_schedule.name(),
                t.options.warmup_fraction,
                t.options.weight_decay,
                t.options.eval_fraction,
                t.options.seed
            ),
        ),
        ("query", e.query.clone()),
        (
            "tables read",
            join(
                e.tables_read
                    .iter()
                    .map(|r| match r.version {
                        Some(v) => format!("{} VERSION AS OF {v}", r.table),
                        None => r.table.clone(),
                    })
                    .collect(),
            ),
        ),
        ("train_rows", t.train_rows.to_string()),
        ("grouped_rows", t.grouped_rows.to_string()),
        ("eval_rows", t.eval_rows.to_string()),
        ("skipped_rows", t.skipped_rows.to_string()),
        ("skipped", t.skipped.join("; ")),
        ("parameters", t.parameters.to_string()),
        ("loss curve", curve.join("; ")),
        (
            "eval_loss",
            t.epochs
                .last()
                .and_then(|l| l.eval_loss)
                .map(|l| format!("{l:.4}"))
                .unwrap_or_default(),
        ),
        (
            "resumed_after_epoch",
            t.resumed_after.map(|e| e.to_string()).unwrap_or_default(),
        ),
        ("created_at", e.created_at.clone()),
        ("seconds", format!("{:.1}", e.seconds)),
        ("engine_version", e.engine_version.clone()),
    ];
    StatementResult::strings(
        &["property", "value"],
        rows.into_iter()
            .map(|(k, v)| vec![Some(k.to_string()), Some(v)])
            .collect(),
    )
}
