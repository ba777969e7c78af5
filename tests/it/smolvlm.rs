//! The SmolVLM functions in SQL with the tiny fixture models: `smolvlm_generate` gives the model's
//! own answers, batched or not, greedy or seeded; NULLs, unreadable and malformed photos under
//! both `on_error` modes; the longest-edge setting; `smolvlm_extract`'s struct from a JSON reply
//! (the scripted model) or the reason there is none; the model recorded in a written table.

use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::runtime::placement::Placement;
use vitrine_udfs::runtime::source::Hub;
use vitrine_udfs::smolvlm::model::{SmolVlm, SMOLVLM_FILES};
use vitrine_udfs::smolvlm::prompt::chat_prompt;

use crate::support::{repo_path, TestWarehouse};

/// The tiny random-weight model (`make_model_fixtures.py`): its replies hold no JSON.
fn fixture_model() -> String {
    repo_path("tests/fixtures/smolvlm/tiny")
        .to_string_lossy()
        .into_owned()
}

/// The scripted fixture model (`make_scripted_fixture.py`) answers one fixed JSON to every
/// prompt: the whole extraction path, reply to struct, with the model recorded in every row.
fn scripted_model() -> String {
    repo_path("tests/fixtures/smolvlm/scripted")
        .to_string_lossy()
        .into_owned()
}

/// A test warehouse whose session uses the SmolVLM folder `model`.
async fn warehouse_with(model: &str) -> TestWarehouse {
    let wh = TestWarehouse::new().await;
    wh.sql(&format!("SET vitrine.model.smolvlm = '{model}'"))
        .await;
    wh
}

/// What the model itself answers, for comparison.
fn direct_answer(
    photo: &str,
    question: &str,
    max_new_tokens: usize,
    longest_edge: Option<u32>,
) -> String {
    let source = Hub::new("/nonexistent", true)
        .locate(&fixture_model(), SMOLVLM_FILES)
        .unwrap();
    let model = SmolVlm::load(&source, Placement::cpu()).unwrap();
    let processor = match longest_edge {
        Some(edge) => model.processor().with_longest_edge(edge),
        None => model.processor().clone(),
    };
    let image = processor.process(&decode_rgb(&std::fs::read(photo).unwrap()).unwrap());
    let tokens = model
        .generate(&image, &chat_prompt(question), max_new_tokens, true)
        .unwrap();
    model.decode(&tokens).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn smolvlm_generate_answers_as_the_model_does_and_handles_bad_rows() {
    let wh = warehouse_with(&fixture_model()).await;
    let photo = repo_path("tests/fixtures/clip/images/wide-97x31.png")
        .to_string_lossy()
        .into_owned();
    let got = wh
        .value(&format!(
            "SELECT smolvlm_generate('{photo}', 'Describe the garment.', 16)"
        ))
        .await;
    assert_eq!(
        got,
        direct_answer(&photo, "Describe the garment.", 16, None)
    );

    wh.sql("SET vitrine.smolvlm.longest_edge = 32").await;
    let small = wh
        .value(&format!(
            "SELECT smolvlm_generate('{photo}', 'Describe the garment.', 16)"
        ))
        .await;
    assert_eq!(
        small,
        direct_answer(&photo, "Describe the garment.", 16, Some(32))
    );

    wh.sql("CREATE SCHEMA main.s").await;
    let result = wh
        .sql(&format!(
            "CREATE TABLE main.s.answers AS SELECT id, smolvlm_generate(path, prompt, 4) AS answer FROM (VALUES \
             (1, '{photo}', 'What is it?'), (2, '{photo}', NULL), (3, '/no/such/photo.jpg', 'What is it?')) AS t(id, path, prompt)"
        ))
        .await;
    assert!(
        result.warnings[0].contains("1 row(s)")
            && result.warnings[0].contains("/no/such/photo.jpg"),
        "{:?}",
        result.warnings
    );
    let rows = wh
        .rows("SELECT id, answer IS NULL FROM main.s.answers ORDER BY id")
        .await;
    assert_eq!(
        rows,
        vec![vec!["1", "false"], vec!["2", "true"], vec!["3", "true"]]
    );
    let properties = wh.rows("SHOW TBLPROPERTIES main.s.answers").await;
    assert!(
        properties.iter().any(|r| r[0] == "vitrine.model.smolvlm"),
        "{properties:?}"
    );

    wh.sql("SET vitrine.udf.on_error = 'fail'").await;
    let err = wh
        .error("SELECT smolvlm_generate('/no/such/photo.jpg', 'x')")
        .await;
    assert!(
        err.contains("smolvlm_generate") && err.contains("/no/such/photo.jpg"),
        "{err}"
    );
    let err = wh
        .error(&format!("SELECT smolvlm_generate('{photo}', 'x', 0)"))
        .await;
    assert!(
        err.contains("max_new_tokens must be from 1 to 8192"),
        "{err}"
    );
    let err = wh.error("SET vitrine.smolvlm.longest_edge = 0").await;
    assert!(err.contains("positive integer"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn smolvlm_extract_parses_the_reply_or_says_why_not() {
    let wh = warehouse_with(&fixture_model()).await;
    wh.sql("SET vitrine.smolvlm.longest_edge = 32").await;
    let photo = repo_path("tests/fixtures/clip/images/square-40.jpg")
        .to_string_lossy()
        .into_owned();
    // The random-weight model writes no JSON: a failed extraction that keeps the reply.
    let rows = wh
        .rows(&format!(
            "SELECT e.extraction_success, e.error, e.raw_response, e.material, SIZE(e.style_keywords) FROM \
             (SELECT smolvlm_extract('{photo}', 'Describe the garment.') AS e)"
        ))
        .await;
    let expected_reply = direct_answer(&photo, "Describe the garment.", 256, Some(32));
    assert_eq!(rows[0][0], "false");
    assert!(rows[0][1].contains("JSON"), "{rows:?}");
    assert_eq!(rows[0][2], expected_reply);
    assert_eq!(rows[0][3], "NULL");
    assert_eq!(rows[0][4], "0");

    let rows = wh
        .rows(
            "SELECT smolvlm_extract(path).extraction_success, smolvlm_extract(path).error FROM \
             (VALUES ('/no/such/photo.jpg'), (NULL)) AS t(path)",
        )
        .await;
    assert_eq!(rows[0][0], "false");
    assert!(rows[0][1].contains("/no/such/photo.jpg"), "{rows:?}");
    assert_eq!(rows[1], ["NULL", "NULL"]);
}

/// Several questions of a photo: each one asked is answered as it would be alone, a NULL
/// question is not asked, and the replies and their errors merge in the order asked.
#[tokio::test(flavor = "multi_thread")]
async fn smolvlm_extract_asks_several_questions_and_merges_the_replies() {
    let wh = warehouse_with(&fixture_model()).await;
    wh.sql("SET vitrine.smolvlm.longest_edge = 32").await;
    let photo = repo_path("tests/fixtures/clip/images/square-40.jpg")
        .to_string_lossy()
        .into_owned();
    let questions = [
        "Describe the garment.",
        "Name its colour.",
        "Is it a shirt?",
    ];
    let rows = wh
        .rows(&format!(
            "SELECT id, e.extraction_success, SIZE(e.errors), ARRAY_JOIN(e.errors, '|'), e.raw_response \
             FROM (SELECT id, smolvlm_extract(path, array('{}', '{}', \
                   CASE WHEN id = 1 THEN '{}' END)) AS e \
                   FROM (VALUES (1, '{photo}'), (2, '{photo}'), (3, NULL)) AS t(id, path)) \
             ORDER BY id",
            questions[0], questions[1], questions[2]
        ))
        .await;
    let replies: Vec<String> = questions
        .iter()
        .map(|q| direct_answer(&photo, q, 256, Some(32)))
        .collect();
    // Row 1 was asked all three, row 2 the first two; the random model writes no JSON.
    for (row, asked) in [(&rows[0], 3), (&rows[1], 2)] {
        assert_eq!(row[1], "false");
        assert_eq!(row[2], asked.to_string());
        let errors: Vec<&str> = row[3].split('|').collect();
        for (i, error) in errors.iter().enumerate() {
            assert!(
                error.starts_with(&format!("question {}: no JSON", i + 1)),
                "{errors:?}"
            );
        }
        assert_eq!(row[4], replies[..asked].join("\n\n"));
    }
    assert_eq!(rows[2][1..], ["NULL", "-1", "NULL", "NULL"]);
    let err = wh
        .error(&format!("SELECT smolvlm_extract('{photo}', array(1, 2))"))
        .await;
    assert!(err.contains("ARRAY<STRING> of questions"), "{err}");
}

/// Rows of different photos (1 to 10 frames), questions and token limits give the same answers
/// one per batch as four per batch, and each is what the model answers for it alone.
#[tokio::test(flavor = "multi_thread")]
async fn batched_generation_answers_each_row_as_alone() {
    let wh = warehouse_with(&fixture_model()).await;
    let rows: Vec<(String, &str, usize)> = [
        ("wide-97x31.png", "Describe the garment.", 12),
        (
            "square-40.jpg",
            "What is the material of this product? Answer in one word.",
            5,
        ),
        ("grey-200x150.jpg", "Colour?", 9),
        ("tall-31x120.jpg", "Which pattern?", 12),
        ("alpha-64x48.png", "Style, please, in a few words.", 3),
    ]
    .into_iter()
    .map(|(photo, q, n)| {
        let path = repo_path(&format!("tests/fixtures/clip/images/{photo}"));
        (path.to_string_lossy().into_owned(), q, n)
    })
    .collect();
    let values = rows
        .iter()
        .enumerate()
        .map(|(i, (path, q, n))| format!("({i}, '{path}', '{q}', {n})"))
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!(
        "SELECT smolvlm_generate(path, q, n) FROM (VALUES {values}) AS t(id, path, q, n) ORDER BY id"
    );
    wh.sql("SET vitrine.udf.batch_size = 1").await;
    let one_by_one = wh.rows(&query).await;
    wh.sql("SET vitrine.udf.batch_size = 4").await;
    let batched = wh.rows(&query).await;
    assert_eq!(batched, one_by_one);
    for ((path, q, n), got) in rows.iter().zip(&batched) {
        assert_eq!(got[0], direct_answer(path, q, *n, None), "{path}");
    }
}

/// Unusable photos in one 44K-style statement: a missing file, a truncated JPEG, a text file, a
/// 0×0 PNG and a PNG whose header claims 30000×30000 pixels each give `extraction_success = false`
/// and an error naming the file; the good photo around them is extracted; one warning counts them.
#[tokio::test(flavor = "multi_thread")]
async fn bad_photos_fail_their_rows_only() {
    let wh = warehouse_with(&scripted_model()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = repo_path("tests/fixtures/clip/images/square-40.jpg");
    let jpeg = std::fs::read(&good).unwrap();
    let png = std::fs::read(repo_path("tests/fixtures/clip/images/palette-16.png")).unwrap();
    let with_size = |w: u32, h: u32| {
        let mut bytes = png.clone();
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        bytes
    };
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.jpg", jpeg[..jpeg.len() / 2].to_vec()),
        ("notes.jpg", b"not a photo at all".to_vec()),
        ("empty-0x0.png", with_size(0, 0)),
        ("huge-30000x30000.png", with_size(30_000, 30_000)),
    ];
    let mut paths = vec![dir.path().join("missing.jpg")];
    for (name, bytes) in &bad {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    paths.push(good.clone());
    let values = paths
        .iter()
        .enumerate()
        .map(|(i, p)| format!("({i}, '{}')", p.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let result = wh
        .sql(&format!(
            "CREATE TABLE main.default.extracted AS SELECT id, smolvlm_extract(path) AS e \
             FROM (VALUES {values}) AS t(id, path)"
        ))
        .await;
    assert!(
        result.warnings.len() == 1 && result.warnings[0].contains("5 row(s)"),
        "{:?}",
        result.warnings
    );
    let rows = wh
        .rows("SELECT id, e.extraction_success, e.error, e.material, e.model_id FROM main.default.extracted ORDER BY id")
        .await;
    for (row, path) in rows.iter().zip(&paths).take(5) {
        assert_eq!(row[1], "false", "{row:?}");
        assert!(
            row[2].contains(&*path.to_string_lossy()),
            "the error names the file: {row:?}"
        );
        assert_eq!(row[3], "NULL");
    }
    assert_eq!(rows[5][1], "true", "{:?}", rows[5]);
    assert_eq!(rows[5][2], "NULL");
    assert_eq!(rows[5][3], "knit fabric");
    assert_eq!(rows[5][4], scripted_model());
}

/// A reply holding JSON becomes the struct's fields, with the model's id and revision; a value
/// outside the vocabulary would be kept (the scripted reply has none), and `smolvlm_vocabulary`
/// gives the lists the quality report checks against.
#[tokio::test(flavor = "multi_thread")]
async fn smolvlm_extract_fills_the_struct_from_the_reply() {
    let wh = warehouse_with(&scripted_model()).await;
    let photo = repo_path("tests/fixtures/clip/images/wide-97x31.png");
    let row = &wh
        .rows(&format!(
            "SELECT e.extraction_success, e.material, e.pattern, e.formality, ARRAY_JOIN(e.style_keywords, '|'), \
             ARRAY_JOIN(e.visual_details, '|'), e.collar_type, e.sleeve_length, e.fit_type, e.confidence_material, \
             e.model_revision IS NOT NULL AND LENGTH(e.model_revision) > 8 \
             FROM (SELECT smolvlm_extract('{}') AS e)",
            photo.display()
        ))
        .await[0];
    assert_eq!(
        row,
        &[
            "true",
            "knit fabric",
            "solid color",
            "casual",
            "sporty|modern",
            "has logo",
            "crew neck",
            "short sleeve",
            "regular",
            "high",
            "true"
        ]
    );
    assert_eq!(
        wh.value("SELECT ARRAY_JOIN(smolvlm_vocabulary('confidence_material'), ',')")
            .await,
        "high,medium,low"
    );
    let err = wh.error("SELECT smolvlm_vocabulary('colour')").await;
    assert!(
        err.contains("no vocabulary for 'colour'") && err.contains("material"),
        "{err}"
    );
}

/// `vitrine.smolvlm.temperature` above 0 samples: a run repeats under the same seed whatever the
/// batching, another seed answers otherwise, and temperature 0 is greedy again.
#[tokio::test(flavor = "multi_thread")]
async fn sampling_repeats_under_a_seed() {
    let wh = warehouse_with(&fixture_model()).await;
    let photo = repo_path("tests/fixtures/clip/images/wide-97x31.png")
        .to_string_lossy()
        .into_owned();
    let query = format!(
        "SELECT smolvlm_generate(path, q, 12) FROM (VALUES (1, '{photo}', 'Describe the garment.'), \
         (2, '{photo}', 'Colour?')) AS t(id, path, q) ORDER BY id"
    );
    let greedy = wh.rows(&query).await;
    wh.sql("SET vitrine.smolvlm.temperature = 1.5").await;
    wh.sql("SET vitrine.smolvlm.top_p = 0.95").await;
    wh.sql("SET vitrine.smolvlm.seed = 7").await;
    let first = wh.rows(&query).await;
    wh.sql("SET vitrine.udf.batch_size = 1").await;
    assert_eq!(wh.rows(&query).await, first, "same seed, other batching");
    assert_ne!(first, greedy);
    wh.sql("SET vitrine.smolvlm.seed = 8").await;
    assert_ne!(wh.rows(&query).await, first, "another seed");
    wh.sql("SET vitrine.smolvlm.temperature = 0").await;
    assert_eq!(wh.rows(&query).await, greedy);
    assert_eq!(
        greedy[0][0],
        direct_answer(&photo, "Describe the garment.", 12, None)
    );
    let err = wh.error("SET vitrine.smolvlm.top_p = 0").await;
    assert!(err.contains("top_p must be in (0, 1]"), "{err}");
    let err = wh.error("SET vitrine.smolvlm.temperature = -1").await;
    assert!(err.contains("temperature must be 0"), "{err}");
}
