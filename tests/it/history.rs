//! Query history and table lineage: `system.query.history`, `system.access.table_lineage`, and
//! what `DESCRIBE HISTORY` says about each version.

use vitrine::catalog::QualifiedName;
use vitrine::reproduce::{self, compare::Comparison, compare::Content};
use vitrine::Session as _;
use vitrine::{Engine, EngineConfig};

use crate::support::{clip_fixture, repo_path, rows, TestWarehouse};

const SCRIPT: &str = "\
CREATE SCHEMA IF NOT EXISTS main.h;
SET vitrine.udf.batch_size = 8;
CREATE TABLE main.h.a AS SELECT * FROM (VALUES (1, 'x'), (2, 'y'), (3, 'z')) AS t(id, name);
INSERT INTO main.h.a VALUES (4, 'w');
CREATE OR REPLACE TABLE main.h.b AS
  SELECT id, upper(name) AS name FROM main.h.a WHERE id > 1;
INSERT INTO main.h.b SELECT id, name FROM main.h.a VERSION AS OF 1 WHERE id = 1;
DELETE FROM main.h.b WHERE id = 3;
";

#[tokio::test]
async fn every_statement_is_recorded_with_its_script_line_and_read_back_by_a_new_process() {
    let wh = TestWarehouse::new().await;
    wh.session.run_script(SCRIPT, "pipeline.sql").await.unwrap();
    wh.error("SELECT * FROM main.h.missing").await;

    // Another engine on the same warehouse: a process started later.
    let later = Engine::open(EngineConfig::new(wh.path().to_str().unwrap()))
        .await
        .unwrap()
        .session()
        .unwrap();
    let history = later
        .execute(
            "SELECT statement_type, execution_status, script_file, script_line, written_rows, \
                    settings['vitrine.udf.batch_size'], error_message IS NULL \
             FROM system.query.history ORDER BY start_time",
        )
        .await
        .unwrap();
    let got = rows(&history.batches);
    let expected = [
        [
            "CREATE SCHEMA",
            "FINISHED",
            "pipeline.sql",
            "1",
            "NULL",
            "NULL",
            "true",
        ],
        [
            "SET",
            "FINISHED",
            "pipeline.sql",
            "2",
            "NULL",
            "NULL",
            "true",
        ],
        [
            "CREATE TABLE",
            "FINISHED",
            "pipeline.sql",
            "3",
            "3",
            "8",
            "true",
        ],
        ["INSERT", "FINISHED", "pipeline.sql", "4", "1", "8", "true"],
        [
            "CREATE TABLE",
            "FINISHED",
            "pipeline.sql",
            "5",
            "3",
            "8",
            "true",
        ],
        ["INSERT", "FINISHED", "pipeline.sql", "7", "1", "8", "true"],
        ["DELETE", "FINISHED", "pipeline.sql", "8", "3", "8", "true"],
        ["SELECT", "FAILED", "NULL", "NULL", "NULL", "8", "false"],
    ];
    assert_eq!(got, expected.map(|r| r.map(String::from).to_vec()).to_vec());
    let failed = later
        .execute("SELECT error_message FROM system.query.history WHERE execution_status = 'FAILED'")
        .await
        .unwrap();
    assert!(
        rows(&failed.batches)[0][0].contains("main.h.missing"),
        "{:?}",
        rows(&failed.batches)
    );

    let lineage = later
        .execute(
            "SELECT target_table_full_name, target_table_version, source_table_full_name, \
                    source_type, source_table_version, operation, entity_id \
             FROM system.access.table_lineage ORDER BY event_time, record_id",
        )
        .await
        .unwrap();
    let got = rows(&lineage.batches);
    let expected = [
        [
            "main.h.a",
            "1",
            "NULL",
            "NULL",
            "NULL",
            "CREATE TABLE AS SELECT",
        ],
        // What an append writes on top of is one of its inputs.
        ["main.h.a", "2", "main.h.a", "TABLE", "1", "WRITE"],
        [
            "main.h.b",
            "1",
            "main.h.a",
            "TABLE",
            "2",
            "CREATE OR REPLACE TABLE AS SELECT",
        ],
        ["main.h.b", "2", "main.h.b", "TABLE", "1", "WRITE"],
        ["main.h.b", "2", "main.h.a", "TABLE", "1", "WRITE"],
        ["main.h.b", "3", "main.h.b", "TABLE", "2", "DELETE"],
    ];
    let expected: Vec<Vec<String>> = expected
        .iter()
        .map(|r| {
            let mut r: Vec<String> = r.iter().map(|s| s.to_string()).collect();
            r.push("pipeline.sql".into());
            r
        })
        .collect();
    assert_eq!(got, expected);

    // Each version names the statement and script line that made it, and its parameters.
    let described = wh.rows("DESCRIBE HISTORY main.h.b").await;
    let statements = wh
        .rows("SELECT script_line, statement_id FROM system.query.history WHERE script_line >= 5")
        .await;
    let statement = |line: &str| statements.iter().find(|r| r[0] == line).unwrap()[1].clone();
    assert_eq!(described.len(), 3);
    assert_eq!(described[0][0], "3");
    assert_eq!(described[0][2], "DELETE");
    assert_eq!(described[0][3], "{predicate: id = 3}");
    assert_eq!(described[0][4], statement("8"));
    assert_eq!(described[0][5], "pipeline.sql:8");
    assert_eq!(described[1][3], "{mode: Append}");
    assert_eq!(described[1][5], "pipeline.sql:7");
    assert_eq!(described[2][4], statement("5"));
}

#[tokio::test]
async fn a_temporary_view_is_a_source_with_the_tables_under_it() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE main.default.p AS SELECT * FROM (VALUES (1), (2), (3)) AS t(id)")
        .await;
    wh.sql("INSERT INTO main.default.p VALUES (4)").await;
    wh.sql("CREATE TEMPORARY VIEW few AS SELECT id FROM main.default.p WHERE id < 3")
        .await;
    // A write after the view was made: the view still reads the version it was planned on.
    wh.sql("INSERT INTO main.default.p VALUES (0)").await;
    wh.sql("CREATE TABLE main.default.q AS SELECT id * 10 AS id FROM few")
        .await;
    let lineage = wh
        .rows(
            "SELECT source_type, source_table_full_name, source_table_version, \
                    source_view_definition IS NOT NULL \
             FROM system.access.table_lineage WHERE target_table_name = 'q' ORDER BY record_id",
        )
        .await;
    assert_eq!(
        lineage,
        [
            ["VIEW", "main.default.few", "NULL", "true"],
            ["TABLE", "main.default.p", "2", "false"],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    assert_eq!(wh.value("SELECT COUNT(*) FROM main.default.q").await, "2");
}

/// Copies a fixture model folder, so that a test can change its files.
fn model_copy(dir: &std::path::Path, fixture: &str) -> std::path::PathBuf {
    let to = dir.join(fixture);
    std::fs::create_dir_all(&to).unwrap();
    for file in std::fs::read_dir(clip_fixture(fixture)).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
    }
    to
}

/// A pipeline of every kind of write, with a model, a time zone, the clock and a temporary view.
async fn pipeline(wh: &TestWarehouse, model: &std::path::Path) {
    let script = format!(
        "\
SET vitrine.model.clip = '{}';
SET TIME ZONE 'Asia/Kolkata';
CREATE TABLE main.default.items AS
  SELECT * FROM (VALUES (1, 'red dress', 10.5), (2, 'blue jeans', 40.0), (3, 'green scarf', 7.25))
  AS t(id, name, price);
CREATE TEMPORARY VIEW cheap AS SELECT * FROM main.default.items WHERE price < 20;
CREATE OR REPLACE TABLE main.default.embedded AS
  SELECT id, name, clip_text_embed(name) AS v, CAST(TIMESTAMP '2026-01-01 00:00:00' AS STRING) AS local,
         current_timestamp() AS made
  FROM cheap;
INSERT INTO main.default.embedded
  SELECT id, name, clip_text_embed(name), 'later', current_timestamp() FROM main.default.items WHERE id = 2;
UPDATE main.default.embedded SET name = upper(name) WHERE id = 1;
MERGE INTO main.default.embedded AS e USING (SELECT 3 AS id, 'teal scarf' AS name) AS s ON e.id = s.id
  WHEN MATCHED THEN UPDATE SET name = s.name;
DELETE FROM main.default.embedded WHERE id = 2;
",
        model.display()
    );
    wh.session
        .run_script(&script, "pipeline.sql")
        .await
        .unwrap();
}

fn embedded() -> QualifiedName {
    QualifiedName {
        catalog: "main".into(),
        schema: "default".into(),
        table: "embedded".into(),
    }
}

fn request(version: Option<u64>, chain: bool) -> reproduce::Request {
    reproduce::Request {
        table: embedded(),
        version,
        chain,
        overrides: Vec::new(),
    }
}

#[tokio::test]
async fn every_version_of_a_pipeline_is_rederived_identically_from_its_lineage() {
    let wh = TestWarehouse::new().await;
    let models = tempfile::tempdir().unwrap();
    let model = model_copy(models.path(), "tiny-a");
    pipeline(&wh, &model).await;
    let engine = wh.session.engine();

    let steps = reproduce::reproduce(engine, &request(None, true), &|_| {})
        .await
        .unwrap();
    let done: Vec<(String, u64, bool)> = steps
        .iter()
        .map(|s| (s.table.to_string(), s.version, s.identical()))
        .collect();
    assert_eq!(
        done,
        [
            ("main.default.items".to_string(), 1, true),
            ("main.default.embedded".to_string(), 1, true),
            ("main.default.embedded".to_string(), 2, true),
            ("main.default.embedded".to_string(), 3, true),
            ("main.default.embedded".to_string(), 4, true),
            ("main.default.embedded".to_string(), 5, true),
        ],
        "{steps:#?}"
    );
    assert_eq!(steps[5].rows, 2);
    assert_eq!(steps[1].script.as_deref(), Some("pipeline.sql:7"));
    // Re-deriving leaves nothing behind: the scratch schemas are gone.
    let schemas = wh.rows("SHOW SCHEMAS IN main").await;
    assert!(
        schemas.iter().all(|s| !s[0].starts_with("__reproduce")),
        "{schemas:?}"
    );

    // What the time zone changes is reported, column and values.
    let mut other_zone = request(Some(1), false);
    other_zone.overrides = vec![("spark.sql.session.timeZone".into(), "UTC".into())];
    let step = &reproduce::reproduce(engine, &other_zone, &|_| {})
        .await
        .unwrap()[0];
    let Comparison::Differs(lines) = &step.comparison else {
        panic!("a zone-dependent column should differ: {step:?}")
    };
    assert!(
        lines.iter().any(|l| l == "columns that differ: local"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("id = ") && l.contains("local: ")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_changed_model_file_is_reported_and_a_lost_input_fails_clearly() {
    let wh = TestWarehouse::new().await;
    let models = tempfile::tempdir().unwrap();
    let model = model_copy(models.path(), "tiny-a");
    pipeline(&wh, &model).await;
    let engine = wh.session.engine();

    // Retrained weights in the same folder (the same shapes, each value's lowest bits changed):
    // the vectors and the model's revision differ.
    let weights = model.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for low_byte in bytes[header..].iter_mut().step_by(4) {
        *low_byte ^= 0x55;
    }
    std::fs::write(&weights, bytes).unwrap();
    let step = &reproduce::reproduce(engine, &request(Some(1), false), &|_| {})
        .await
        .unwrap()[0];
    assert!(!step.identical());
    assert_eq!(step.model_changes.len(), 1, "{step:?}");
    assert!(step.model_changes[0].starts_with("clip: "), "{step:?}");
    let Comparison::Differs(lines) = &step.comparison else {
        panic!("other weights should change the vectors: {step:?}")
    };
    assert!(
        lines.iter().any(|l| l == "columns that differ: v"),
        "{lines:?}"
    );

    // A model that is gone.
    let moved = models.path().join("elsewhere");
    std::fs::rename(&model, &moved).unwrap();
    let error = reproduce::reproduce(engine, &request(Some(1), false), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("re-running statement") && error.contains(&*model.to_string_lossy()),
        "{error}"
    );
    std::fs::rename(&moved, &model).unwrap();

    // A source version that is gone: its manifest removed, as a vacuum would.
    let manifest = wh
        .path()
        .join("main/default/items/_versions")
        .read_dir()
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "manifest"))
        .unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let error = reproduce::reproduce(engine, &request(Some(1), false), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("main.default.items version 1") && error.contains("no longer available"),
        "{error}"
    );
}

/// The main job on a small demo catalog drawn with `seed`, which also seeds its statements, with
/// the scripted SmolVLM and the tiny CLIP, its clock fixed.
async fn main_job(seed: u64) -> TestWarehouse {
    let (wh, _) = TestWarehouse::with_demo_catalog(40, seed, true).await;
    let smolvlm = repo_path("tests/fixtures/smolvlm/scripted");
    wh.sql(&format!(
        "SET vitrine.model.smolvlm = '{}'",
        smolvlm.display()
    ))
    .await;
    wh.sql(&format!("SET vitrine.seed = {seed}")).await;
    wh.sql("SET vitrine.clock = '2026-12-01T09:00:00Z'").await;
    for script in [
        "00_load_products.sql",
        "01_extract_attributes.sql",
        "02_join_enriched_attributes.sql",
        "03_generate_embeddings.sql",
        "04_vector_indexes.sql",
    ] {
        wh.run_sql_file(script).await;
    }
    wh
}

/// Each table of the demo schema with the digest of its content.
async fn digests(wh: &TestWarehouse) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in wh.rows("SHOW TABLES IN main.fashion_demo").await {
        let name = table[1].clone();
        let df = wh
            .session
            .plan_sql(&format!("SELECT * FROM main.fashion_demo.{name}"))
            .await
            .unwrap();
        out.push((name, Content::read(df).await.unwrap().digest()));
    }
    out
}

#[tokio::test]
async fn the_main_job_is_recorded_rederived_identically_and_repeats_byte_for_byte() {
    let wh = main_job(3).await;
    let tables = digests(&wh).await;
    let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    for phase_output in [
        "products",
        "product_extracted_attributes",
        "products_enriched_descriptions",
        "products_with_visual_attributes",
        "product_image_embeddings",
        "product_embeddings_multimodal_v2",
    ] {
        assert!(names.contains(&phase_output), "{names:?}");
    }

    // Every table has lineage naming what it read, with versions.
    for (table, _) in &tables {
        let sources = wh
            .rows(&format!(
                "SELECT DISTINCT source_type, coalesce(source_table_full_name, source_path), \
                        source_table_version \
                 FROM system.access.table_lineage \
                 WHERE target_table_full_name = 'main.fashion_demo.{table}' AND source_type IS NOT NULL"
            ))
            .await;
        assert!(!sources.is_empty(), "{table} has no recorded sources");
        for source in &sources {
            assert!(
                source[0] == "PATH" || source[0] == "VIEW" || source[2] != "NULL",
                "{table}: a table read without its version: {source:?}"
            );
        }
    }
    let multimodal = wh
        .rows(
            "SELECT DISTINCT source_table_full_name FROM system.access.table_lineage \
             WHERE target_table_name = 'product_embeddings_multimodal_v2' ORDER BY 1",
        )
        .await;
    assert_eq!(
        multimodal,
        [
            ["main.fashion_demo.product_image_embeddings"],
            ["main.fashion_demo.products_with_visual_attributes"],
        ]
        .map(|r| r.map(String::from).to_vec())
    );

    // The current version of each phase's output table, re-derived from its lineage.
    let engine = wh.session.engine();
    for table in [
        "products",
        "product_extracted_attributes",
        "products_with_visual_attributes",
        "product_embeddings_multimodal_v2",
    ] {
        let request = reproduce::Request {
            table: QualifiedName {
                catalog: "main".into(),
                schema: "fashion_demo".into(),
                table: table.into(),
            },
            version: None,
            chain: false,
            overrides: Vec::new(),
        };
        let steps = reproduce::reproduce(engine, &request, &|_| {})
            .await
            .unwrap();
        assert!(steps[0].identical(), "{table}: {:?}", steps[0]);
        assert!(steps[0].rows > 0);
    }

    // A second fresh run with the same seed holds the same bytes; another seed does not.
    assert_eq!(digests(&main_job(3).await).await, tables);
    let other = digests(&main_job(4).await).await;
    for ((table, digest), (_, other)) in tables.iter().zip(&other) {
        assert_ne!(digest, other, "{table} should differ with another seed");
    }
}

#[tokio::test]
async fn a_statement_that_cannot_be_recorded_still_runs_and_says_so() {
    let wh = TestWarehouse::new().await;
    // Where the records go is a file: no record can be written.
    std::fs::write(wh.path().join("_system"), b"not a folder").unwrap();
    let result = wh
        .sql("CREATE TABLE main.default.kept AS SELECT 1 AS id")
        .await;
    assert!(
        result
            .warnings
            .iter()
            .any(|w| w.contains("not recorded in system.query.history")),
        "{:?}",
        result.warnings
    );
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM main.default.kept").await,
        "1"
    );
}

#[tokio::test]
async fn rand_and_tablesample_draw_from_the_statements_seed() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE main.default.n AS SELECT value AS id FROM range(2000)")
        .await;
    // One partition: the rows reach rand() in the same batches every time.
    wh.sql("SET datafusion.execution.target_partitions = 1")
        .await;
    let sample = "SELECT id FROM main.default.n TABLESAMPLE (10 PERCENT) ORDER BY id";
    wh.sql("SET vitrine.seed = 11").await;
    let first = wh.rows(sample).await;
    assert!((120..280).contains(&first.len()), "{} of 2000", first.len());
    assert_eq!(
        wh.rows(sample).await,
        first,
        "the same seed, the same sample"
    );
    let shuffled = "SELECT id FROM main.default.n ORDER BY rand() LIMIT 5";
    let order = wh.rows(shuffled).await;
    assert_eq!(wh.rows(shuffled).await, order);
    wh.sql("SET vitrine.seed = 12").await;
    assert_ne!(wh.rows(sample).await, first, "another seed, another sample");
    assert_ne!(wh.rows(shuffled).await, order);
    // Without vitrine.seed, each statement draws one and records it; REPEATABLE fixes it.
    wh.sql("RESET vitrine.seed").await;
    let repeatable =
        "SELECT COUNT(*) FROM main.default.n TABLESAMPLE (BUCKET 1 OUT OF 4) REPEATABLE (5)";
    let count = wh.value(repeatable).await;
    assert_eq!(wh.value(repeatable).await, count);
    let seeds = wh
        .rows("SELECT DISTINCT seed FROM system.query.history WHERE statement_text LIKE '%BUCKET 1 OUT OF 4%'")
        .await;
    assert_eq!(
        seeds.len(),
        2,
        "each statement drew its own seed: {seeds:?}"
    );
}
