//! Vector indexes and `vector_search`: everything about them but the parsing of their statements
//! (which is [`crate::sql::parser`]'s).
//!
//! - [`index`]: an index's entry (source, key, columns, metric, ANN kind and parameters with
//!   their defaults) and its Lance dataset (build, open).
//! - [`resident`]: IVF_FLAT and FLAT indexes held in memory and searched without a query plan,
//!   on the kernels of [`distance`].
//! - [`calibrate`]: the search breadth chosen by measuring recall on a sample of the index.
//! - [`catalog`]: where entries live in the warehouse.
//! - [`statements`]: `CREATE VECTOR INDEX`, `SYNC INDEX` (and the background sync of
//!   `CONTINUOUS` indexes), `DROP INDEX`, `SHOW INDEXES`, `DESCRIBE INDEX`.
//! - [`search`]: the `vector_search(…)` table function, alone or `LATERAL`, and the in-process
//!   search; [`filter`]: the conditions searches keep rows by.
//!
//! Handlers reach the session through the [`crate::session::Session`] seam only.

pub mod calibrate;
pub mod catalog;
pub mod distance;
pub mod filter;
pub mod index;
pub mod resident;
pub mod search;
pub mod statements;
