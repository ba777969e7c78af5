//! Command-line arguments and the `run`, `serve`, `bench`, `lineage`, `reproduce` and
//! `demo-data` commands.

mod bench;
mod lineage;
mod simulate;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vitrine::config::DEFAULT_WAREHOUSE;
use vitrine::demo::{self, DemoOptions};
use vitrine::serve::config::ServeConfig;
use vitrine::{Engine, EngineConfig, StatementResult};

use crate::console::{print_result, statement_spinner, OutputFormat, ResultOrigin};

/// Databricks SQL pipelines on DataFusion, Lance and Delta Lake.
#[derive(Debug, Parser)]
#[command(name = "vitrine", version, about)]
pub struct Cli {
    /// Warehouse root: a local folder or an s3://, gs://, az://, file:// or memory:// URL.
    #[arg(long, global = true, env = "VITRINE_WAREHOUSE", default_value = DEFAULT_WAREHOUSE)]
    pub warehouse: String,
    /// A model for the model functions, as NAME=PATH_OR_HUB_ID (sets vitrine.model.NAME).
    #[arg(long = "model", global = true, value_name = "NAME=PATH_OR_HUB_ID", value_parser = parse_model)]
    pub models: Vec<(String, String)>,
    /// Where models run: auto, cpu, cuda or cuda:N (sets vitrine.device).
    #[arg(long, global = true, env = "VITRINE_DEVICE", value_name = "DEVICE")]
    pub device: Option<String>,
    /// Model precision: auto (f32 on CPU, bf16 on GPU), f32, bf16 or f16 (sets vitrine.dtype).
    #[arg(long, global = true, env = "VITRINE_DTYPE", value_name = "DTYPE")]
    pub dtype: Option<String>,
    /// Run queries' plans on these `vitrine worker` processes (comma-separated
    /// http://HOST:PORT); writes, DDL and commits stay here.
    #[arg(
        long,
        global = true,
        env = "VITRINE_WORKERS",
        value_name = "URL,URL…",
        value_delimiter = ','
    )]
    pub workers: Vec<String>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL statements and scripts, statement by statement.
    Run {
        /// A statement to run before the files (repeatable).
        #[arg(short = 'e', long = "execute", value_name = "SQL")]
        statements: Vec<String>,
        /// Script files to run, in order.
        files: Vec<PathBuf>,
        /// How to print result sets.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Report a failed statement and go on with the next one.
        #[arg(long)]
        continue_on_error: bool,
    },
    /// An interactive SQL shell.
    Repl {
        /// How to print result sets (`\format` changes it in the shell).
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// The A/B-tested search service over HTTP (the plan's phases 5 and 6), which also keeps
    /// the CONTINUOUS vector indexes synced with their sources; until Ctrl-C or SIGTERM.
    Serve {
        /// A TOML file of settings (see README.md); re-read by SIGHUP and POST /admin/reload.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to listen (default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Seconds between checks of the CONTINUOUS indexes' sources.
        #[arg(long)]
        interval: Option<f64>,
    },
    /// Serve plan fragments for coordinators started with --workers, with this warehouse's
    /// functions and models, until Ctrl-C.
    Worker {
        /// Where to listen (port 0 picks a free one); prints `worker listening on http://ADDR`.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: std::net::SocketAddr,
    },
    /// Measure throughput (see benches/RESULTS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Simulated shoppers for a running `vitrine serve`: searches for colours and article types
    /// of the catalog, position-biased clicks, carts and purchases, all over HTTP.
    SimulateTraffic(simulate::Traffic),
    /// Print a table version's ancestry: the statements (script and line), table versions,
    /// files and models it came from.
    Lineage {
        /// The table, optionally followed by VERSION AS OF n (default: its newest version with
        /// lineage).
        #[arg(required = true, num_args = 1..)]
        table: Vec<String>,
        /// The version (as VERSION AS OF n).
        #[arg(long)]
        version: Option<u64>,
        /// How to draw it.
        #[arg(long, value_enum, default_value = "text")]
        format: lineage::LineageFormat,
    },
    /// Re-run the statement that wrote a table version against the versions it read, with its
    /// settings and models, into a scratch schema, and say whether the result is identical;
    /// exits with 1 when it is not.
    Reproduce {
        /// The table, optionally followed by VERSION AS OF n (default: its current version).
        #[arg(required = true, num_args = 1..)]
        table: Vec<String>,
        /// The version (as VERSION AS OF n).
        #[arg(long)]
        version: Option<u64>,
        /// Re-derive every version it descends from first, back to the raw files.
        #[arg(long)]
        chain: bool,
        /// A setting to use instead of the recorded one, as KEY=VALUE (repeatable): what would
        /// have changed.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
        overrides: Vec<(String, String)>,
    },
    /// Write the synthetic fashion catalog under /Volumes/main/fashion_demo/raw_data/.
    DemoData {
        /// Number of products.
        #[arg(long, default_value_t = demo::FULL_CATALOG)]
        products: usize,
        /// Random seed.
        #[arg(long, default_value_t = vitrine::quality::run::DEFAULT_SEED)]
        seed: u64,
        /// Skip drawing the product photos.
        #[arg(long)]
        no_images: bool,
    },
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// CLIP texts/s and images/s through SQL, on a folder prepared by benches/peers/clip_peers.py.
    Clip {
        /// The folder holding model/, texts.txt and images.txt.
        dir: PathBuf,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        batch_sizes: Vec<usize>,
        /// Timed runs per measurement (the best counts).
        #[arg(long, default_value_t = 2)]
        repeat: usize,
    },
    /// Vector index build time, recall@10, latency and QPS on clustered unit vectors; writes the
    /// vectors for benches/peers/vector_peers.py.
    Vectors {
        /// Folder for the vectors, a warehouse and vitrine.json.
        dir: PathBuf,
        /// Rows in the indexed table.
        #[arg(long, default_value_t = 44_424)]
        rows: usize,
        /// Queries (drawn like the rows, not in the table).
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Vector length.
        #[arg(long, default_value_t = 512)]
        dimension: usize,
        /// Clusters the vectors are drawn around.
        #[arg(long, default_value_t = 100)]
        clusters: usize,
        /// Syncs of 1 % changes to apply, and measure after (0: none).
        #[arg(long, default_value_t = 0)]
        syncs: usize,
    },
    /// Retrieval quality of two vector indexes (searched with their embedding model's text
    /// embedding) on queries drawn with a seed from the labelled demo catalog: Recall, Precision,
    /// nDCG, MRR and MAP at k with bootstrap intervals, and the paired differences. Writes
    /// metrics.json, report.md, qrels.txt, baseline.trec, candidate.trec and queries.jsonl.
    Quality(Box<QualityArgs>),
}

/// What `vitrine bench quality` compares, and how.
#[derive(Debug, Args)]
pub struct QualityArgs {
    /// The index searched as it is today.
    #[arg(long)]
    baseline: String,
    /// The index that should search better.
    #[arg(long)]
    candidate: String,
    /// Results per query and the metrics' cut-off.
    #[arg(long, default_value_t = vitrine::quality::run::DEFAULT_K)]
    k: usize,
    /// Seeds the query sample and the resampling.
    #[arg(long, default_value_t = vitrine::quality::run::DEFAULT_SEED)]
    seed: u64,
    /// Queries drawn of each kind (when no --queries file is given).
    #[arg(long, default_value_t = vitrine::quality::run::DEFAULT_PER_KIND)]
    per_kind: usize,
    /// Queries from a file instead: JSON lines (`.jsonl`: id, text, judgments {product:
    /// grade}) or TREC topics (`id<TAB>text`, with --qrels).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// TREC qrels judging the topics of --queries.
    #[arg(long, requires = "queries")]
    qrels: Option<PathBuf>,
    /// The labelled catalog's products table (article type, colour, gender).
    #[arg(long, default_value = "main.fashion_demo.products")]
    products: String,
    /// The labelled catalog's ground-truth table (material, pattern, …).
    #[arg(long, default_value = "main.fashion_demo.products_ground_truth")]
    ground_truth: String,
    /// The column both tables share, which the indexes' primary key holds.
    #[arg(long, default_value = "product_id")]
    key: String,
    /// A facet's column, as FACET=p.column or FACET=g.column (p: products, g: ground truth);
    /// facets: article, colour, gender, material, pattern, sleeve, collar, style.
    #[arg(long = "column", value_name = "FACET=ALIAS.COLUMN", value_parser = parse_facet_column)]
    columns: Vec<(vitrine::quality::queries::Facet, String)>,
    /// Evaluate on part of the labelled catalog only, e.g. the held-out split:
    /// --where "g.split = 'test'" (p: products, g: ground truth). Only those products are
    /// queried, judged and ranked.
    #[arg(long = "where", value_name = "PREDICATE")]
    filter: Option<String>,
    /// Folder for the report.
    #[arg(long, default_value = "quality-report")]
    out: PathBuf,
}

fn parse_facet_column(text: &str) -> Result<(vitrine::quality::queries::Facet, String), String> {
    let (facet, column) = text
        .split_once('=')
        .ok_or_else(|| format!("expected FACET=ALIAS.COLUMN, got '{text}'"))?;
    let facet = vitrine::quality::queries::Facet::parse(facet).map_err(|e| e.to_string())?;
    Ok((facet, column.to_string()))
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

fn parse_model(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, model)) if !name.is_empty() && !model.is_empty() => {
            Ok((name.to_string(), model.to_string()))
        }
        _ => Err(format!("expected NAME=PATH_OR_HUB_ID, got '{text}'")),
    }
}

/// Parses the arguments, runs the command, and turns failure into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // DataFusion plans recursively; generated MERGE queries are deep. Give planning room.
    let worker = std::thread::Builder::new()
        .name("vitrine".into())
        .stack_size(PLANNER_STACK)
        .spawn(move || run(cli));
    let outcome = match worker {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the vitrine thread panicked"))),
        Err(e) => Err(anyhow::anyhow!("starting the vitrine thread: {e}")),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: Vitrine's and DataFusion's messages already hold
/// their sources, which the chain then lists again.
fn error_message(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// Stack size of the threads that plan and run statements.
const PLANNER_STACK: usize = 32 << 20;

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,vitrine=info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn engine_config(cli: &Cli) -> Result<EngineConfig> {
    let mut settings: BTreeMap<String, String> = cli
        .models
        .iter()
        .map(|(name, model)| (format!("vitrine.model.{name}"), model.clone()))
        .collect();
    if let Some(device) = &cli.device {
        settings.insert("vitrine.device".into(), device.clone());
    }
    if let Some(dtype) = &cli.dtype {
        settings.insert("vitrine.dtype".into(), dtype.clone());
    }
    let workers = (!cli.workers.is_empty())
        .then(|| vitrine::cluster::Workers::parse(cli.workers.iter().map(String::as_str)))
        .transpose()?;
    Ok(EngineConfig {
        warehouse: cli.warehouse.clone(),
        settings,
        workers,
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(PLANNER_STACK)
        .build()
        .context("starting the async runtime")?;
    let config = engine_config(&cli)?;
    match cli.command {
        Command::Run {
            statements,
            files,
            format,
            continue_on_error,
        } => runtime.block_on(run_scripts(
            config,
            statements,
            files,
            format,
            continue_on_error,
        )),
        Command::Bench(BenchCommand::Clip {
            dir,
            batch_sizes,
            repeat,
        }) => {
            let options = bench::ClipBench {
                dir: &dir,
                batch_sizes: &batch_sizes,
                repeat,
            };
            runtime.block_on(bench::clip(options, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Vectors {
            dir,
            rows,
            queries,
            dimension,
            clusters,
            syncs,
        }) => {
            let options = bench::VectorBench {
                dir: &dir,
                rows,
                queries,
                dimension,
                clusters,
                syncs,
            };
            runtime.block_on(bench::vectors(options, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Quality(quality)) => {
            let QualityArgs {
                baseline,
                candidate,
                k,
                seed,
                per_kind,
                queries,
                qrels,
                products,
                ground_truth,
                key,
                columns,
                filter,
                out,
            } = *quality;
            use vitrine::quality::{QualityOptions, QuerySource};
            let queries = match (queries, qrels) {
                (None, _) => QuerySource::Drawn { per_kind },
                (Some(topics), Some(qrels)) => QuerySource::Trec { topics, qrels },
                (Some(file), None) => QuerySource::Jsonl(file),
            };
            let mut options = QualityOptions::new(baseline, candidate);
            options.k = k;
            options.seed = seed;
            options.queries = queries;
            options.labels.products = products;
            options.labels.ground_truth = ground_truth;
            options.labels.key = key;
            options.labels.filter = filter;
            for (facet, column) in &columns {
                options.labels.set_column(*facet, column)?;
            }
            runtime.block_on(bench::quality(&options, &out, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            config: file,
            addr,
            interval,
        } => {
            let mut serve = ServeConfig::load(file.as_deref())?;
            if let Some(addr) = addr {
                serve.addr = addr;
            }
            if let Some(interval) = interval {
                serve.sync_interval_s = interval;
            }
            serve.check()?;
            runtime.block_on(async {
                let engine = Engine::open(config).await?;
                vitrine::serve::run(engine, serve, file.as_deref()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { addr } => {
            runtime.block_on(async {
                let engine = Engine::open(config).await?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                eprintln!("worker listening on http://{}", listener.local_addr()?);
                tokio::select! {
                    served = engine.serve_worker(listener) => served?,
                    _ = tokio::signal::ctrl_c() => {}
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Repl { format } => {
            let session = runtime.block_on(Engine::open(config))?.session()?;
            session.set_client_application("vitrine repl");
            crate::repl::run(&runtime, &session, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lineage {
            table,
            version,
            format,
        } => {
            let (table, version) = lineage::parse_target(&table, version)?;
            runtime.block_on(lineage::lineage(config, &table, version, format))
        }
        Command::Reproduce {
            table,
            version,
            chain,
            overrides,
        } => {
            let (table, version) = lineage::parse_target(&table, version)?;
            let request = vitrine::reproduce::Request {
                table,
                version,
                chain,
                overrides,
            };
            runtime.block_on(lineage::reproduce(config, &request))
        }
        Command::SimulateTraffic(traffic) => {
            runtime.block_on(simulate::simulate(traffic, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoData {
            products,
            seed,
            no_images,
        } => {
            let summary = runtime.block_on(async {
                let warehouse = vitrine::catalog::Warehouse::open(&config.warehouse).await?;
                let options = DemoOptions {
                    products,
                    seed,
                    images: !no_images,
                    progress: std::io::stderr().is_terminal(),
                };
                demo::generate(&warehouse, &options).await
            })?;
            eprintln!(
                "wrote {} products and {} images to {}",
                summary.products, summary.images, summary.location
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_scripts(
    config: EngineConfig,
    statements: Vec<String>,
    files: Vec<PathBuf>,
    format: OutputFormat,
    continue_on_error: bool,
) -> Result<ExitCode> {
    if statements.is_empty() && files.is_empty() {
        anyhow::bail!("nothing to run: give -e SQL or script files");
    }
    let session = Engine::open(config).await?.session()?;
    session.set_client_application("vitrine run");
    let mut scripts: Vec<(String, String)> = statements
        .into_iter()
        .map(|s| ("-e".to_string(), s))
        .collect();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading script '{}'", file.display()))?;
        scripts.push((file.display().to_string(), text));
    }
    let mut failures = 0;
    let spinner = statement_spinner(&session);
    for (name, script) in &scripts {
        let mut stop = false;
        session
            .execute_script(script, name, |statement, outcome| match outcome {
                Ok(result) => {
                    let origin = ResultOrigin {
                        file: name,
                        line: statement.line,
                        statement: statement.index,
                    };
                    spinner.suspend(|| print_outcome(&result, format, origin));
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failures += 1;
                    spinner.suspend(|| eprintln!("{e}"));
                    if continue_on_error {
                        ControlFlow::Continue(())
                    } else {
                        stop = true;
                        ControlFlow::Break(())
                    }
                }
            })
            .await;
        if stop {
            break;
        }
    }
    spinner.finish_and_clear();
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_outcome(result: &StatementResult, format: OutputFormat, origin: ResultOrigin) {
    if let Err(e) = print_result(result, format, origin) {
        eprintln!("error printing the result: {e}");
    }
}
