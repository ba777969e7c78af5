//! The command line: output formats, and errors located as `FILE:LINE: statement N: message`.

use std::process::Command;

fn vitrine(warehouse: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .arg("--warehouse")
        .arg(warehouse)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_failing_script_names_file_line_and_statement_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        "CREATE TABLE a AS SELECT 1 AS x;\n\n-- next\nSELECT x\nFROM nope;\nSELECT 2;\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = vitrine(dir.path(), &["run", script.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{}:4: statement 2:", script.display())),
        "{stderr}"
    );
    assert!(!stdout.contains("| 2 "), "stopped at the error: {stdout}");

    let (ok, stdout, _) = vitrine(
        dir.path(),
        &["run", "--continue-on-error", script.to_str().unwrap()],
    );
    assert!(!ok, "a failure still fails the run");
    assert!(stdout.contains("| 2 "), "went on after the error: {stdout}");
}

#[test]
fn results_print_as_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = vitrine(
        dir.path(),
        &[
            "run",
            "--format",
            "csv",
            "-e",
            "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y' ORDER BY a",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "a,b\n1,x\n2,y\n");
    let (ok, stdout, _) = vitrine(
        dir.path(),
        &[
            "run",
            "--format",
            "jsonl",
            "-e",
            "SELECT 7 / 2 AS half, CAST(NULL AS INT) AS none",
        ],
    );
    assert!(ok);
    assert_eq!(stdout.trim(), r#"{"half":3.5,"none":null}"#);
    // JSON: one document per result set, saying which statement of which script it answers.
    let script = dir.path().join("two.sql");
    std::fs::write(&script, "SELECT 1 AS a;\n\nSELECT make_array('x') AS b;\n").unwrap();
    let (ok, stdout, stderr) = vitrine(
        dir.path(),
        &["run", "--format", "json", script.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    let documents: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(documents.len(), 2, "{stdout}");
    assert_eq!(documents[1]["file"], script.display().to_string());
    assert_eq!(documents[1]["statement"], 2);
    assert_eq!(documents[1]["line"], 3);
    assert_eq!(documents[1]["columns"][0]["type"], "array<string>");
    assert_eq!(documents[1]["rows"], serde_json::json!([{"b": ["x"]}]));
}

#[test]
fn demo_data_writes_the_catalog_files_deterministically() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        let (ok, _, stderr) = vitrine(
            dir.path(),
            &["demo-data", "--products", "50", "--seed", "3"],
        );
        assert!(ok, "{stderr}");
    }
    let raw = "Volumes/main/fashion_demo/raw_data";
    let styles = std::fs::read(a.path().join(raw).join("styles.csv")).unwrap();
    assert_eq!(
        styles,
        std::fs::read(b.path().join(raw).join("styles.csv")).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(a.path().join(raw).join("images"))
            .unwrap()
            .count(),
        50
    );
    let image = std::fs::read(a.path().join(raw).join("images/10007.jpg")).unwrap();
    assert_eq!(&image[..2], &[0xFF, 0xD8], "a JPEG");
}

/// `vitrine bench clip` on a folder holding a model, texts and photos: a row of rates per batch
/// size.
#[test]
fn the_clip_benchmark_measures_texts_and_photos_per_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/tiny-a");
    std::os::unix::fs::symlink(&model, dir.path().join("model")).unwrap();
    std::fs::write(dir.path().join("texts.txt"), "red shirt\nblue jeans\n").unwrap();
    let photo = dir.path().join("photo.png");
    image::RgbImage::from_pixel(40, 60, image::Rgb([200, 20, 20]))
        .save(&photo)
        .unwrap();
    std::fs::write(
        dir.path().join("images.txt"),
        format!("{}\n", photo.display()),
    )
    .unwrap();
    let (ok, stdout, stderr) = vitrine(
        &dir.path().join("unused"),
        &[
            "bench",
            "clip",
            dir.path().to_str().unwrap(),
            "--batch-sizes",
            "1,2",
            "--repeat",
            "1",
        ],
    );
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, batch) in rows[1..].iter().zip(["1", "2"]) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[0], batch, "{row}");
        for rate in &cells[1..] {
            assert!(rate.parse::<f64>().unwrap() > 0.0, "{row}");
        }
    }
}

/// `vitrine bench vectors` on a fresh folder: it builds its own warehouse, searches it, and
/// writes its figures and each query's top-10 to vitrine.json.
#[test]
fn the_vector_benchmark_runs_on_a_fresh_folder_and_writes_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vb");
    let (ok, stdout, stderr) = vitrine(
        &dir.path().join("unused"),
        &[
            "bench",
            "vectors",
            out.to_str().unwrap(),
            "--rows",
            "600",
            "--queries",
            "5",
            "--dimension",
            "16",
            "--clusters",
            "4",
            "--syncs",
            "2",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("600 rows × 16"), "{stdout}");
    for row in [
        "| SQL statement, query vector as $1 |",
        "| in-process API, one query per call |",
        "| Lance scanner alone |",
        "| SQL, filters 'bucket = 7' |",
        "| search in memory |",
        "after 2 syncs of 1 % changes",
    ] {
        assert!(stdout.contains(row), "{row} in {stdout}");
    }
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("vitrine.json")).unwrap()).unwrap();
    assert_eq!(figures["top10"].as_array().unwrap().len(), 5);
    let recalls = [
        &figures["recall_at_10"],
        &figures["lance_recall_at_10"],
        &figures["in_process"]["recall_at_10"],
        &figures["filtered"][0]["sql"]["recall_at_10"],
        &figures["filtered"][1]["in_process"]["recall_at_10"],
        &figures["after_syncs"]["paths"]["SQL statement, query vector as $1"]["recall_at_10"],
    ];
    for recall in recalls {
        let recall = recall.as_f64().unwrap();
        assert!((0.5..=1.0).contains(&recall), "{recall} in {figures}");
    }
    assert_eq!(figures["concurrency"].as_array().unwrap().len(), 3);
    assert!(figures["sweep"].as_array().unwrap().len() >= 2, "{figures}");
}

#[test]
fn lineage_draws_a_tables_ancestry_and_reproduce_says_identical_or_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("prices.csv");
    std::fs::write(&csv, "id,price\n1,10\n2,25\n3,40\n").unwrap();
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE raw AS SELECT * FROM read_files('{}', format => 'csv', header => true);\n\
             CREATE TABLE priced AS\n  SELECT id, price, CAST(TIMESTAMP '2026-01-01 00:00:00' AS STRING) AS day FROM raw;\n",
            csv.display()
        ),
    )
    .unwrap();
    let (ok, _, stderr) = vitrine(dir.path(), &["run", script.to_str().unwrap()]);
    assert!(ok, "{stderr}");

    let (ok, tree, stderr) = vitrine(dir.path(), &["lineage", "main.default.priced"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], "main.default.priced version 1", "{tree}");
    assert!(lines[1].contains("job.sql:2"), "{tree}");
    assert!(tree.contains("main.default.raw version 1"), "{tree}");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with(&format!("files {}", csv.display())),
        "{tree}"
    );
    let (ok, dot, _) = vitrine(dir.path(), &["lineage", "priced", "--format", "dot"]);
    assert!(
        ok && dot.starts_with("digraph lineage {") && dot.matches(" -> ").count() == 4,
        "{dot}"
    );

    let (ok, stdout, stderr) = vitrine(dir.path(), &["reproduce", "priced", "--chain"]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "main.default.raw version 1 by {file}:1: identical (3 rows)\n\
             main.default.priced version 1 by {file}:2: identical (3 rows)\n",
            file = script.display()
        )
    );
    let (ok, stdout, _) = vitrine(
        dir.path(),
        &[
            "reproduce",
            "priced VERSION AS OF 1",
            "--set",
            "spark.sql.session.timeZone=Asia/Tokyo",
        ],
    );
    assert!(!ok, "a difference exits non-zero");
    assert!(
        stdout.contains("DIFFERS") && stdout.contains("columns that differ: day"),
        "{stdout}"
    );
}
