//! `vitrine serve` as users reach it: a child process on loopback, asked over real HTTP. The
//! warehouse holds a small demo catalog with photos, embedded by the fixture CLIP, and the
//! plan's three indexes; the events table is read back through SQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{clip_fixture, Server, TestWarehouse};

const PRODUCTS: usize = 60;
const TOKEN: &str = "s3cret";

/// The demo catalog's products with their embeddings and the plan's three indexes.
async fn catalog() -> TestWarehouse {
    let (wh, _) = TestWarehouse::with_demo_catalog(PRODUCTS, 11, true).await;
    wh.run_sql_file("00_load_products.sql").await;
    wh.sql(
        "CREATE TABLE main.fashion_demo.product_embeddings AS SELECT product_id, \
         product_display_name, article_type, base_color, gender, price, image_path, \
         clip_text_embed(product_display_name) AS baseline, \
         clip_text_embed(concat_ws(' ', product_display_name, base_color, article_type)) AS enriched, \
         clip_image_embed(image_path) AS photo FROM main.fashion_demo.products",
    )
    .await;
    for (index, column) in [
        ("vs_hybrid_search", "baseline"),
        ("vs_hybrid_search_enriched", "enriched"),
        ("vs_image_search", "photo"),
    ] {
        wh.sql(&format!(
            "CREATE VECTOR INDEX main.fashion_demo.{index} ON main.fashion_demo.product_embeddings \
             ({column}) WITH (primary_key = 'product_id', embedding_model = 'clip', \
             columns = (product_display_name, article_type, base_color, gender, price, image_path))"
        ))
        .await;
    }
    wh
}

/// A running `vitrine serve` and a client for it.
struct Running {
    server: Server,
    base: String,
    client: reqwest::Client,
}

/// The config file the tests start from: quick commits, a token.
fn write_config(wh: &TestWarehouse, extra: &str) -> PathBuf {
    let path = wh.path().join("serve.toml");
    std::fs::write(
        &path,
        format!("token = \"{TOKEN}\"\n[events]\ncommit_interval_ms = 100\n{extra}"),
    )
    .unwrap();
    path
}

/// `vitrine serve` on a free loopback port of `wh` with `config`, its stderr into `log`.
fn serve_command(wh: &TestWarehouse, config: &Path, log: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"));
    command
        .arg("--warehouse")
        .arg(wh.path())
        .arg("--model")
        .arg(format!("clip={}", clip_fixture("tiny-a")))
        .args(["serve", "--addr", "127.0.0.1:0", "--config"])
        .arg(config)
        .stderr(std::fs::File::create(log).unwrap());
    command
}

/// Starts `vitrine serve` on a free loopback port with `config`, logging to `log`.
async fn start(wh: &TestWarehouse, config: &Path, log: &str) -> Running {
    let log = wh.path().join(log);
    let server = Server(serve_command(wh, config, &log).spawn().unwrap());
    for _ in 0..600 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Only a whole line: the file can be read while the server is still writing it.
        let line = text
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_once('\n'));
        if let Some((address, _)) = line {
            let base = address.trim().to_string();
            return Running {
                server,
                base,
                client: reqwest::Client::new(),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

impl Running {
    async fn post(&self, route: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{route}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, route: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{route}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn search(&self, query: &str, user: Option<&str>, limit: usize) -> Value {
        let mut body = json!({ "query": query, "limit": limit });
        if let Some(user) = user {
            body["user_id"] = json!(user);
        }
        let (status, answer) = self.post("/api/v1/search/text", body).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }
}

fn shown(answer: &Value) -> Vec<i64> {
    answer["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_i64().unwrap())
        .collect()
}

/// Waits until `sql`'s first value is `want`.
async fn eventually(wh: &TestWarehouse, sql: &str, want: &str) {
    let mut got = String::new();
    for _ in 0..300 {
        got = wh.value(sql).await;
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql}: {got}, wanted {want}");
}

#[tokio::test(flavor = "multi_thread")]
async fn searches_follow_the_plans_variant_rule_and_their_events_reach_the_table() {
    let wh = catalog().await;
    let config = write_config(&wh, "compact_every = 2\n");
    let server = start(&wh, &config, "serve.log").await;

    // Whether int(md5(user_id).hexdigest(), 16) is even, by Python 3.
    let users = [
        (Some("user-1"), "enriched"),
        (Some("user-2"), "baseline"),
        (Some("user-3"), "enriched"),
        (Some("user-4"), "baseline"),
        (Some("alice"), "enriched"),
        (None, "baseline"),
    ];
    let mut searches = Vec::new();
    for (user, variant) in users {
        let answer = server.search("red shirt", user, 5).await;
        assert_eq!(answer["variant"], variant, "{user:?}");
        assert_eq!(answer["search_type"], "text");
        assert_eq!(answer["query"], "red shirt");
        let index = match variant {
            "enriched" => "vs_hybrid_search_enriched",
            _ => "vs_hybrid_search",
        };
        let want: Vec<i64> = wh
            .rows(&format!(
                "SELECT product_id FROM vector_search(index => 'main.fashion_demo.{index}', \
                 query_text => 'red shirt', num_results => 5)"
            ))
            .await
            .iter()
            .map(|r| r[0].parse().unwrap())
            .collect();
        assert_eq!(shown(&answer), want, "{user:?} searched {index}");
        let products = answer["products"].as_array().unwrap();
        for product in products {
            let id = product["product_id"].as_i64().unwrap();
            assert_eq!(product["image_url"], format!("/images/{id}"));
            assert!(product["product_display_name"].is_string());
            assert!(product.get("baseline").is_none() && product.get("enriched").is_none());
        }
        let scores: Vec<f64> = products
            .iter()
            .map(|p| p["similarity_score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        searches.push(answer);
    }

    // user-1 clicks the second product, puts it in the cart and buys it.
    let first = &searches[0];
    let id = first["search_id"].as_str().unwrap();
    let product = shown(first)[1];
    for kind in ["click", "add_to_cart", "purchase"] {
        let (status, answer) = server
            .post(
                "/api/v1/events",
                json!({ "search_id": id, "type": kind, "product_id": product }),
            )
            .await;
        assert_eq!(status, 202, "{kind}: {answer}");
    }
    eventually(
        &wh,
        "SELECT COUNT(*) FROM main.fashion_demo.search_events",
        "6",
    )
    .await;
    eventually(
        &wh,
        &format!(
            "SELECT concat_ws('|', CAST(clicked_product_ids AS STRING), CAST(added_to_cart AS STRING), \
             CAST(purchased AS STRING), user_id, variant, query, CAST(results_shown AS STRING)) \
             FROM main.fashion_demo.search_events WHERE event_id = '{id}'"
        ),
        &format!(
            "[{product}]|[{product}]|[{product}]|user-1|enriched|red shirt|[{}]",
            shown(first)
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .await;
    let waited = wh
        .value(&format!(
            "SELECT time_to_first_click FROM main.fashion_demo.search_events WHERE event_id = '{id}'"
        ))
        .await;
    let waited: f64 = waited.parse().unwrap();
    assert!((0.0..60.0).contains(&waited), "{waited}");
    // The plan's Step 11 query, unchanged.
    let step11 = wh
        .rows(
            "SELECT
  variant,
  COUNT(*) as searches,
  SUM(CASE WHEN SIZE(clicked_product_ids) > 0 THEN 1 ELSE 0 END) as searches_with_click,
  ROUND(100.0 * SUM(CASE WHEN SIZE(clicked_product_ids) > 0 THEN 1 ELSE 0 END) / COUNT(*), 2) as ctr_pct,
  SUM(CASE WHEN SIZE(purchased) > 0 THEN 1 ELSE 0 END) as conversions,
  ROUND(100.0 * SUM(CASE WHEN SIZE(purchased) > 0 THEN 1 ELSE 0 END) / COUNT(*), 2) as conversion_rate_pct,
  ROUND(AVG(time_to_first_click), 2) as avg_time_to_click_sec
FROM main.fashion_demo.search_events
GROUP BY variant
ORDER BY variant",
        )
        .await;
    assert_eq!(step11.len(), 2, "{step11:?}");
    assert_eq!(step11[0][..3], ["baseline", "3", "0"]);
    assert_eq!(
        step11[1][..6],
        ["enriched", "3", "1", "33.33", "1", "33.33"]
    );

    // A vector search for a product's own photo embedding finds it first; filters keep only
    // the rows they name.
    let vector: Vec<f32> = wh
        .vectors(
            "SELECT enriched FROM main.fashion_demo.product_embeddings ORDER BY product_id LIMIT 1",
        )
        .await
        .remove(0)
        .unwrap();
    let own: i64 = wh
        .value("SELECT MIN(product_id) FROM main.fashion_demo.product_embeddings")
        .await
        .parse()
        .unwrap();
    let (status, answer) = server
        .post(
            "/api/v1/search/vector",
            json!({ "vector": vector, "user_id": "user-1", "limit": 3 }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(shown(&answer)[0], own);
    let gender = wh
        .value(&format!(
            "SELECT gender FROM main.fashion_demo.products WHERE product_id = {own}"
        ))
        .await;
    let (status, answer) = server
        .post(
            "/api/v1/search/vector",
            json!({ "vector": vector, "user_id": "user-1", "limit": 10,
                    "filters": { "gender": ["Nobody", gender.clone()], "price": { "lt": 5 } } }),
        )
        .await;
    assert_eq!(status, 400, "an object is no filter value: {answer}");
    let (status, answer) = server
        .post(
            "/api/v1/search/vector",
            json!({ "vector": vector, "user_id": "user-1", "limit": 10,
                    "filters": { "gender": ["Nobody", gender.clone()] } }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let kept = answer["products"].as_array().unwrap();
    let want: usize = wh
        .value(&format!(
            "SELECT LEAST(COUNT(*), 10) FROM main.fashion_demo.products WHERE gender = '{gender}'"
        ))
        .await
        .parse()
        .unwrap();
    assert_eq!(kept.len(), want);
    assert!(kept.iter().all(|p| p["gender"] == gender.as_str()));

    // A photo upload finds the product it shows.
    let photo = std::fs::read(wh.path().join(format!(
        "Volumes/main/fashion_demo/raw_data/images/{own}.jpg"
    )))
    .unwrap();
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(photo.clone()).file_name("photo.jpg"),
        )
        .text("user_id", "user-2")
        .text("limit", "4");
    let response = server
        .client
        .post(format!("{}/api/v1/search/image", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["search_type"], "image");
    assert_eq!(answer["products"].as_array().unwrap().len(), 4);
    assert!((answer["products"][0]["similarity_score"].as_f64().unwrap() - 1.0).abs() < 1e-4);

    // Product pages, photos, health and metrics.
    let page: Value = server
        .get(&format!("/api/v1/products/{own}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["product_id"], own);
    assert_eq!(page["gender"], gender.as_str());
    let served = server.get(&format!("/images/{own}")).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert_eq!(served.bytes().await.unwrap().as_ref(), photo.as_slice());
    let health: Value = server.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["products"], PRODUCTS);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    for line in [
        "vitrine_serve_requests_total{route=\"/api/v1/search/text\",status=\"200\",variant=\"enriched\"} 3",
        "vitrine_serve_requests_total{route=\"/api/v1/search/text\",status=\"200\",variant=\"baseline\"} 3",
        "vitrine_serve_request_duration_seconds_count{route=\"/api/v1/events\",status=\"202\",variant=\"\"} 3",
        "vitrine_serve_events_pending_commit",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // The page is served.
    let page = server.get("/").await.text().await.unwrap();
    assert!(page.contains("/api/v1/search/text"));
    // The events table is compacted every 2 commits that wrote rows: a search in each of a few
    // commits brings one.
    let mut operations = Vec::new();
    for _ in 0..20 {
        operations = wh
            .rows("DESCRIBE HISTORY main.fashion_demo.search_events")
            .await
            .into_iter()
            .map(|r| r[2].clone())
            .collect();
        if operations.iter().any(|o| o == "OPTIMIZE") {
            break;
        }
        server.search("blue jeans", Some("user-9"), 5).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(operations.iter().any(|o| o == "OPTIMIZE"), "{operations:?}");
    // Commits upsert on event_id through the table's B-tree index on it, which compaction
    // brings up to date with the rows committed before it.
    let indexes = wh
        .rows("SHOW INDEXES ON main.fashion_demo.search_events")
        .await;
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert_eq!(indexes[0][1..3], ["event_id", "BTree"], "{indexes:?}");
    assert!(indexes[0][3].parse::<u64>().unwrap() > 0, "{indexes:?}");
    // Once everything is committed, an idle service starts no new segments.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = segments(&wh);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(segments(&wh), idle);
    drop(server);
}

/// The numbers of the event log's segments.
fn segments(wh: &TestWarehouse) -> std::collections::BTreeSet<u64> {
    std::fs::read_dir(wh.path().join("_serve/events"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("events-")?
                .strip_suffix(".wal")?
                .parse::<u64>()
                .ok()
        })
        .collect()
}

/// Lines in the event log's segments.
fn logged(wh: &TestWarehouse) -> usize {
    let dir = wh.path().join("_serve/events");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_answered_4xx_naming_the_field_and_log_nothing() {
    let wh = catalog().await;
    let config = write_config(
        &wh,
        "[limits]\nmax_body_bytes = 4096\nmax_query_chars = 50\nrequest_timeout_s = 1.0\n",
    );
    let server = start(&wh, &config, "serve.log").await;
    let long = "x".repeat(51);
    let big = "y".repeat(5000);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/api/v1/search/text", json!({ "query": "" }), 400, "query"),
        (
            "/api/v1/search/text",
            json!({ "query": "  " }),
            400,
            "query",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": long }),
            400,
            "query",
        ),
        ("/api/v1/search/text", json!({ "query": 5 }), 400, "query"),
        ("/api/v1/search/text", json!({ "limit": 5 }), 400, "body"),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "limit": 0 }),
            400,
            "limit",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "limit": 101 }),
            400,
            "limit",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "limit": -1 }),
            400,
            "limit",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "colour": "red" }),
            400,
            "colour",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "user_id": "" }),
            400,
            "user_id",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "filters": { "nope": "a" } }),
            400,
            "filters.nope",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "filters": { "enriched": 1 } }),
            400,
            "filters.enriched",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "filters": { "gender": [] } }),
            400,
            "filters.gender",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "filters": { "gender": null } }),
            400,
            "filters.gender",
        ),
        (
            "/api/v1/search/text",
            json!({ "query": "x", "filters": "gender = 'Men'" }),
            400,
            "filters",
        ),
        ("/api/v1/search/text", json!({ "query": big }), 413, ""),
        (
            "/api/v1/search/vector",
            json!({ "vector": [1.0, 2.0] }),
            400,
            "vector",
        ),
        (
            "/api/v1/search/vector",
            json!({ "vector": ["a"] }),
            400,
            "vector[0]",
        ),
        (
            "/api/v1/events",
            json!({ "search_id": "nope", "type": "click", "product_id": 1 }),
            404,
            "search_id",
        ),
        (
            "/api/v1/events",
            json!({ "search_id": "nope", "type": "like", "product_id": 1 }),
            400,
            "type",
        ),
        (
            "/api/v1/events",
            json!({ "search_id": "nope", "type": "click" }),
            400,
            "body",
        ),
        ("/api/v1/nothing", json!({}), 404, ""),
    ];
    for (route, body, status, field) in cases {
        let (got, answer) = server.post(route, body.clone()).await;
        assert_eq!(got, status, "{route} {body}: {answer}");
        assert!(answer["error"].is_string(), "{route} {body}: {answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{route} {body}: {answer}");
        }
    }
    let raw = server
        .client
        .post(format!("{}/api/v1/search/text", server.base))
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    // Events and reloads need the token.
    for route in ["/api/v1/events", "/admin/reload"] {
        let response = server
            .client
            .post(format!("{}{route}", server.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{route}");
    }
    // Uploads: not an image, no image, an unknown field, too large.
    for (form, status, field) in [
        (
            reqwest::multipart::Form::new().part(
                "image",
                reqwest::multipart::Part::bytes(b"GIF89a not really".to_vec()),
            ),
            415,
            "image",
        ),
        (
            reqwest::multipart::Form::new().text("user_id", "u"),
            400,
            "image",
        ),
        (
            reqwest::multipart::Form::new().text("colour", "red"),
            400,
            "colour",
        ),
        (
            reqwest::multipart::Form::new()
                .part("image", reqwest::multipart::Part::bytes(vec![0u8; 9 << 20])),
            413,
            "image",
        ),
    ] {
        let response = server
            .client
            .post(format!("{}/api/v1/search/image", server.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{field}");
        if status == 413 {
            // The rest of the upload is left unread and the connection dropped: the answer
            // says so, or the client's next request on the pooled connection would fail.
            assert_eq!(response.headers()["connection"], "close");
        }
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["field"], field, "{answer}");
    }
    for (route, status) in [
        ("/api/v1/products/abc", 400),
        ("/api/v1/products/999999", 404),
        ("/images/999999", 404),
        ("/images/..%2F..%2Fetc%2Fpasswd", 400),
    ] {
        assert_eq!(server.get(route).await.status().as_u16(), status, "{route}");
    }
    // A client that stops sending its body is answered 408 when the request's time is up.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = server.base.trim_start_matches("http://");
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(
            format!(
                "POST /api/v1/search/text HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"query\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = vec![0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer))
            .await
            .expect("answered within the request time limit")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        // One that never finishes its headers is disconnected in the same time.
        let mut slower = tokio::net::TcpStream::connect(address).await.unwrap();
        slower
            .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
            .await
            .unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), slower.read_to_end(&mut rest))
            .await
            .expect("disconnected within the request time limit")
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "{rest:?}"
        );
    }
    // Nothing was logged for any of it.
    assert_eq!(logged(&wh), 0);
    // A product whose photo path leads out of the volumes is refused, by `..`, by an absolute
    // path or by a link.
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), b"secret").unwrap();
    let link = wh
        .path()
        .join("Volumes/main/fashion_demo/raw_data/images/link.jpg");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    let ids: Vec<i64> = wh
        .rows("SELECT product_id FROM main.fashion_demo.products ORDER BY product_id LIMIT 3")
        .await
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    for (id, path) in ids.iter().zip([
        "/Volumes/main/fashion_demo/raw_data/../../../../etc/passwd".to_string(),
        outside.path().display().to_string(),
        "/Volumes/main/fashion_demo/raw_data/images/link.jpg".to_string(),
    ]) {
        wh.sql(&format!(
            "UPDATE main.fashion_demo.products SET image_path = '{path}' WHERE product_id = {id}"
        ))
        .await;
    }
    let (status, _) = server.post("/admin/reload", json!({})).await;
    assert_eq!(status, 200);
    for id in &ids {
        let response = server.get(&format!("/images/{id}")).await;
        assert_eq!(response.status(), 403, "{id}");
        assert!(!response.text().await.unwrap().contains("secret"));
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_switches_variants_without_failing_a_request() {
    let wh = catalog().await;
    let config = write_config(&wh, "");
    let server = std::sync::Arc::new(start(&wh, &config, "serve.log").await);
    assert_eq!(
        server.search("blue jeans", Some("user-2"), 3).await["variant"],
        "baseline"
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                server.search("blue jeans", Some("user-2"), 3).await;
                answered += 1;
            }
            answered
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Phase 6: enriched for everyone.
    write_config(&wh, "[search]\nab_test = false\nrollout = \"enriched\"\n");
    let (status, answer) = server.post("/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ab_test"], false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = load.await.unwrap();
    assert!(answered > 2, "{answered} searches during the reload");
    for user in ["user-2", "user-4", "user-1"] {
        assert_eq!(
            server.search("blue jeans", Some(user), 3).await["variant"],
            "enriched",
            "{user}"
        );
    }
    // A bad config is refused and the old one stays.
    std::fs::write(&config, "[search]\nenriched_percent = 150\n").unwrap();
    let (status, answer) = server.post("/admin/reload", json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("enriched_percent"));
    assert_eq!(
        server.search("blue jeans", Some("user-2"), 3).await["variant"],
        "enriched"
    );
}

/// One simulated user's search and what the server acknowledged of it.
struct Session {
    search_id: String,
    /// Events answered 202.
    acknowledged: usize,
    /// Events sent (some may have been logged with their answer lost to the kill).
    sent: usize,
}

/// Searches `query` as `user`, then clicks two results and buys one.
async fn shop(client: reqwest::Client, base: String, query: &str, user: String) -> Option<Session> {
    let answer: Value = client
        .post(format!("{base}/api/v1/search/text"))
        .json(&json!({ "query": query, "user_id": user, "limit": 4 }))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let search_id = answer["search_id"].as_str()?.to_string();
    let mut session = Session {
        search_id,
        acknowledged: 0,
        sent: 0,
    };
    for (kind, product) in [("click", 0), ("click", 2), ("purchase", 2)] {
        session.sent += 1;
        let Ok(response) = client
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(TOKEN)
            .json(&json!({ "search_id": session.search_id, "type": kind,
                           "product_id": answer["products"][product]["product_id"] }))
            .send()
            .await
        else {
            break;
        };
        if response.status() == 202 {
            session.acknowledged += 1;
        }
    }
    Some(session)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_sigkill_every_acknowledged_event_is_in_the_table_once() {
    const KILLED_IN_ROUND: usize = 8;
    let wh = catalog().await;
    let config = write_config(&wh, "");
    let mut server = start(&wh, &config, "serve.log").await;
    let queries = ["red shirt", "blue jeans", "black watch", "white shoes"];
    // (session, whether the kill may have cut it short)
    let mut sessions: Vec<(Session, bool)> = Vec::new();
    let mut in_flight = 0;
    for round in 0..12 {
        let running: Vec<_> = queries
            .iter()
            .enumerate()
            .map(|(i, query)| {
                let user = format!("user-{round}-{i}");
                tokio::spawn(shop(
                    server.client.clone(),
                    server.base.clone(),
                    query,
                    user,
                ))
            })
            .collect();
        let killed = round == KILLED_IN_ROUND;
        if killed {
            // Killed with requests in flight.
            tokio::time::sleep(Duration::from_millis(5)).await;
            server.server.0.kill().unwrap();
            server.server.0.wait().unwrap();
        }
        for task in running {
            match task.await.unwrap() {
                Some(session) => sessions.push((session, killed)),
                None => in_flight += 1,
            }
        }
        if killed {
            server = start(&wh, &config, "serve-again.log").await;
        }
    }
    assert!(
        sessions.len() >= 40,
        "{} searches acknowledged",
        sessions.len()
    );
    let acknowledged = sessions.len();
    let want_events: usize = sessions.iter().map(|(s, _)| s.acknowledged).sum();
    let mut rows = Vec::new();
    for _ in 0..300 {
        rows = wh
            .rows(
                "SELECT event_id, SIZE(clicked_product_ids) + SIZE(purchased) \
                 FROM main.fashion_demo.search_events",
            )
            .await;
        // Every acknowledged search and event committed (commits lag under load).
        let committed: usize = rows.iter().map(|r| r[1].parse::<usize>().unwrap()).sum();
        if rows.len() >= acknowledged && committed >= want_events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every acknowledged search once; beyond them, only searches whose answer the kill cut off.
    let by_id: std::collections::HashMap<&str, usize> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(by_id.len(), rows.len(), "no search twice");
    assert!(
        (acknowledged..=acknowledged + in_flight).contains(&rows.len()),
        "{} rows for {acknowledged} acknowledged searches and {in_flight} cut off",
        rows.len()
    );
    for (session, killed) in &sessions {
        let events = by_id[session.search_id.as_str()];
        if *killed {
            assert!(
                (session.acknowledged..=session.sent).contains(&events),
                "{events} events, {} acknowledged of {} sent",
                session.acknowledged,
                session.sent
            );
        } else {
            assert_eq!(events, session.acknowledged, "{}", session.search_id);
        }
    }
    let again = std::fs::read_to_string(wh.path().join("serve-again.log")).unwrap();
    assert!(again.contains("replayed"), "{again}");
    drop(server);
}

/// A second service on the same event log refuses to start, naming the folder, and the first
/// goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_service_on_the_same_event_log_refuses_to_start() {
    let wh = catalog().await;
    let config = write_config(&wh, "");
    let server = start(&wh, &config, "serve.log").await;
    let log = wh.path().join("second.log");
    let mut second = Server(serve_command(&wh, &config, &log).spawn().unwrap());
    let mut exited = None;
    for _ in 0..300 {
        exited = second.0.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stderr = std::fs::read_to_string(&log).unwrap();
    let status = exited.unwrap_or_else(|| panic!("a second service started: {stderr}"));
    assert!(!status.success());
    assert!(
        stderr.contains("is in use by another vitrine serve")
            && stderr.contains(&wh.path().join("_serve/events").display().to_string()),
        "{stderr}"
    );
    server.search("red shirt", Some("still-there"), 3).await;
    drop(server);
}

/// A full disk: while the event log cannot be written, searches and events are answered 503 and
/// nothing is acknowledged that was not written; once there is room again the service goes on,
/// and the table holds exactly the acknowledged searches. The log's next segments are links to
/// `/dev/full`, where every write fails with "No space left on device".
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_answered_503_and_only_what_was_written_is_acknowledged() {
    const FULL_SEGMENTS: u64 = 15;
    let wh = catalog().await;
    let config = write_config(&wh, "");
    let server = start(&wh, &config, "serve.log").await;
    let before = server.search("red shirt", Some("before"), 5).await;
    let log_dir = wh.path().join("_serve/events");
    let newest = *segments(&wh).last().unwrap();
    let full: Vec<PathBuf> = (newest + 1..=newest + FULL_SEGMENTS)
        .map(|n| log_dir.join(format!("events-{n:010}.wal")))
        .collect();
    for link in &full {
        std::os::unix::fs::symlink("/dev/full", link).unwrap();
    }
    let mut acknowledged = vec![before["search_id"].as_str().unwrap().to_string()];
    // A search's id when it is acknowledged, the answer when it is refused for the full disk.
    let client = &server;
    let search = move |query: &'static str| async move {
        let (status, answer) = client
            .post(
                "/api/v1/search/text",
                json!({ "query": query, "user_id": "u" }),
            )
            .await;
        match status {
            200 => Ok(answer["search_id"].as_str().unwrap().to_string()),
            503 => Err(answer),
            _ => panic!("{status}: {answer}"),
        }
    };
    // Searches go on until the log reaches the full segments...
    let refusal = loop {
        match search("blue jeans").await {
            Ok(id) => acknowledged.push(id),
            Err(answer) => break answer,
        }
        assert!(acknowledged.len() < 1000, "the disk never filled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{refusal}"
    );
    // ... where events are refused too, and the service still answers what needs no log.
    let (status, answer) = server
        .post(
            "/api/v1/events",
            json!({ "search_id": acknowledged[0], "type": "click",
                    "product_id": shown(&before)[0] }),
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(server.get("/healthz").await.status().as_u16(), 200);
    // Past the full segments, searches are acknowledged again.
    let mut refused = 1;
    loop {
        match search("black watch").await {
            Ok(id) => {
                acknowledged.push(id);
                break;
            }
            Err(_) => refused += 1,
        }
        assert!(refused < 2000, "the service never recovered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every acknowledged search is committed once, and no refused one.
    let count = acknowledged.len().to_string();
    eventually(
        &wh,
        "SELECT COUNT(*) FROM main.fashion_demo.search_events",
        &count,
    )
    .await;
    let ids: std::collections::HashSet<String> = wh
        .rows("SELECT event_id FROM main.fashion_demo.search_events")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(ids, acknowledged.iter().cloned().collect());
    drop(server);
}

/// `sql/05_ab_analysis.sql` on known events: its intervals, tests and p-values equal
/// statsmodels' (`proportion_confint(method='wilson')`, `proportions_ztest`) and a Welch
/// comparison of the mean time to first click, as computed in Python for these rows.
#[tokio::test(flavor = "multi_thread")]
async fn the_ab_analysis_gives_statsmodels_intervals_and_tests() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE SCHEMA main.fashion_demo").await;
    wh.sql(&format!(
        "CREATE TABLE main.fashion_demo.search_events ({})",
        vitrine::serve::events::EVENTS_TABLE_COLUMNS
    ))
    .await;
    // 200 searches a variant; baseline: 40 clicked, 6 bought; enriched: 60 and 12.
    wh.sql(
        "INSERT INTO main.fashion_demo.search_events \
         SELECT CAST(id AS STRING), current_timestamp(), 'u', 'q', v, array(1, 2), \
                CASE WHEN k < c THEN array(1) ELSE CAST(array() AS ARRAY<INT>) END, \
                CAST(array() AS ARRAY<INT>), \
                CASE WHEN k < b THEN array(2) ELSE CAST(array() AS ARRAY<INT>) END, \
                CASE WHEN k < c THEN CAST(1 + (id % 7) * s AS FLOAT) END \
         FROM (SELECT value AS id, value % 200 AS k, \
                      CASE WHEN value < 200 THEN 'baseline' ELSE 'enriched' END AS v, \
                      CASE WHEN value < 200 THEN 40 ELSE 60 END AS c, \
                      CASE WHEN value < 200 THEN 6 ELSE 12 END AS b, \
                      CASE WHEN value < 200 THEN 0.6 ELSE 0.5 END AS s FROM range(400))",
    )
    .await;
    let results = wh.run_sql_file("05_ab_analysis.sql").await;
    let step11 = crate::support::rows(&results[1].batches);
    assert_eq!(step11.len(), 2);
    let rates = crate::support::rows(&results[4].batches);
    assert_eq!(
        rates,
        [
            ["baseline", "conversion", "200", "6", "3.0", "1.38", "6.39"],
            [
                "enriched",
                "conversion",
                "200",
                "12",
                "6.0",
                "3.47",
                "10.19"
            ],
            ["baseline", "ctr", "200", "40", "20.0", "15.05", "26.09"],
            ["enriched", "ctr", "200", "60", "30.0", "24.07", "36.68"],
        ]
    );
    let tests = crate::support::rows(&results[6].batches);
    assert_eq!(
        tests,
        [
            ["conversion", "0.03", "-0.0105", "0.0705", "1.447", "0.1479"],
            ["ctr", "0.1", "0.0157", "0.1843", "2.309", "0.0209"],
            [
                "time_to_first_click",
                "-0.2",
                "-0.6515",
                "0.2515",
                "-0.868",
                "0.3852"
            ],
        ]
    );
}

/// `vitrine simulate-traffic` against a running service: its searches and events all reach the
/// events table, and what it prints per variant is what the table holds.
#[tokio::test(flavor = "multi_thread")]
async fn simulated_shoppers_fill_the_events_table() {
    let wh = catalog().await;
    let config = write_config(&wh, "");
    let server = start(&wh, &config, "serve.log").await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .arg("--warehouse")
        .arg(wh.path())
        .args(["simulate-traffic", "--url", &server.base])
        .args(["--searches", "40", "--users", "10", "--concurrency", "4"])
        .args(["--limit", "8", "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<Vec<&str>> = printed
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let sum = |column: usize| -> usize {
        lines
            .iter()
            .map(|l| l[column].parse::<usize>().unwrap())
            .sum()
    };
    assert_eq!(sum(1), 40, "{printed}");
    assert!(sum(2) > 0, "some results were clicked: {printed}");
    eventually(
        &wh,
        "SELECT COUNT(*) FROM main.fashion_demo.search_events",
        "40",
    )
    .await;
    eventually(
        &wh,
        "SELECT concat_ws(' ', CAST(SUM(SIZE(clicked_product_ids)) AS STRING), \
         CAST(SUM(SIZE(added_to_cart)) AS STRING), CAST(SUM(SIZE(purchased)) AS STRING)) \
         FROM main.fashion_demo.search_events",
        &format!("{} {} {}", sum(2), sum(3), sum(4)),
    )
    .await;
    for line in &lines {
        let searches = wh
            .value(&format!(
                "SELECT COUNT(*) FROM main.fashion_demo.search_events WHERE variant = '{}'",
                line[0]
            ))
            .await;
        assert_eq!(searches, line[1], "{printed}");
    }
    drop(server);
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The search page in headless Chromium (Debian's `chromium` and `chromium-driver`, which
/// `.ci/run` installs), driven over WebDriver: a query typed and sent, the results shown with
/// the user's variant, a product opened and put in the cart, and both events in the table. The
/// results page is kept as `search-page.png` in the test's temporary folder.
#[tokio::test(flavor = "multi_thread")]
async fn the_search_page_searches_and_logs_clicks_in_a_real_browser() {
    use fantoccini::{ClientBuilder, Locator};

    let wh = catalog().await;
    // No token: the page's visitors log their own clicks.
    let config = wh.path().join("page.toml");
    std::fs::write(&config, "[events]\ncommit_interval_ms = 100\n").unwrap();
    let server = start(&wh, &config, "serve.log").await;
    let port = free_port();
    let driver = Server(
        std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)"),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"] }),
    );
    let mut browser = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => {
                browser = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let browser = browser.expect("a WebDriver session in Chromium");
    browser.goto(&server.base).await.unwrap();
    let user = browser.find(Locator::Id("user")).await.unwrap();
    user.clear().await.unwrap();
    user.send_keys("user-1").await.unwrap();
    browser
        .find(Locator::Id("query"))
        .await
        .unwrap()
        .send_keys("red shirt")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#text-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css(".product"))
        .await
        .unwrap();
    let cards = browser.find_all(Locator::Css(".product")).await.unwrap();
    assert_eq!(cards.len(), 20, "the default limit");
    let variant = browser
        .find(Locator::Id("variant"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(variant, "enriched", "user-1's md5 is even");
    let shot = browser.screenshot().await.unwrap();
    assert!(shot.starts_with(b"\x89PNG"));
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("search-page.png");
    std::fs::write(&kept, &shot).unwrap();
    let product: i64 = cards[1]
        .attr("data-product-id")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let name = cards[1].text().await.unwrap();
    assert!(!name.is_empty());
    cards[1].click().await.unwrap();
    let status = || async {
        browser
            .find(Locator::Id("status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    for _ in 0..100 {
        if status().await == "click logged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status().await, "click logged");
    browser
        .find(Locator::Id("add-to-cart"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..100 {
        if status().await == "add to cart logged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status().await, "add to cart logged");
    browser.close().await.unwrap();
    eventually(
        &wh,
        "SELECT concat_ws(' ', user_id, variant, query, CAST(clicked_product_ids AS STRING), \
         CAST(added_to_cart AS STRING)) FROM main.fashion_demo.search_events",
        &format!("user-1 enriched red shirt [{product}] [{product}]"),
    )
    .await;
    drop(driver);
    drop(server);
}

/// The value of the metric line starting with `name ` in `/metrics`.
async fn metric(server: &Running, name: &str) -> f64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// Concurrent text queries share model calls, and a repeated query is answered from the cache
/// with the same results.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_queries_share_model_calls_and_repeats_come_from_the_cache() {
    let wh = catalog().await;
    let config = write_config(&wh, "[search]\nembed_wait_ms = 200\n");
    let server = std::sync::Arc::new(start(&wh, &config, "serve.log").await);
    let queries: Vec<String> = (0..24).map(|i| format!("shirt number {i}")).collect();
    let running: Vec<_> = queries
        .iter()
        .map(|q| {
            let (server, q) = (server.clone(), q.clone());
            tokio::spawn(async move { server.search(&q, Some("user-1"), 3).await })
        })
        .collect();
    let mut first = Vec::new();
    for task in running {
        first.push(task.await.unwrap());
    }
    let calls = metric(&server, "vitrine_serve_query_embedding_batch_size_count").await;
    let texts = metric(&server, "vitrine_serve_query_embedding_batch_size_sum").await;
    assert_eq!(texts, 24.0);
    assert!(
        calls < 12.0,
        "{calls} model calls for 24 concurrent queries"
    );
    // Each call is timed.
    let timed = metric(
        &server,
        "vitrine_serve_query_embedding_call_duration_seconds_count",
    )
    .await;
    assert_eq!(timed, calls);
    assert!(
        metric(
            &server,
            "vitrine_serve_query_embedding_call_duration_seconds_sum"
        )
        .await
            > 0.0
    );
    assert_eq!(
        metric(&server, "vitrine_serve_query_embedding_cache_hits_total").await,
        0.0
    );
    let again = server.search(&queries[5], Some("user-1"), 3).await;
    assert_eq!(
        metric(&server, "vitrine_serve_query_embedding_cache_hits_total").await,
        1.0
    );
    assert_eq!(
        metric(&server, "vitrine_serve_query_embedding_batch_size_sum").await,
        24.0
    );
    assert_eq!(again["products"], first[5]["products"]);
}

/// A restart with a long backlog in the event log (45,000 searches logged hours ago, never
/// committed) commits it before serving, in slices of bounded size (one upsert per 20,000
/// searches), then removes the replayed segment.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_backlog_is_committed_in_slices_at_start() {
    let wh = TestWarehouse::new().await;
    let dir = wh.path().join("_serve/events");
    std::fs::create_dir_all(&dir).unwrap();
    let two_hours_ago = chrono::Utc::now().timestamp_micros() - 2 * 3_600_000_000;
    let lines: Vec<String> = (0..45_000)
        .map(|i| {
            json!({
                "record": "search", "search_id": format!("backlog-{i}"), "at": two_hours_ago + i,
                "user_id": format!("user-{}", i % 50), "query": "red dress",
                "variant": if i % 2 == 0 { "enriched" } else { "baseline" },
                "results_shown": [1, 2, 3]
            })
            .to_string()
        })
        .collect();
    std::fs::write(dir.join("events-0000000001.wal"), lines.join("\n") + "\n").unwrap();
    let config = write_config(&wh, "");
    let server = start(&wh, &config, "serve.log").await;
    drop(server);
    assert_eq!(
        wh.value("SELECT COUNT(DISTINCT event_id) FROM main.fashion_demo.search_events")
            .await,
        "45000"
    );
    let merges = wh
        .rows("DESCRIBE HISTORY main.fashion_demo.search_events")
        .await
        .into_iter()
        .filter(|r| r[2] == "MERGE")
        .count();
    assert_eq!(merges, 3);
    assert!(!dir.join("events-0000000001.wal").exists());
}

/// The operations of the events table's commits, oldest first.
async fn events_table_operations(wh: &TestWarehouse) -> Vec<String> {
    let mut operations: Vec<String> = wh
        .rows("DESCRIBE HISTORY main.fashion_demo.search_events")
        .await
        .into_iter()
        .map(|r| r[2].clone())
        .collect();
    operations.reverse();
    operations
}

#[tokio::test(flavor = "multi_thread")]
async fn new_searches_are_appended_and_only_later_events_upserted() {
    let wh = catalog().await;
    let config = write_config(&wh, "");
    let server = start(&wh, &config, "serve.log").await;
    let answers = [
        server.search("red shirt", Some("user-1"), 5).await,
        server.search("blue jeans", Some("user-2"), 5).await,
    ];
    eventually(
        &wh,
        "SELECT COUNT(*) FROM main.fashion_demo.search_events",
        "2",
    )
    .await;
    let before = events_table_operations(&wh).await;
    assert!(
        !before.iter().any(|o| o == "MERGE"),
        "searches never committed are appended, with no key lookup: {before:?}"
    );

    // A click on a committed search rewrites its row in place: an upsert.
    let id = answers[0]["search_id"].as_str().unwrap();
    let product = shown(&answers[0])[0];
    let (status, answer) = server
        .post(
            "/api/v1/events",
            json!({ "search_id": id, "type": "click", "product_id": product }),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    eventually(
        &wh,
        &format!(
            "SELECT CAST(clicked_product_ids AS STRING) FROM main.fashion_demo.search_events \
             WHERE event_id = '{id}'"
        ),
        &format!("[{product}]"),
    )
    .await;
    let after = events_table_operations(&wh).await;
    assert!(
        after[before.len()..].iter().any(|o| o == "MERGE"),
        "{after:?}"
    );
    assert_eq!(
        wh.value(
            "SELECT concat(COUNT(*), '/', COUNT(DISTINCT event_id)) \
             FROM main.fashion_demo.search_events"
        )
        .await,
        "2/2"
    );
}
