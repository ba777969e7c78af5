//! `vitrine serve`: the A/B-tested search service of the plan's phases 5 and 6, over the
//! warehouse it is given and nothing else.
//!
//! - [`config`]: what it serves and how (defaults, TOML file, flags; reloaded live).
//! - [`variant`]: which arm of the A/B test a user gets (the plan's md5 rule).
//! - [`api`]: the HTTP routes (axum), their requests, answers and errors.
//! - [`embedder`]: query texts batched into model calls, a cache of their vectors, photos.
//! - [`products`]: the products table in memory, for product pages and photos.
//! - [`events`]: the write-ahead event log and its commits into the events table.
//! - [`metrics`]: Prometheus metrics.
//!
//! Searches go through [`EngineSession::search_vectors`] (the in-process API, no SQL text is
//! made from a request); the service also keeps the CONTINUOUS vector indexes in sync.

pub mod api;
pub mod config;
pub mod embedder;
pub mod events;
pub mod metrics;
pub mod products;
pub mod variant;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use config::ServeConfig;
use embedder::QueryEmbedder;
use events::{EventLog, EVENTS_KEY_INDEX, EVENTS_TABLE_COLUMNS};
use metrics::Metrics;
use products::Products;

use crate::engine::{Engine, EngineSession};
use crate::error::{Result, VitrineError};

/// How long a search accepts events after it ran.
pub const EVENT_WINDOW: Duration = Duration::from_secs(3600);

/// A running service's shared state.
pub struct Service {
    engine: Arc<Engine>,
    /// The session searches, embeddings and product reads go through.
    session: Arc<EngineSession>,
    /// What commits go through, held by one commit at a time: the periodic one and the one at
    /// shutdown must not overlap.
    committer: tokio::sync::Mutex<Committer>,
    config: RwLock<Arc<ServeConfig>>,
    config_file: Option<PathBuf>,
    embedder: QueryEmbedder,
    products: RwLock<Arc<Products>>,
    events: EventLog,
    metrics: Metrics,
}

/// The session commits go through (it registers the rows it commits) and the commits since the
/// events table was last compacted.
struct Committer {
    session: EngineSession,
    since_compaction: u32,
}

impl Service {
    /// Opens the service over `engine`: creates the events table if it is missing, replays
    /// the event log, reads the products and the indexes searched in memory.
    pub async fn start(
        engine: Arc<Engine>,
        config: ServeConfig,
        config_file: Option<PathBuf>,
    ) -> Result<Arc<Self>> {
        let session = Arc::new(engine.session()?);
        session.set_client_application("vitrine serve");
        let committer = engine.session()?;
        committer.set_client_application("vitrine serve");
        let table = &config.events.table;
        if let Some((schema, _)) = table.rsplit_once('.') {
            committer
                .execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
        committer
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} ({EVENTS_TABLE_COLUMNS})"
            ))
            .await?;
        // Each commit upserts on event_id: with the key indexed, Lance joins the new rows
        // through the index instead of reading the whole table's keys.
        if let Err(e) = committer
            .execute(&format!(
                "CREATE INDEX IF NOT EXISTS {EVENTS_KEY_INDEX} ON {table} (event_id) USING BTREE"
            ))
            .await
        {
            eprintln!("{table} has no index on event_id, so each commit reads every key: {e}");
        }
        let log_dir = match (&config.events.log_dir, engine.warehouse().local_root()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(root)) => root.join("_serve").join("events"),
            (None, None) => {
                return Err(VitrineError::Plan(
                    "an object-store warehouse needs events.log_dir, a local folder for the \
                     event log"
                        .into(),
                ))
            }
        };
        let (events, replayed) = EventLog::open(&log_dir, EVENT_WINDOW)?;
        if replayed > 0 {
            eprintln!(
                "replayed {replayed} records from the event log in '{}'",
                log_dir.display()
            );
        }
        let products = Products::load(&session, &config.search.products_table)
            .await
            .unwrap_or_else(|e| {
                eprintln!("no product pages or photos until a reload finds the products: {e}");
                Products::default()
            });
        let metrics = Metrics::default();
        let embedder = QueryEmbedder::new(
            Arc::clone(&session),
            config.search.embed_batch,
            config.search.embed_calls,
            Duration::from_millis(config.search.embed_wait_ms),
            config.search.embed_wait_share,
            config.search.cached_queries,
            metrics.embedder.clone(),
        );
        let service = Arc::new(Self {
            engine,
            session,
            committer: tokio::sync::Mutex::new(Committer {
                session: committer,
                since_compaction: 0,
            }),
            config: RwLock::new(Arc::new(config)),
            config_file,
            embedder,
            products: RwLock::new(Arc::new(products)),
            events,
            metrics,
        });
        service.commit().await?;
        for line in service.engine.warm_indexes().await? {
            eprintln!("{line}");
        }
        Ok(service)
    }

    /// The settings now in force.
    pub fn config(&self) -> Arc<ServeConfig> {
        Arc::clone(&self.config.read().expect("config lock"))
    }

    /// The products now shown.
    pub fn products(&self) -> Arc<Products> {
        Arc::clone(&self.products.read().expect("products lock"))
    }

    /// Reads the config file again (keeping the address and the log folder, which cannot change
    /// while serving) and the products table; requests running keep the settings they began
    /// with.
    pub async fn reload(&self) -> Result<Arc<ServeConfig>> {
        let current = self.config();
        let mut next = ServeConfig::load(self.config_file.as_deref())?;
        next.addr = current.addr;
        next.events.log_dir.clone_from(&current.events.log_dir);
        next.events.table.clone_from(&current.events.table);
        let products = Products::load(&self.session, &next.search.products_table).await?;
        let next = Arc::new(next);
        *self.products.write().expect("products lock") = Arc::new(products);
        *self.config.write().expect("config lock") = Arc::clone(&next);
        Ok(next)
    }

    /// Commits the logged events into the events table, and compacts the table every
    /// `events.compact_every` commits that wrote rows.
    pub async fn commit(&self) -> Result<usize> {
        let config = self.config();
        let table = &config.events.table;
        let mut committer = self.committer.lock().await;
        let committed = self.events.commit(&committer.session, table).await?;
        self.metrics.set_pending(self.events.pending());
        if committed > 0 {
            committer.since_compaction += 1;
        }
        let every = config.events.compact_every;
        if every > 0 && committer.since_compaction >= every {
            // The rows are committed either way; a failed compaction is tried again next time.
            match committer
                .session
                .execute(&format!("OPTIMIZE {table}"))
                .await
            {
                Ok(_) => committer.since_compaction = 0,
                Err(e) => eprintln!("compacting {table} failed (retrying): {e}"),
            }
        }
        Ok(committed)
    }

    /// The background duties: commits every `events.commit_interval_ms`, syncs the CONTINUOUS
    /// indexes every `sync_interval_s`, until `stop` is notified.
    async fn duties(self: Arc<Self>, stop: Arc<tokio::sync::Notify>) {
        let started = tokio::time::Instant::now();
        let (mut last_commit, mut last_sync) = (started, started);
        loop {
            let config = self.config();
            let commit_every = Duration::from_millis(config.events.commit_interval_ms);
            let sync_every = Duration::from_secs_f64(config.sync_interval_s);
            let next = (last_commit + commit_every).min(last_sync + sync_every);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = stop.notified() => return,
            }
            let now = tokio::time::Instant::now();
            if now >= last_commit + commit_every {
                last_commit = now;
                if let Err(e) = self.commit().await {
                    eprintln!("committing events failed (retrying): {e}");
                }
            }
            if now >= last_sync + sync_every {
                last_sync = now;
                match self.engine.sync_continuous_indexes().await {
                    Ok(lines) => lines.iter().for_each(|l| eprintln!("{l}")),
                    Err(e) => eprintln!("sync failed (retrying): {e}"),
                }
                match self.engine.warm_indexes().await {
                    Ok(lines) => lines.iter().for_each(|l| eprintln!("{l}")),
                    Err(e) => eprintln!("reading indexes into memory failed (retrying): {e}"),
                }
            }
        }
    }
}

/// Runs the service until Ctrl-C or SIGTERM (then commits what is logged); SIGHUP reloads the
/// config. Prints `listening on http://ADDR` once it accepts requests.
pub async fn run(
    engine: Arc<Engine>,
    config: ServeConfig,
    config_file: Option<&Path>,
) -> Result<()> {
    let addr = config.addr;
    let service = Service::start(engine, config, config_file.map(Path::to_path_buf)).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| VitrineError::Plan(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    eprintln!("listening on http://{bound}");
    let stop = Arc::new(tokio::sync::Notify::new());
    let duties = spawn_duties(Arc::clone(&service), Arc::clone(&stop))?;
    tokio::spawn(reload_on_hangup(Arc::clone(&service)));
    let header_timeout = service.config().limits.request_timeout_s;
    serve_connections(
        listener,
        api::router(Arc::clone(&service)),
        Duration::from_secs_f64(header_timeout),
    )
    .await;
    stop.notify_one();
    // The duties finish what they were doing (a commit, a sync) before the last commit.
    let _ = tokio::task::spawn_blocking(move || duties.join()).await;
    let committed = service.commit().await?;
    eprintln!("stopped; {committed} searches committed at the end");
    Ok(())
}

/// Stack size of the duties' threads, which plan statements (the CLI's planner stack).
const DUTIES_STACK: usize = 32 << 20;

/// Runs the background duties on a runtime and thread of their own, so that the CPU work of a
/// commit or a sync is shared out by the operating system instead of holding the threads that
/// answer requests (measured on 2 cores: p99 of vector searches 194 ms with a commit every
/// second on the requests' runtime, 7.2 ms with no commit at all).
fn spawn_duties(
    service: Arc<Service>,
    stop: Arc<tokio::sync::Notify>,
) -> Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("vitrine-duties")
        .thread_stack_size(DUTIES_STACK)
        .enable_all()
        .build()?;
    Ok(std::thread::Builder::new()
        .name("vitrine-duties".into())
        .stack_size(DUTIES_STACK)
        .spawn(move || runtime.block_on(service.duties(stop)))?)
}

/// Answers HTTP/1.1 connections from `listener` with `router` until Ctrl-C or SIGTERM, then waits
/// for the requests in flight. A client that has not sent a request's headers within
/// `header_timeout` is disconnected (the router's own timeout covers the body and the answer), so
/// slow clients cannot hold connections open.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stopped());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    eprintln!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or times out ends its own connection only.
            let _ = connection.await;
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// Resolves at Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupted = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupted => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupted.await;
}

/// Reloads the config at each SIGHUP.
async fn reload_on_hangup(service: Arc<Service>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            match service.reload().await {
                Ok(_) => eprintln!("config reloaded"),
                Err(e) => eprintln!("reload failed, the old config stays: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = service;
}
