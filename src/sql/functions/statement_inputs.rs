//! The two inputs of a statement that are not in its tables: the clock and the seed. A session
//! fixes both when a statement begins ([`StatementInputs::begin`]): `now()`,
//! `current_timestamp()`, `current_date()` and `current_time()` give the statement's start time
//! (the instant `system.query.history.start_time` records, or `vitrine.clock` when set), and
//! `rand()` draws from the statement's seed (`vitrine.seed`, or one drawn and recorded), so that a
//! statement re-run with its recorded inputs computes the same values.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::Float64Array;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// The running statement's clock and seed, shared by a session with its functions.
#[derive(Debug, Default)]
pub struct StatementInputs {
    clock: RwLock<Option<DateTime<Utc>>>,
    seed: AtomicU64,
    /// Batches `rand()` has drawn for in this statement.
    batches: AtomicU64,
}

impl StatementInputs {
    /// Fixes the clock and the seed of the statement about to run.
    pub fn begin(&self, clock: DateTime<Utc>, seed: u64) {
        *self.clock.write().expect("clock lock") = Some(clock);
        self.seed.store(seed, Ordering::Relaxed);
        self.batches.store(0, Ordering::Relaxed);
    }

    /// Begins a worker's share of a statement drawing from `seed`: `rand()` there draws from
    /// its own streams (numbered from a random point), apart from the other workers' and the
    /// coordinator's. Clock functions need no start: the coordinator folds them into constants
    /// when it plans.
    pub fn begin_share(&self, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
        self.batches
            .store(u64::from(rand::random::<u32>()) << 32, Ordering::Relaxed);
    }

    fn clock(&self) -> Option<DateTime<Utc>> {
        *self.clock.read().expect("clock lock")
    }
}

/// `random` (and `rand`), drawing from `inputs`' seed.
pub fn seeded_random(inputs: &Arc<StatementInputs>) -> ScalarUDF {
    ScalarUDF::new_from_impl(SeededRandom::new(Arc::clone(inputs)))
}

/// Replaces the session's clock functions and `random` with ones that read `inputs`.
pub fn register(ctx: &mut SessionContext, inputs: &Arc<StatementInputs>) -> Result<()> {
    for name in ["now", "current_date", "current_time"] {
        let inner = datafusion::execution::FunctionRegistry::udf(ctx, name)?;
        ctx.register_udf(ScalarUDF::new_from_impl(StatementClock {
            inner,
            inputs: Arc::clone(inputs),
        }));
    }
    ctx.register_udf(seeded_random(inputs));
    Ok(())
}

/// A clock function (`now`, `current_date`, …) evaluated at the statement's start time.
#[derive(Debug)]
struct StatementClock {
    inner: Arc<ScalarUDF>,
    inputs: Arc<StatementInputs>,
}

impl PartialEq for StatementClock {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.inputs, &other.inputs)
    }
}

impl Eq for StatementClock {}

impl Hash for StatementClock {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl ScalarUDFImpl for StatementClock {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DFResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DFResult<ExprSimplifyResult> {
        match self.inputs.clock() {
            Some(clock) => self.inner.simplify(
                args,
                &info.clone().with_query_execution_start_time(Some(clock)),
            ),
            None => self.inner.simplify(args, info),
        }
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(StatementClock {
            inner: Arc::new(inner),
            inputs: Arc::clone(&self.inputs),
        }))
    }
}

/// Spark's `rand([seed])` (DataFusion's `random()`): uniform doubles in [0, 1) drawn from the
/// statement's seed (or the seed given), each batch of rows from its own stream, numbered in the
/// order the batches reach the function. The same rows reaching it in the same batches get the
/// same values; a query whose batches interleave differently from run to run (several
/// partitions) may hand the same values to other rows.
#[derive(Debug)]
struct SeededRandom {
    inputs: Arc<StatementInputs>,
    signature: Signature,
    aliases: Vec<String>,
}

impl SeededRandom {
    fn new(inputs: Arc<StatementInputs>) -> Self {
        Self {
            inputs,
            signature: Signature::one_of(
                vec![
                    TypeSignature::Nullary,
                    TypeSignature::Exact(vec![DataType::Int64]),
                ],
                Volatility::Volatile,
            ),
            aliases: vec!["rand".to_string()],
        }
    }
}

impl PartialEq for SeededRandom {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inputs, &other.inputs)
    }
}

impl Eq for SeededRandom {}

impl Hash for SeededRandom {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "random".hash(state);
    }
}

impl ScalarUDFImpl for SeededRandom {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "random"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let seed = match args.args.first() {
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(seed)))) => *seed as u64,
            Some(ColumnarValue::Scalar(ScalarValue::Int64(None))) | None => {
                self.inputs.seed.load(Ordering::Relaxed)
            }
            Some(_) => {
                return Err(datafusion::error::DataFusionError::Plan(
                    "rand(seed): the seed must be a constant".into(),
                ))
            }
        };
        let batch = self.inputs.batches.fetch_add(1, Ordering::Relaxed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(batch);
        let values: Float64Array = (0..args.number_rows)
            .map(|_| Some(rng.random::<f64>()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::display::array_value_to_string;

    async fn first_row(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let batch = &batches[0];
        (0..batch.num_columns())
            .map(|c| array_value_to_string(batch.column(c), 0).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_clock_and_the_seed_are_the_statements() {
        let mut ctx = SessionContext::new();
        let inputs = Arc::new(StatementInputs::default());
        register(&mut ctx, &inputs).unwrap();
        let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let sql = "SELECT now(), current_date(), rand()";
        inputs.begin(at, 7);
        let first = first_row(&ctx, sql).await;
        assert!(first[0].starts_with("2026-12-01T10:00:00"), "{first:?}");
        assert_eq!(first[1], "2026-12-01");
        inputs.begin(at, 7);
        assert_eq!(
            first_row(&ctx, sql).await,
            first,
            "the same inputs, the same values"
        );
        inputs.begin(at, 7);
        assert_eq!(
            first_row(&ctx, "SELECT rand(7)").await[0],
            first[2],
            "rand(seed) draws from its seed"
        );
        inputs.begin(at, 8);
        assert_ne!(first_row(&ctx, sql).await[2], first[2]);
    }
}
