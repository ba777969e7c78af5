//! `vitrine simulate-traffic`: shoppers for a running `vitrine serve`, so that phase 5 runs end
//! to end without real users. Each simulated search asks for a colour and article type that
//! products of the catalog share ("Red Tshirts"), as a user drawn from a fixed population; the
//! user then looks down the results with a position bias (rank r is seen with probability
//! 0.85^r), clicks a seen result that matches the query with probability 0.7 (and one that does
//! not with 0.05), puts a clicked match in the cart with probability 0.3 and buys it with 0.5
//! after that. Everything goes through the service's HTTP API; the answers' variants are counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use vitrine::{Engine, EngineConfig};

/// What to simulate.
#[derive(Debug, Clone, clap::Args)]
pub struct Traffic {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// How many searches.
    #[arg(long, default_value_t = 1000)]
    pub searches: usize,
    /// How many distinct users.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Searches in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Results asked per search.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Random seed.
    #[arg(long, default_value_t = vitrine::quality::run::DEFAULT_SEED)]
    pub seed: u64,
    /// The bearer token events need, if the service has one.
    #[arg(long, env = "VITRINE_SERVE_TOKEN")]
    pub token: Option<String>,
}

/// What the simulated users did, by variant.
#[derive(Debug, Default)]
struct Tally {
    searches: usize,
    clicks: usize,
    carts: usize,
    purchases: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.searches += other.searches;
        self.clicks += other.clicks;
        self.carts += other.carts;
        self.purchases += other.purchases;
    }
}

/// The chance a shopper looks at the result at `rank` (from 0).
fn seen(rank: usize) -> f64 {
    0.85f64.powi(rank as i32)
}

/// The queries: every colour and article type at least 2 products share.
async fn queries(config: EngineConfig) -> Result<Vec<(String, String)>> {
    let session = Engine::open(config).await?.session()?;
    let result = session
        .execute(
            "SELECT base_color, article_type FROM main.fashion_demo.products \
             WHERE base_color IS NOT NULL AND article_type IS NOT NULL \
             GROUP BY base_color, article_type HAVING COUNT(*) >= 2 \
             ORDER BY base_color, article_type",
        )
        .await
        .context("reading the catalog's colours and article types")?;
    let mut pairs = Vec::new();
    for batch in &result.batches {
        for row in 0..batch.num_rows() {
            let text = |column: usize| -> Result<String> {
                let formatter = datafusion::arrow::util::display::ArrayFormatter::try_new(
                    batch.column(column),
                    &Default::default(),
                )?;
                Ok(formatter.value(row).to_string())
            };
            pairs.push((text(0)?, text(1)?));
        }
    }
    if pairs.is_empty() {
        bail!("the catalog has no colour and article type shared by 2 products");
    }
    Ok(pairs)
}

/// One shopper's search and what they do with it.
async fn shop(
    client: &reqwest::Client,
    traffic: &Traffic,
    user: String,
    (colour, article): &(String, String),
    rng: &mut ChaCha8Rng,
) -> Result<(String, Tally)> {
    let query = format!("{colour} {article}");
    let answer: Value = client
        .post(format!("{}/api/v1/search/text", traffic.url))
        .json(&json!({ "query": query, "user_id": user, "limit": traffic.limit }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let variant = answer["variant"].as_str().unwrap_or("?").to_string();
    let search_id = answer["search_id"].as_str().unwrap_or_default().to_string();
    let mut tally = Tally {
        searches: 1,
        ..Tally::default()
    };
    let products = answer["products"].as_array().cloned().unwrap_or_default();
    for (rank, product) in products.iter().enumerate() {
        if !rng.random_bool(seen(rank)) {
            continue;
        }
        let matches =
            product["base_color"] == colour.as_str() && product["article_type"] == article.as_str();
        if !rng.random_bool(if matches { 0.7 } else { 0.05 }) {
            continue;
        }
        let mut kinds = vec!["click"];
        if matches && rng.random_bool(0.3) {
            kinds.push("add_to_cart");
            if rng.random_bool(0.5) {
                kinds.push("purchase");
            }
        }
        for kind in kinds {
            let mut request = client
                .post(format!("{}/api/v1/events", traffic.url))
                .json(&json!({ "search_id": search_id, "type": kind,
                               "product_id": product["product_id"] }));
            if let Some(token) = &traffic.token {
                request = request.bearer_auth(token);
            }
            request.send().await?.error_for_status()?;
            match kind {
                "click" => tally.clicks += 1,
                "add_to_cart" => tally.carts += 1,
                _ => tally.purchases += 1,
            }
        }
    }
    Ok((variant, tally))
}

/// Runs the simulation against `traffic.url`, reading the catalog through `config`; prints
/// what the users did per variant.
pub async fn simulate(mut traffic: Traffic, config: EngineConfig) -> Result<()> {
    traffic.url = traffic.url.trim_end_matches('/').to_string();
    let pairs = Arc::new(queries(config).await?);
    let client = reqwest::Client::new();
    let traffic = Arc::new(traffic);
    let workers = traffic.concurrency.max(1);
    let mut running = Vec::new();
    for worker in 0..workers {
        let (client, traffic, pairs) = (client.clone(), Arc::clone(&traffic), Arc::clone(&pairs));
        running.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(traffic.seed.wrapping_add(worker as u64));
            let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
            for _ in (worker..traffic.searches).step_by(workers) {
                let user = format!("user-{}", rng.random_range(0..traffic.users.max(1)));
                let pair = &pairs[rng.random_range(0..pairs.len())];
                let (variant, tally) = shop(&client, &traffic, user, pair, &mut rng).await?;
                tallies.entry(variant).or_default().add(&tally);
            }
            anyhow::Ok(tallies)
        }));
    }
    let mut totals: BTreeMap<String, Tally> = BTreeMap::new();
    for worker in running {
        for (variant, tally) in worker.await?? {
            totals.entry(variant).or_default().add(&tally);
        }
    }
    println!("variant\tsearches\tclicks\tadd_to_cart\tpurchases");
    for (variant, t) in &totals {
        println!(
            "{variant}\t{}\t{}\t{}\t{}",
            t.searches, t.clicks, t.carts, t.purchases
        );
    }
    Ok(())
}
