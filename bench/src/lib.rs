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

/// A query whose provider does next to nothing: `key * 2`.
pub struct Trivial;

impl Query for Trivial {
    type Db = ();
    type Key = u64;
    type Value = u64;
    const NAME: &'static str = "trivial";

    fn compute(_cx: &Cx<'_, ()>, key: &u64) -> u64 {
        key.wrapping_mul(2)
    }
}
