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
//! - `input`: [`Input`]s, set from outside and read like queries;
//! - `diagnostic`: [`Diagnostic`]s buffered per query.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cycle;
mod diagnostic;
mod engine;
mod input;
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
pub use engine::{Context, Cx, Engine};
pub use input::{Input, InputError};
pub use query::Query;

pub use storage::QueryMemory;
/// Defines a query from a function, as salsa's `#[salsa::tracked]`: the
/// function's parameters after the context are the key, its result is the
/// value, its body is the provider.
///
/// ```
/// use std::sync::Arc;
/// use weft_queries::{query, Cx, Cycle, Engine};
/// use weft_runtime::{Mode, Runtime};
///
/// /// The user data: the "source" of each file.
/// struct Db {
///     files: Vec<String>,
/// }
///
/// /// The words of file `file` (read by id: stored densely).
/// #[query(dense)]
/// fn words(cx: &Cx<Db>, file: u32) -> Arc<[String]> {
///     let text = &cx.db().files[file as usize];
///     text.split_whitespace().map(str::to_owned).collect()
/// }
///
/// /// How many times `word` occurs in the files `0..n`: two keys, one
/// /// borrowed (`&String`: no clone), read with the generated method.
/// #[query]
/// fn count(cx: &Cx<Db>, word: &String, n: u32) -> usize {
///     (0..n).map(|f| cx.words(f).iter().filter(|w| *w == word).count()).sum()
/// }
///
/// /// A query on a cycle, which recovers with the cycle's length.
/// #[query(recover = ring_recover)]
/// fn ring(cx: &Cx<Db>, i: u32) -> usize {
///     ring(cx, (i + 1) % 3)
/// }
///
/// fn ring_recover(_cx: &Cx<Db>, cycle: &Cycle, _i: &u32) -> Option<usize> {
///     Some(cycle.frames.len())
/// }
///
/// let db = Db { files: vec!["a b a".into(), "b a".into()] };
/// let engine = Engine::new(Runtime::builder().mode(Mode::Threads).threads(2).build()?, db);
/// assert_eq!(engine.run(|cx| cx.count("a".to_owned(), 2)), 3);
/// assert_eq!(engine.get::<count>(("b".to_owned(), 2)), Ok(2));
/// assert_eq!(engine.get::<ring>(0), Ok(3));
/// # Ok::<(), weft_runtime::BuildError>(())
/// ```
///
/// For `fn name(cx: &Cx<Db>, k1: K1, k2: &K2) -> V { body }` this defines,
/// with the function's visibility and docs:
///
/// - `struct name {}`, the query type: a [`Query`] with `Key = (K1, K2)`
///   (one key parameter: its type; none: `()`), `Value = V` and
///   `NAME = "name"`; its provider runs `body` with `k1` a clone of its
///   part of the key and `k2` a borrow of its part;
/// - `fn name(cx: &Cx<Db>, k1: K1, k2: K2) -> V`, which reads the query
///   (`cx.get::<name>((k1, k2))`), so queries call each other as functions;
/// - `trait NameQuery` (the name in CamelCase, then `Query`) with the
///   methods `cx.name(k1, k2) -> V` and `cx.try_name(k1, k2) ->
///   Result<V, QueryError>`, implemented for `Cx<'_, Db>`; import it where
///   other modules call the methods.
///
/// The context parameter may name `Cx` through an alias
/// (`type Cx<'a> = weft_queries::Cx<'a, Db>`): the `Db` is found through
/// [`Context`].
///
/// Options, comma-separated: `recover = path` ([`Query::recover`]: a
/// `fn(&Cx<Db>, &Cycle, &Key) -> Option<V>`), `describe = path`
/// ([`Query::describe`]: a `fn(&Db, &Key) -> String`), `dense`
/// ([`Query::dense_index`] as `usize::try_from(key)`) or `dense = path` (a
/// `fn(&Key) -> Option<usize>`), `name = "text"` (the [`Query::NAME`]).
///
/// Misuse is a compile error that says what to write instead: a missing
/// context or value, `async`, generics, a method, a pattern as a key
/// parameter, a `&mut` key, an unknown or repeated option.
pub use weft_macros::query;

/// Why a query has no value. Non-exhaustive: revisions will add reasons
/// (a cancelled query).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A read of a query in progress elsewhere, from code that runs while
    /// its thread unwinds (a `Drop` during a panic), on a fiber whose worker
    /// has other fibers: it can neither suspend (std's panic count is per
    /// thread) nor block safely (what it waits for may need one of those
    /// fibers, which only this thread can resume), so it returns at once.
    /// Fibers mode only; threads and serial mode block and get the value.
    #[error("`{query}({key})` is in progress elsewhere and cannot be waited for while this thread unwinds (fibers mode)")]
    WaitWhileUnwinding {
        /// [`Query::NAME`] of the query read.
        query: &'static str,
        /// `Debug` form of its key.
        key: String,
    },
    /// An [`Input`] was read where it was never set
    /// ([`Engine::set_input`]).
    #[error("input `{input}({key})` is not set")]
    MissingInput {
        /// [`Input::NAME`].
        input: &'static str,
        /// `Debug` form of its key.
        key: String,
    },
}

/// The README's library example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
