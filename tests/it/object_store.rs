//! A warehouse on S3 for real: a local S3-compatible server (moto's server mode, started here on
//! loopback) holds the warehouse, and `vitrine` processes reach it with static test credentials
//! and the cloud metadata lookup turned off, so that no request leaves the machine.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::Server;

/// A moto S3 server on a free loopback port, stopped when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    /// Starts the server and creates `bucket` in it.
    fn start(bucket: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; .ci/run installs it)");
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            if http(reqwest::Method::GET, &server.endpoint).is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not start on {}",
                server.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = http(
            reqwest::Method::PUT,
            &format!("{}/{bucket}", server.endpoint),
        )
        .unwrap();
        assert!(
            status.is_success(),
            "creating bucket {bucket}: {status} {body}"
        );
        server
    }

    /// Runs `vitrine --warehouse URL ARGS…` against this server.
    fn vitrine(&self, warehouse: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vitrine"));
        command
            .args(["--warehouse", warehouse])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "vitrine-test")
            .env("AWS_SECRET_ACCESS_KEY", "vitrine-test-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        command
    }

    /// Runs SQL statements in one `vitrine run`; panics with its output when it fails.
    fn run(&self, warehouse: &str, statements: &[&str]) -> String {
        let output = self.try_run(warehouse, statements);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{statements:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn try_run(&self, warehouse: &str, statements: &[&str]) -> Output {
        let mut args = vec!["run", "--format", "csv"];
        for s in statements {
            args.extend(["-e", s]);
        }
        self.vitrine(warehouse, &args).output().unwrap()
    }

    /// The keys stored under `prefix` in `bucket`.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint);
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={t}"));
            }
            let (_, body) = http(reqwest::Method::GET, &url).unwrap();
            keys.extend(between(&body, "<Key>", "</Key>"));
            token = between(&body, "<NextContinuationToken>", "</NextContinuationToken>")
                .into_iter()
                .next();
            if token.is_none() {
                return keys;
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request: the status and the body.
fn http(method: reqwest::Method, url: &str) -> reqwest::Result<(reqwest::StatusCode, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new().request(method, url).send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    })
}

fn between(text: &str, open: &str, close: &str) -> Vec<String> {
    text.split(open)
        .skip(1)
        .filter_map(|s| s.split(close).next())
        .map(str::to_string)
        .collect()
}

/// The CSV result's lines after the header, for one query.
fn values(stdout: &str) -> Vec<String> {
    stdout.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn a_warehouse_on_s3_keeps_tables_versions_and_indexes() {
    let s3 = S3Server::start("shop");
    let wh = "s3://shop/warehouse";
    s3.run(
        wh,
        &[
            "CREATE SCHEMA main.s",
            "CREATE TABLE main.s.items AS SELECT CAST(value AS INT) AS id, \
             concat('item ', CAST(value AS STRING)) AS name, \
             arrow_cast(make_array(CAST(value AS FLOAT), 1.0, 0.0), 'FixedSizeList(3, Float32)') \
             AS embedding FROM range(300)",
            "INSERT INTO main.s.items SELECT 300, 'late', \
             arrow_cast(make_array(300.0, 1.0, 0.0), 'FixedSizeList(3, Float32)')",
            "MERGE INTO main.s.items AS t USING (SELECT 7 AS id, 'seven' AS name, \
             arrow_cast(make_array(7.0, 1.0, 0.0), 'FixedSizeList(3, Float32)') AS embedding) AS s \
             ON t.id = s.id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
            "CREATE INDEX by_id ON main.s.items (id)",
            "CREATE VECTOR INDEX main.s.vs_items ON main.s.items (embedding) USING FLAT \
             WITH (primary_key = 'id', metric = 'l2')",
            "CREATE TABLE main.s.log USING DELTA AS SELECT 1 AS n",
            "INSERT INTO main.s.log VALUES (2)",
        ],
    );
    // A new process reads it all back from the bucket: versions, time travel, both indexes.
    let out = s3.run(
        wh,
        &[
            "SELECT COUNT(*), MAX(id) FROM main.s.items",
            "SELECT COUNT(*) FROM main.s.items VERSION AS OF 1",
            "SELECT name FROM main.s.items WHERE id = 7",
            "SELECT id FROM vector_search(index => 'main.s.vs_items', \
             query_vector => array(41.2, 1.0, 0.0), num_results => 2) ORDER BY id",
            "SHOW INDEXES ON main.s.items",
            "SELECT n FROM main.s.log ORDER BY n",
            "SELECT n FROM main.s.log VERSION AS OF 0",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "count(*),max(main.s.items.id)",
            "301,300",
            "count(*)",
            "300",
            "name",
            "seven",
            "id",
            "41",
            "42",
            "name,column,kind,indexed_rows,unindexed_rows",
            "by_id,id,BTree,301,0",
            "n",
            "1",
            "2",
            "n",
            "1",
        ],
        "{out}"
    );
    // Everything is in the bucket: table data, Lance and Delta logs, the catalog, the index.
    let keys = s3.keys("shop", "warehouse/");
    for wanted in [
        "warehouse/_catalog/",
        "warehouse/main/s/items/_versions/",
        "warehouse/main/s/items/data/",
        "warehouse/main/s/log/_delta_log/",
        "warehouse/main/s/vs_items/",
    ] {
        assert!(
            keys.iter().any(|k| k.starts_with(wanted)),
            "nothing under {wanted} in {keys:?}"
        );
    }
}

/// A `vitrine worker` of the warehouse `wh` on a free loopback port, logging into `log`, and
/// its URL.
fn worker(s3: &S3Server, wh: &str, log: &std::path::Path) -> (Server, String) {
    let child = Server(
        s3.vitrine(wh, &["-v", "worker", "--addr", "127.0.0.1:0"])
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let line = text
            .split("worker listening on ")
            .nth(1)
            .and_then(|rest| rest.split_once('\n'));
        if let Some((url, _)) = line {
            return (child, url.trim().to_string());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the worker did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn workers_read_the_same_bucket_and_answer_as_one_process() {
    let s3 = S3Server::start("spread");
    let wh = "s3://spread/warehouse";
    s3.run(
        wh,
        &[
            "CREATE TABLE main.default.sales AS SELECT CAST(value AS INT) AS id, \
             concat('item ', CAST(value % 13 AS STRING)) AS item, CAST(value % 7 AS DOUBLE) AS price \
             FROM range(4000)",
            "INSERT INTO main.default.sales SELECT CAST(value AS INT) + 10000, 'item 1', 2.5 FROM range(1000)",
            "INSERT INTO main.default.sales SELECT CAST(value AS INT) + 20000, 'item 2', 1.5 FROM range(1000)",
            "CREATE TABLE main.default.kinds USING DELTA AS SELECT concat('item ', CAST(value AS STRING)) \
             AS item, value % 2 AS kind FROM range(13)",
            "INSERT INTO main.default.kinds VALUES ('item 99', 5)",
        ],
    );
    let logs = tempfile::tempdir().unwrap();
    let mut workers = Vec::new();
    let mut urls = Vec::new();
    for i in 0..2 {
        let (child, url) = worker(&s3, wh, &logs.path().join(format!("worker-{i}.log")));
        workers.push(child);
        urls.push(url);
    }
    let queries = [
        "SELECT item, COUNT(*), SUM(price) FROM main.default.sales GROUP BY item ORDER BY item",
        "SELECT k.kind, COUNT(*), SUM(s.price) FROM main.default.sales s JOIN main.default.kinds k \
         ON s.item = k.item GROUP BY k.kind ORDER BY k.kind",
    ];
    let one_process = s3.run(wh, &queries);
    let mut args = vec![
        "--workers".to_string(),
        urls.join(","),
        "run".into(),
        "--format".into(),
        "csv".into(),
    ];
    for q in queries {
        args.extend(["-e".to_string(), q.to_string()]);
    }
    let output = s3
        .vitrine(wh, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let across = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{across}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(across, one_process);
    drop(workers);
    // Both workers read from the bucket.
    for i in 0..2 {
        let log = std::fs::read_to_string(logs.path().join(format!("worker-{i}.log"))).unwrap();
        assert!(
            log.lines().any(|l| l.contains("task received")
                && l.contains("s3://spread/warehouse/main/default/")),
            "worker {i} read nothing from the bucket:\n{log}"
        );
    }
}

/// Two processes write one table at once: appends both land; of two updates of the same rows,
/// each either commits or fails with a clear error, and the table holds exactly the updates
/// that succeeded.
#[test]
fn writers_racing_on_one_s3_table_lose_nothing() {
    let s3 = S3Server::start("race");
    let wh = "s3://race/warehouse";
    s3.run(
        wh,
        &["CREATE TABLE main.default.t AS SELECT CAST(value AS INT) AS id, 0 AS hits FROM range(10)"],
    );
    let writer = |first: usize| {
        let statements: Vec<String> = (0..5)
            .map(|i| format!("INSERT INTO main.default.t VALUES ({}, 0)", 100 + first + i))
            .collect();
        let mut args = vec!["run".to_string()];
        for s in statements {
            args.extend(["-e".to_string(), s]);
        }
        s3.vitrine(wh, &args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (writer(0), writer(10));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = s3.run(wh, &["SELECT COUNT(*) FROM main.default.t WHERE id >= 100"]);
    assert_eq!(values(&out), ["10"], "{out}");

    let updater = || {
        s3.vitrine(
            wh,
            &[
                "run",
                "-e",
                "UPDATE main.default.t SET hits = hits + 1 WHERE id < 10",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut succeeded = 0;
    for child in [updater(), updater()] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            succeeded += 1;
        } else {
            assert!(
                stderr.contains("main.default.t") && !stderr.contains("panicked"),
                "a failed update must say which table and why: {stderr}"
            );
        }
    }
    assert!(succeeded >= 1, "at least one update commits");
    let out = s3.run(
        wh,
        &["SELECT MIN(hits), MAX(hits), COUNT(*) FROM main.default.t WHERE id < 10"],
    );
    assert_eq!(
        values(&out),
        [format!("{succeeded},{succeeded},10")],
        "{out}"
    );

    // A rewrite and an append at once: the appended rows are never lost.
    let (update, insert) = (updater(), writer(20));
    let updated = update.wait_with_output().unwrap().status.success();
    let inserted = insert.wait_with_output().unwrap();
    assert!(
        inserted.status.success(),
        "{}",
        String::from_utf8_lossy(&inserted.stderr)
    );
    let out = s3.run(
        wh,
        &[
            "SELECT COUNT(*) FROM main.default.t WHERE id >= 120",
            "SELECT MAX(hits) FROM main.default.t WHERE id < 10",
        ],
    );
    let hits = succeeded + usize::from(updated);
    assert_eq!(
        values(&out),
        ["5", "max(main.default.t.hits)", &hits.to_string()],
        "{out}"
    );
}
