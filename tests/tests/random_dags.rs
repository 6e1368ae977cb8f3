//! Acceptance test 7 of issue 2: 10,000 random query graphs, some with
//! injected cycles and panics, give the same results in every mode and
//! worker count as in serial mode.
//!
//! # The graphs
//!
//! A [`Graph`] is a small (5–30 nodes) random DAG over one query `node(u32)`:
//! node `u` depends on nodes with a larger index, fetched in order, each with
//! `cx.get` (an error unwinds: `u`'s result becomes the same error) or with
//! `cx.try_get` (an error becomes part of `u`'s value, deterministically);
//! some nodes fetch all their dependencies at once through `par_map`. Some
//! nodes panic, before or after fetching their dependencies; some define a
//! `recover` value. A node's value combines its index and its dependencies'
//! values (FNV hash).
//!
//! Cycles are injected as *gadgets*: `k` (1–3) consecutive nodes `g..g+k`
//! where each member's last dependency is the next member (the last one's is
//! `g`), and whose other dependencies all lie after the gadget. So every
//! strongly connected component is one simple cycle, whose canonical report
//! does not depend on where it was entered; graphs with overlapping cycles
//! are not generated, since which of two overlapping cycles is found first
//! may legitimately depend on timing.
//!
//! # The check
//!
//! For each graph, a fresh `Engine` in each configuration (one `Runtime` per
//! configuration, built once) asks for every node from the top — one by one
//! in a fixed order, or all at once through `par_map` (the graph decides) —
//! and collects `Result<u64, QueryError>` per node. The vector must equal
//! serial mode's, and every node must have executed exactly once.
//!
//! The generator, the query and the comparison live in `weft_tests::dag`
//! (shared with the stress test). Graphs come from a seeded generator driven
//! by `proptest` (deterministic seed, 10,000 cases; `WEFT_RANDOM_DAGS=n`
//! changes the count). A failure prints the seed and size, the graph, and
//! the first differing node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use weft_runtime::{Mode, Runtime};
use weft_tests::dag::{compare, evaluate, evaluate_stored, Graph};
use weft_tests::{configs, quiet_injected_panics, with_timeout, Config};

/// Compares every configuration against serial mode for one graph. For odd
/// seeds the other runs (serial included) store the memos densely, so the
/// dense and hashed tables are held to the same results.
fn check_graph(runtimes: &[(Config, Runtime)], seed: u64, n: usize) -> Result<(), String> {
    let graph = Arc::new(Graph::generate(seed, n));
    let (serial_cfg, serial_rt) = runtimes
        .iter()
        .find(|(c, _)| c.mode == Mode::Serial)
        .expect("serial mode is always built");
    let (reference, serial_execs) = evaluate(serial_rt, &graph);
    let mut problems = Vec::new();
    if serial_execs.iter().any(|&e| e != 1) {
        problems.push(format!("[{serial_cfg}] executions {serial_execs:?}"));
    }
    let dense = seed % 2 == 1;
    for (config, rt) in runtimes.iter() {
        if config.mode == Mode::Serial && !dense {
            continue;
        }
        let (results, execs) = if dense {
            evaluate_stored::<true>(rt, &graph)
        } else {
            evaluate(rt, &graph)
        };
        problems.extend(compare(*config, &reference, &results, &execs));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "seed {seed:#x}, {n} nodes:\n{}\n{}",
            problems.join("\n"),
            graph.describe()
        ))
    }
}

fn cases() -> u32 {
    std::env::var("WEFT_RANDOM_DAGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

/// ```text
///  proptest: seed, n ──▶ Graph::generate ──▶ for each config (one Runtime each):
///      fresh Engine ── ask every node from the top ──▶ Vec<Result<u64, QueryError>>
///  assert: every config's vector == serial's; every node executed once
/// ```
#[test]
fn random_dags_agree_with_serial_mode() {
    quiet_injected_panics();
    let runtimes: Arc<Vec<(Config, Runtime)>> =
        Arc::new(configs().into_iter().map(|c| (c, c.runtime())).collect());
    let cases = cases();
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let per_graph_secs = weft_tests::timeout_secs();
    let started = Instant::now();
    let graphs = Arc::new(AtomicUsize::new(0));
    let result = runner.run(&(any::<u64>(), 5usize..=30), |(seed, n)| {
        let runtimes = Arc::clone(&runtimes);
        graphs.fetch_add(1, Ordering::Relaxed);
        let outcome = with_timeout(per_graph_secs, move || check_graph(&runtimes, seed, n));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        Ok(())
    });
    let elapsed = started.elapsed();
    eprintln!(
        "random_dags: {} graph runs ({cases} cases) x {} configs in {:.1} s",
        graphs.load(Ordering::Relaxed),
        runtimes.len(),
        elapsed.as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
