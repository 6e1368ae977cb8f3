//! Weft's query engine: memoized, parallel queries with eager cycle
//! detection, deterministic errors and buffered diagnostics, on the
//! `weft-runtime` worker pool (fibers, threads or serial).
//!
//! Modules, one protocol each:
//! - `query`: the [`Query`] trait;
//! - `storage`: the engine's memo tables by query type, read lock-free;
//! - `memo`: sharded memo tables read without locks, the claim protocol;
//! - `job`: job records, parents across forks, places on strands;
//! - `wait_graph`: who waits for whom (parallel children included), the
//!   eager cycle search and its proof;
//! - `cycle`: canonical [`Cycle`]s, breaking a cycle, each member's outcome;
//! - `engine`: [`Engine`] and [`Cx`]: claim, compute, publish, wait;
//! - `diagnostic`: [`Diagnostic`]s buffered per query.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cycle;
mod diagnostic;
mod engine;
mod job;
#[cfg(all(test, loom))]
mod loom_models;
mod memo;
pub mod profile;
mod query;
mod storage;
mod wait_graph;

pub use cycle::{Cycle, CycleFrame};
pub use diagnostic::{Diagnostic, Severity};
pub use engine::{Cx, Engine};
pub use query::Query;
pub use storage::QueryMemory;

/// Why a query has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query is part of, or depends on, a dependency cycle whose query
    /// has no [`Query::recover`] value.
    #[error("cycle detected: {0}")]
    Cycle(Cycle),
    /// The query's provider, or one it depends on, panicked. Names the query
    /// whose provider panicked.
    #[error("query `{query}({key})` panicked: {message}")]
    Panicked {
        /// [`Query::NAME`] of the provider that panicked.
        query: &'static str,
        /// `Debug` form of its key.
        key: String,
        /// The panic message (`"non-string panic payload"` if it had none).
        message: String,
    },
}

/// The README's library example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
