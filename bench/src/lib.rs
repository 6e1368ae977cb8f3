//! Helpers shared by Weft's criterion benches (`benches/*.rs`): runtimes per
//! mode, and a trivial query.

pub mod layered;
pub mod wait_depth;

use weft_queries::{Cx, Query};
use weft_runtime::{Jobserver, Mode, Runtime};

/// The modes this build can run, in the order the benches report them.
pub fn modes() -> Vec<Mode> {
    [Mode::Serial, Mode::Threads, Mode::Fibers]
        .into_iter()
        .filter(|&m| m != Mode::Fibers || Mode::fibers_available())
        .collect()
}

/// A runtime of `threads` workers in `mode`, ignoring any jobserver (a bench
/// under `make -j` still gets its workers).
pub fn runtime(mode: Mode, threads: usize) -> Runtime {
    Runtime::builder()
        .mode(mode)
        .threads(threads)
        .jobserver(Jobserver::Disabled)
        .build()
        .expect("build runtime")
}

/// A query whose provider does next to nothing: `key * 2`. Its keys are
/// ids, stored densely ([`Query::dense_index`]); [`TrivialHashed`] is the
/// same query with hashed keys.
pub struct Trivial;

impl Query for Trivial {
    type Db = ();
    type Key = u64;
    type Value = u64;
    const NAME: &'static str = "trivial";

    fn compute(_cx: &Cx<'_, ()>, key: &u64) -> u64 {
        key.wrapping_mul(2)
    }

    fn dense_index(key: &u64) -> Option<usize> {
        usize::try_from(*key).ok()
    }
}

/// [`Trivial`] with its keys hashed (the default storage).
pub struct TrivialHashed;

impl Query for TrivialHashed {
    type Db = ();
    type Key = u64;
    type Value = u64;
    const NAME: &'static str = "trivial_hashed";

    fn compute(_cx: &Cx<'_, ()>, key: &u64) -> u64 {
        key.wrapping_mul(2)
    }
}
