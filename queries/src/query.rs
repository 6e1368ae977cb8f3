//! The [`Query`] trait: what a query is, as salsa's and rustc's queries.

use std::fmt::Debug;
use std::hash::Hash;

use crate::{Cx, Cycle};

/// A query: a pure function from a key to a value, memoized by the engine.
///
/// A provider ([`Query::compute`]) may ask for other queries through
/// [`Cx::get`]; the engine memoizes every result, runs each key at most once,
/// and makes callers of a key still being computed wait (a fiber suspends, a
/// thread blocks). Providers must be deterministic functions of their key,
/// the `Db` and the values they read: that is what makes the results the
/// same in every mode and thread count.
pub trait Query: 'static {
    /// The engine's user data, reached with [`Cx::db`] (the compiler's
    /// session: options, inputs).
    type Db: Send + Sync + 'static;
    /// The key. Its `Debug` form names the query in cycle reports, panics
    /// and profiles, so keep it short and stable.
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// The value; cloned on every cache hit, so keep it cheap (an `Arc`).
    type Value: Clone + Send + Sync + 'static;
    /// The query's name, e.g. `"const_value"`.
    const NAME: &'static str;

    /// Computes the value for `key`.
    fn compute(cx: &Cx<'_, Self::Db>, key: &Self::Key) -> Self::Value;

    /// A dense index for `key`, when keys are ids (`0, 1, 2, ...`): such a
    /// key's memo is stored inline at that position of an array, as
    /// rustc's `VecCache` stores `DefIndex`-keyed queries, instead of in
    /// the hash table. A read then indexes (two loads, no hash), and a
    /// miss allocates nothing. `None` (the default) hashes the key.
    ///
    /// Indices should be dense: index `i` makes the table hold about `i`
    /// entries (of about 70 bytes plus the key and value). Indices above
    /// 16,776,191 are hashed whatever this returns. Results are the same
    /// either way; only cost differs.
    #[inline]
    fn dense_index(key: &Self::Key) -> Option<usize> {
        let _ = key;
        None
    }

    /// How profiles (`--profile`, `--trace`, `--timings`) name `key`: by
    /// default its `Debug` form. Override it when the key is an id, so that
    /// a picture says `def_map(serde)`, not `def_map(51)` (as salsa's
    /// `DebugWithDb`). Called once per execution, only while recording.
    fn describe(db: &Self::Db, key: &Self::Key) -> String {
        let _ = db;
        format!("{key:?}")
    }

    /// The value to use when `key` is part of a dependency cycle. Every
    /// query of the cycle gets its own `recover` value, computed from the
    /// same canonical [`Cycle`]; `None` (the default) makes the result
    /// [`QueryError::Cycle`](crate::QueryError::Cycle).
    fn recover(cx: &Cx<'_, Self::Db>, cycle: &Cycle, key: &Self::Key) -> Option<Self::Value> {
        let _ = (cx, cycle, key);
        None
    }
}
