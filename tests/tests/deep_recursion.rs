//! Issue 5, "never crash": a query chain of depth 1,000,000 completes in
//! every mode with the default stack sizes. The engine calls
//! `ensure_sufficient_stack` at every query entry, which continues the
//! recursion on fresh stack segments when the current stack (fiber, worker
//! thread, or the caller's thread in serial mode) runs low.
//!
//! ```text
//!  chain(1_000_000) -> chain(999_999) -> ... -> chain(0)
//!  one stack frame group per level; ~100+ segments of 2 MiB in all
//! ```

use weft_queries::{query, Cx, Engine};
use weft_runtime::{ensure_sufficient_stack, remaining_stack};
use weft_tests::{for_configs, runtime, Config};

const DEPTH: u64 = 1_000_000;

/// `chain(n) = chain(n - 1) + 1`, `chain(0) = 0`: every level is a query miss.
#[query]
fn chain(cx: &Cx<()>, key: u64) -> u64 {
    match key {
        0 => 0,
        n => cx.chain(n - 1) + 1,
    }
}

/// One configuration per mode (a chain is sequential: more workers add
/// nothing but time).
fn one_per_mode() -> Vec<Config> {
    weft_tests::modes()
        .into_iter()
        .map(|mode| Config { mode, threads: 2 }.normalized())
        .collect()
}

trait Normalized {
    fn normalized(self) -> Self;
}

impl Normalized for Config {
    fn normalized(mut self) -> Config {
        if self.mode == weft_runtime::Mode::Serial {
            self.threads = 1;
        }
        self
    }
}

#[test]
fn query_chain_of_depth_one_million() {
    for_configs(one_per_mode(), |mode, threads| {
        let engine = Engine::new(runtime(mode, threads), ());
        assert_eq!(
            engine.get::<chain>(DEPTH).unwrap(),
            DEPTH,
            "[{mode}/{threads}]"
        );
    });
}

/// The same depth without the query engine: plain recursion on the runtime
/// that calls `ensure_sufficient_stack` at every level.
#[test]
fn plain_recursion_of_depth_one_million() {
    #[inline(never)]
    fn chain(n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ensure_sufficient_stack(|| chain(n - 1) + 1)
    }
    for_configs(one_per_mode(), |mode, threads| {
        let rt = runtime(mode, threads);
        let (depth, remaining) = rt.block_on(|| (chain(DEPTH), remaining_stack()));
        assert_eq!(depth, DEPTH, "[{mode}/{threads}]");
        assert!(
            remaining.is_some(),
            "[{mode}/{threads}] stack bounds unknown"
        );
    });
}
