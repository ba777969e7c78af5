//! Model objects: `CREATE MODEL` fine-tunes the fixture CLIP on the demo catalog's photos and
//! descriptions; the model is listed, described with its lineage and loss curve, used by name
//! through `vitrine.model.clip`, replaced, and dropped; bad statements are named and change
//! nothing.

use crate::support::{clip_fixture, repo_path, TestWarehouse};

fn create_sql(name: &str, extra: &str) -> String {
    format!(
        "CREATE {extra} MODEL main.fashion_demo.{name} OPTIONS (model_type = 'clip', base = '{}', \
         epochs = 3, batch_size = 8, learning_rate = 1e-3, eval_fraction = 0.2, seed = 5) \
         AS SELECT image_path AS image, concat_ws(' ', base_colour_word, article_type) AS text \
         FROM (SELECT *, lower(base_color) AS base_colour_word FROM main.fashion_demo.products)",
        clip_fixture("tiny-a")
    )
}

/// A `loss curve` without the seconds each epoch took: the losses alone, to compare two trainings.
fn losses_of(curve: &str) -> String {
    curve
        .split("; ")
        .map(|epoch| epoch.rsplit_once(" (").map_or(epoch, |(losses, _)| losses))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe(rows: &[Vec<String>], property: &str) -> String {
    rows.iter()
        .find(|r| r[0] == property)
        .unwrap_or_else(|| panic!("no {property} in {rows:?}"))[1]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_model_fine_tunes_clip_into_a_model_object_used_by_name() {
    let (wh, _) = TestWarehouse::with_demo_catalog(48, 4, true).await;
    wh.run_sql_file("00_load_products.sql").await;
    // The ground truth's fixed split: 3 ids in 16 (by their MD5) are held out.
    let split = wh
        .rows("SELECT split, COUNT(*) FROM main.fashion_demo.products_ground_truth GROUP BY split ORDER BY split")
        .await;
    assert_eq!(split.len(), 2, "{split:?}");
    assert_eq!(
        (split[0][0].as_str(), split[1][0].as_str()),
        ("test", "train")
    );
    let held_out: usize = split[0][1].parse().unwrap();
    assert!((2..=20).contains(&held_out), "{held_out} of 48 held out");
    let before = wh.vectors("SELECT clip_text_embed('red tshirts')").await;

    let created = wh.sql(&create_sql("clip_ft", "")).await;
    let message = created.message.unwrap();
    assert!(
        message.starts_with("created model main.fashion_demo.clip_ft (clip"),
        "{message}"
    );

    let shown = wh.rows("SHOW MODELS IN main.fashion_demo").await;
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0][..2], ["main.fashion_demo.clip_ft", "clip"]);
    let described = wh.rows("DESCRIBE MODEL main.fashion_demo.clip_ft").await;
    let train_rows: usize = describe(&described, "train_rows").parse().unwrap();
    assert_eq!(
        describe(&described, "grouped_rows"),
        "0",
        "no batch_key column"
    );
    let eval_rows: usize = describe(&described, "eval_rows").parse().unwrap();
    assert_eq!(train_rows + eval_rows, 48);
    assert!(eval_rows > 0 && eval_rows < 20, "{eval_rows} held out");
    assert!(
        describe(&described, "tables read")
            .starts_with("main.fashion_demo.products VERSION AS OF "),
        "{described:?}"
    );
    let curve = describe(&described, "loss curve");
    assert_eq!(curve.matches("epoch ").count(), 3, "{curve}");
    let revision = describe(&described, "revision");
    assert!(revision.starts_with("sha256:"));

    // The loss went down on the training rows.
    let losses: Vec<f64> = curve
        .split("; ")
        .map(|e| {
            let train = e.split("train ").nth(1).unwrap();
            train.split(',').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(losses[2] < losses[0], "{curve}");

    // Used by name: the same vectors as the folder it was written to, not the base's.
    wh.sql("SET vitrine.model.clip = 'main.fashion_demo.clip_ft'")
        .await;
    let tuned = wh.vectors("SELECT clip_text_embed('red tshirts')").await;
    assert_ne!(tuned, before, "fine-tuning changed the text tower");
    let location = describe(&described, "location");
    assert!(std::path::Path::new(&location)
        .join("tokenizer.json")
        .is_file());
    wh.sql(&format!("SET vitrine.model.clip = '{location}'"))
        .await;
    assert_eq!(
        wh.vectors("SELECT clip_text_embed('red tshirts')").await,
        tuned
    );

    // Bad statements are named and change nothing.
    let error = wh.error(&create_sql("clip_ft", "")).await;
    assert!(
        error.contains("model main.fashion_demo.clip_ft already exists"),
        "{error}"
    );
    let kept = wh
        .sql(&create_sql("clip_ft", "").replace("MODEL main", "MODEL IF NOT EXISTS main"))
        .await;
    assert_eq!(
        kept.message.unwrap(),
        "model main.fashion_demo.clip_ft already exists"
    );
    let error = wh
        .error(&create_sql("clip_ft", "OR REPLACE").replace("AS text", "AS words"))
        .await;
    assert!(
        error.contains("columns named image and text") && error.contains("words"),
        "{error}"
    );
    let error = wh
        .error(&create_sql("other", "").replace("'clip'", "'bert'"))
        .await;
    assert!(error.contains("bert") && error.contains("clip"), "{error}");
    let error = wh
        .error(&create_sql("other", "").replace("epochs = 3", "epochs = 'many'"))
        .await;
    assert!(
        error.contains("option epochs takes a whole number, got 'many'"),
        "{error}"
    );
    let again = wh.rows("DESCRIBE MODEL main.fashion_demo.clip_ft").await;
    assert_eq!(
        describe(&again, "revision"),
        revision,
        "the failed replace left it whole"
    );
    assert_eq!(wh.rows("SHOW MODELS IN main.fashion_demo").await.len(), 1);

    // Replaced: a new revision, the old files gone; then dropped.
    wh.sql(&create_sql("clip_ft", "OR REPLACE").replace("seed = 5", "seed = 6"))
        .await;
    let replaced = wh.rows("DESCRIBE MODEL main.fashion_demo.clip_ft").await;
    assert_ne!(describe(&replaced, "revision"), revision);
    // Rows batched by a key: every training row with one (a NULL key would be batched apart).
    wh.sql(
        &create_sql("clip_keyed", "")
            .replace(" AS text FROM", " AS text, article_type AS batch_key FROM"),
    )
    .await;
    let keyed = wh.rows("DESCRIBE MODEL main.fashion_demo.clip_keyed").await;
    assert_eq!(
        describe(&keyed, "grouped_rows"),
        describe(&keyed, "train_rows")
    );
    assert_ne!(
        losses_of(&describe(&keyed, "loss curve")),
        losses_of(&curve),
        "other batches, other losses"
    );
    wh.sql("DROP MODEL main.fashion_demo.clip_keyed").await;
    // Shoppers' queries that say what they ask for: every product of the batch whose labels
    // hold it is a match, so the same rows train otherwise than with each query matching its
    // own row only. The queries name the gender too: were two rows' queries the same text, the
    // shared target would give the same loss as each query matching its own row.
    let with_query = |name: &str, columns: &str| {
        create_sql(name, "").replace(
            " AS text FROM",
            &format!(" AS text, concat_ws(' ', gender, article_type) AS query{columns} FROM"),
        )
    };
    wh.sql(&with_query("clip_queried", "")).await;
    wh.sql(&with_query(
        "clip_asking",
        ", array(article_type, base_color) AS labels, array(article_type) AS asks",
    ))
    .await;
    let curve_of = |rows: &[Vec<String>]| losses_of(&describe(rows, "loss curve"));
    let queried = curve_of(
        &wh.rows("DESCRIBE MODEL main.fashion_demo.clip_queried")
            .await,
    );
    let asking = curve_of(
        &wh.rows("DESCRIBE MODEL main.fashion_demo.clip_asking")
            .await,
    );
    assert_ne!(queried, asking, "matches by label change the loss");
    let error = wh
        .error(&with_query("clip_bad_asks", ", article_type AS asks"))
        .await;
    assert!(
        error.contains("column asks") && error.contains("expected an array of strings, got Utf8"),
        "{error}"
    );
    for name in ["clip_queried", "clip_asking"] {
        wh.sql(&format!("DROP MODEL main.fashion_demo.{name}"))
            .await;
    }
    assert!(
        !std::path::Path::new(&location).exists(),
        "old revision removed"
    );
    wh.sql("DROP MODEL main.fashion_demo.clip_ft").await;
    assert!(wh.rows("SHOW MODELS IN main.fashion_demo").await.is_empty());
    let error = wh.error("DESCRIBE MODEL main.fashion_demo.clip_ft").await;
    assert!(
        error.contains("model main.fashion_demo.clip_ft does not exist"),
        "{error}"
    );
    wh.sql("SET vitrine.model.clip = 'main.fashion_demo.clip_ft'")
        .await;
    let error = wh.error("SELECT clip_text_embed('red tshirts')").await;
    assert!(
        error.contains(
            "model main.fashion_demo.clip_ft: does not exist (SHOW MODELS IN main.fashion_demo"
        ),
        "{error}"
    );
}

/// Share of the catalog's photos for which the model answers the true material. (The tiny
/// fixture's 400-token vocabulary cannot spell JSON's quotes, so it learns the plain answer; its
/// tokenizer has no decoder, so words come back ending in `</w>`.)
async fn material_accuracy(wh: &TestWarehouse) -> f64 {
    wh.value(
        "SELECT AVG(CASE WHEN trim(replace(smolvlm_generate(p.image_path, 'Material?'), '</w>', ' ')) \
         = g.material THEN 1.0 ELSE 0.0 END) FROM main.fashion_demo.products p \
         JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id",
    )
    .await
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fine_tuning_the_tiny_smolvlm_on_labelled_photos_raises_its_accuracy_on_them() {
    let (wh, _) = TestWarehouse::with_demo_catalog(64, 8, true).await;
    wh.run_sql_file("00_load_products.sql").await;
    let tiny = repo_path("tests/fixtures/smolvlm/tiny");
    let tiny = tiny.to_str().unwrap();
    // One 32-pixel frame per photo: the tiny model's own tile.
    wh.sql("SET vitrine.smolvlm.longest_edge = 32").await;
    wh.sql(&format!("SET vitrine.model.smolvlm = '{tiny}'"))
        .await;
    let before = material_accuracy(&wh).await;

    let majority: f64 = wh
        .value(
            "SELECT MAX(n) / 64.0 FROM (SELECT COUNT(*) AS n FROM main.fashion_demo.products_ground_truth GROUP BY material)",
        )
        .await
        .parse()
        .unwrap();
    // Every weight, then low-rank adapters on the text model's projections only.
    for (name, options) in [
        ("vlm", "learning_rate = 3e-3"),
        (
            "vlm_lora",
            "learning_rate = 1e-2, lora_rank = 8, \
             lora_targets = 'q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj'",
        ),
    ] {
        let created = wh
            .sql(&format!(
                "CREATE MODEL main.fashion_demo.{name} OPTIONS (model_type = 'smolvlm', base = '{tiny}', \
                 epochs = 6, batch_size = 8, {options}, eval_fraction = 0) \
                 AS SELECT p.image_path AS image, 'Material?' AS prompt, g.material AS target \
                 FROM main.fashion_demo.products p \
                 JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id"
            ))
            .await;
        let message = created.message.unwrap();
        assert!(message.contains("(smolvlm, 64 training rows"), "{message}");
        wh.sql(&format!(
            "SET vitrine.model.smolvlm = 'main.fashion_demo.{name}'"
        ))
        .await;
        let after = material_accuracy(&wh).await;
        assert!(
            after > before + 0.2 && after > majority,
            "{name}: material accuracy {before} -> {after} (most common material: {majority})"
        );
    }
    let described = wh.rows("DESCRIBE MODEL main.fashion_demo.vlm_lora").await;
    let trained: usize = describe(&described, "parameters").parse().unwrap();
    let full = wh.rows("DESCRIBE MODEL main.fashion_demo.vlm").await;
    let all: usize = describe(&full, "parameters").parse().unwrap();
    assert!(
        trained * 4 < all,
        "adapters train {trained} of {all} values"
    );
}

/// A `vitrine` process killed during `CREATE MODEL` leaves its checkpoint; the same statement
/// run again resumes after the last finished epoch, and no half-trained model is published.
#[test]
fn a_killed_create_model_resumes_from_its_last_finished_epoch() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().to_str().unwrap().to_string();
    let vitrine = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
            .args(["--warehouse", &warehouse])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    vitrine(&["demo-data", "--products", "32", "--seed", "2"]);
    let load = repo_path("sql/00_load_products.sql");
    vitrine(&["run", load.to_str().unwrap()]);
    let create = format!(
        "CREATE MODEL main.fashion_demo.m OPTIONS (model_type = 'clip', base = '{}', epochs = 30, \
         batch_size = 8, learning_rate = 1e-3) AS SELECT image_path AS image, article_type AS text \
         FROM main.fashion_demo.products",
        clip_fixture("tiny-a")
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["--warehouse", &warehouse, "run", "-e", &create])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let progress = dir
        .path()
        .join("_training/main/fashion_demo/m/checkpoints/progress.json");
    let started = Instant::now();
    while !progress.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after two minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before a kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let shown = vitrine(&[
        "run",
        "--format",
        "csv",
        "-e",
        "SHOW MODELS IN main.fashion_demo",
    ]);
    assert!(
        !shown.contains("main.fashion_demo.m"),
        "nothing published: {shown}"
    );

    let output = vitrine(&["run", "-e", &create]);
    assert!(output.contains("resumed after epoch"), "{output}");
    let described = vitrine(&[
        "run",
        "--format",
        "csv",
        "-e",
        "DESCRIBE MODEL main.fashion_demo.m",
    ]);
    assert!(described.contains("resumed_after_epoch,"), "{described}");
    assert!(
        !progress.exists(),
        "the scratch folder is removed once published"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clip_trained_from_scratch_learns_its_tokenizer_and_repeats_with_its_seed() {
    let (wh, _) = TestWarehouse::with_demo_catalog(24, 6, true).await;
    wh.run_sql_file("00_load_products.sql").await;
    let create = |seed: u64| {
        format!(
            "CREATE OR REPLACE MODEL main.fashion_demo.scratch OPTIONS (model_type = 'clip', \
             projection_dim = 16, hidden_size = 32, layers = 1, heads = 2, image_size = 32, \
             patch_size = 8, vocab_size = 300, epochs = 2, batch_size = 8, seed = {seed}) \
             AS SELECT image_path AS image, concat_ws(' ', lower(base_color), article_type) AS text \
             FROM main.fashion_demo.products"
        )
    };
    wh.sql(&create(1)).await;
    let first = wh.rows("DESCRIBE MODEL main.fashion_demo.scratch").await;
    assert_eq!(describe(&first, "base"), "(from scratch)");
    let location = std::path::PathBuf::from(describe(&first, "location"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(location.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["projection_dim"], 16);
    assert_eq!(config["vision_config"]["image_size"], 32);
    let vocabulary = config["text_config"]["vocab_size"].as_u64().unwrap();
    assert!(
        (50..=300).contains(&vocabulary),
        "{vocabulary} tokens learnt"
    );
    assert!(location.join("tokenizer.json").is_file());

    wh.sql("SET vitrine.model.clip = 'main.fashion_demo.scratch'")
        .await;
    let vectors = wh.vectors("SELECT clip_text_embed('red tshirts')").await;
    assert_eq!(vectors[0].as_ref().map(Vec::len), Some(16));

    wh.sql(&create(1)).await;
    let again = wh.rows("DESCRIBE MODEL main.fashion_demo.scratch").await;
    assert_eq!(
        describe(&again, "revision"),
        describe(&first, "revision"),
        "same seed, same weights"
    );
    // The same rows in another order: the held-out rows and the shuffle are drawn from the rows
    // in a canonical order, not the order the query happened to give them in.
    wh.sql(&format!("{} ORDER BY product_id DESC", create(1)))
        .await;
    let reordered = wh.rows("DESCRIBE MODEL main.fashion_demo.scratch").await;
    assert_eq!(
        describe(&reordered, "revision"),
        describe(&first, "revision"),
        "same rows in another order, same weights"
    );
    wh.sql(&create(2)).await;
    let other = wh.rows("DESCRIBE MODEL main.fashion_demo.scratch").await;
    assert_ne!(describe(&other, "revision"), describe(&first, "revision"));
    let error = wh.error(&create(3).replace("heads = 2", "heads = 3")).await;
    assert!(error.contains("multiple of heads"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_smolvlm_trained_from_scratch_learns_to_answer_in_json() {
    let (wh, _) = TestWarehouse::with_demo_catalog(40, 9, true).await;
    wh.run_sql_file("00_load_products.sql").await;
    let error = wh
        .error(
            "CREATE MODEL main.fashion_demo.vlm OPTIONS (model_type = 'smolvlm', vocab_size = 200) \
             AS SELECT image_path AS image, 'x' AS target FROM main.fashion_demo.products",
        )
        .await;
    assert!(error.contains("vocab_size must be above 298"), "{error}");
    wh.sql(
        "CREATE MODEL main.fashion_demo.vlm OPTIONS (model_type = 'smolvlm', image_size = 32, \
         epochs = 10, batch_size = 8, learning_rate = 3e-3, eval_fraction = 0) \
         AS SELECT p.image_path AS image, 'Attributes?' AS prompt, \
                   to_json(named_struct('material', g.material, 'pattern', g.pattern)) AS target \
         FROM main.fashion_demo.products p \
         JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id",
    )
    .await;
    let described = wh.rows("DESCRIBE MODEL main.fashion_demo.vlm").await;
    assert_eq!(describe(&described, "base"), "(from scratch)");
    let location = std::path::PathBuf::from(describe(&described, "location"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(location.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["text_config"]["hidden_size"], 64);
    assert_eq!(config["vision_config"]["image_size"], 32);
    assert_eq!(config["vitrine_extraction_prompt"], "Attributes?");

    wh.sql("SET vitrine.model.smolvlm = 'main.fashion_demo.vlm'")
        .await;
    let parsed: f64 = wh
        .value(
            "SELECT AVG(CASE WHEN smolvlm_extract(image_path, 'Attributes?').extraction_success \
             THEN 1.0 ELSE 0.0 END) FROM main.fashion_demo.products",
        )
        .await
        .parse()
        .unwrap();
    assert!(parsed >= 0.9, "{parsed} of the replies parse as JSON");
    // Without a prompt, smolvlm_extract asks the question the model was trained on.
    let differing = wh
        .value(
            "SELECT COUNT(*) FROM main.fashion_demo.products WHERE \
             smolvlm_extract(image_path).raw_response \
             <> smolvlm_extract(image_path, 'Attributes?').raw_response",
        )
        .await;
    assert_eq!(differing, "0");
    let error = wh
        .error(
            "CREATE MODEL main.fashion_demo.bad OPTIONS (model_type = 'smolvlm', lora_rank = 4) \
             AS SELECT image_path AS image, 'x' AS target FROM main.fashion_demo.products",
        )
        .await;
    assert!(error.contains("lora_rank adapts a base model"), "{error}");
}
