//! Model objects: models trained by `CREATE MODEL … AS SELECT` and kept in the warehouse like
//! tables, in the Hugging Face layout their kind loads, so that `SET vitrine.model.<kind> =
//! 'catalog.schema.name'` (or `--model`, or another model's `base`) uses them.
//!
//! - [`entry`]: what the warehouse records of a model (options, training rows and the table
//!   versions they came from, loss curve, revision).
//! - [`catalog`]: where entries and files live: `_models/<catalog>/<schema>/<name>.json` and
//!   `_models/<catalog>/<schema>/<name>/<revision>/`.
//! - [`objects`]: the model functions' view of them ([`vitrine_udfs::runtime::source::ModelObjects`]).
//! - [`statements`]: `CREATE MODEL`, `SHOW MODELS`, `DESCRIBE MODEL`, `DROP MODEL`.

pub mod catalog;
pub mod entry;
pub mod objects;
pub mod statements;
