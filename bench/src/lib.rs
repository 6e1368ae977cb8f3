//! Helpers shared by Weft's criterion benches (`benches/*.rs`): runtimes per
//! mode, and a trivial query.

pub mod layered;
pub mod wait_depth;

use weft_queries::{query, Cx};
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
/// ids, stored densely ([`Query::dense_index`](weft_queries::Query::dense_index));
/// [`trivial_hashed`](struct@trivial_hashed) is the same query with hashed
/// keys.
#[query(dense)]
pub fn trivial(_cx: &Cx<()>, key: u64) -> u64 {
    key.wrapping_mul(2)
}

/// [`trivial`](struct@trivial) with its keys hashed (the default storage).
#[query]
pub fn trivial_hashed(_cx: &Cx<()>, key: u64) -> u64 {
    key.wrapping_mul(2)
}
