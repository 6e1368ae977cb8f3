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
//! Graphs come from a seeded generator driven by `proptest` (deterministic
//! seed, 10,000 cases; `WEFT_RANDOM_DAGS=n` changes the count). A failure
//! prints the seed and size, the graph, and the first differing node.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use weft_queries::{Cx, Cycle, Engine, Query, QueryError};
use weft_runtime::{par_map, Mode, Runtime};
use weft_tests::{configs, inject_panic, quiet_injected_panics, with_timeout, Config};

/// How a node fetches one dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetch {
    /// `cx.get`: an error unwinds through the node.
    Get,
    /// `cx.try_get`: an error is hashed into the node's value.
    TryGet,
}

/// Where a node panics, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PanicAt {
    Before,
    After,
}

#[derive(Clone, Debug)]
struct NodeSpec {
    /// Dependencies in fetch order.
    deps: Vec<(u32, Fetch)>,
    panic: Option<PanicAt>,
    recovers: bool,
    /// Fetch the dependencies with `par_map` instead of one by one.
    par: bool,
}

#[derive(Clone, Debug)]
struct Graph {
    nodes: Vec<NodeSpec>,
    /// `(first node, length)` of each cycle gadget.
    gadgets: Vec<(u32, u32)>,
    /// Ask the nodes from the top with `par_map` instead of one by one.
    top_par: bool,
    /// Ask the nodes from the top in reverse index order.
    top_reverse: bool,
}

/// SplitMix64: a tiny seeded generator (the seed comes from proptest).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

impl Graph {
    fn generate(seed: u64, n: usize) -> Graph {
        let mut rng = Rng(seed);
        let n = n as u32;
        // Lay out gadgets and plain nodes; `block_end[u]` is the first index
        // after u's block (u + 1 for a plain node).
        let mut block_end = vec![0u32; n as usize];
        let mut gadgets = Vec::new();
        let mut u = 0;
        while u < n {
            let k = 1 + rng.below(3) as u32;
            if u + k <= n && rng.chance(12) {
                gadgets.push((u, k));
                for m in u..u + k {
                    block_end[m as usize] = u + k;
                }
                u += k;
            } else {
                block_end[u as usize] = u + 1;
                u += 1;
            }
        }
        let mut nodes: Vec<NodeSpec> = (0..n)
            .map(|u| {
                let lo = block_end[u as usize];
                let mut deps = Vec::new();
                if lo < n {
                    for _ in 0..rng.below(4) {
                        let d = lo + rng.below(u64::from(n - lo)) as u32;
                        let fetch = if rng.chance(50) {
                            Fetch::Get
                        } else {
                            Fetch::TryGet
                        };
                        deps.push((d, fetch));
                    }
                }
                let panic = match rng.below(100) {
                    0..=3 => Some(PanicAt::Before),
                    4..=7 => Some(PanicAt::After),
                    _ => None,
                };
                NodeSpec {
                    deps,
                    panic,
                    recovers: rng.chance(30),
                    par: rng.chance(30),
                }
            })
            .collect();
        for &(g, k) in &gadgets {
            for m in g..g + k {
                let next = if m + 1 == g + k { g } else { m + 1 };
                let fetch = if rng.chance(50) {
                    Fetch::Get
                } else {
                    Fetch::TryGet
                };
                nodes[m as usize].deps.push((next, fetch));
            }
        }
        Graph {
            nodes,
            gadgets,
            top_par: rng.chance(50),
            top_reverse: rng.chance(30),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "gadgets {:?}, top_par {}, top_reverse {}\n",
            self.gadgets, self.top_par, self.top_reverse
        );
        for (u, spec) in self.nodes.iter().enumerate() {
            let _ = writeln!(s, "  node {u}: {spec:?}");
        }
        s
    }
}

struct Db {
    graph: Arc<Graph>,
    executions: Vec<AtomicUsize>,
}

/// FNV-1a: a fixed hash, the same in every process (unlike `RandomState`).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn error_value(e: &QueryError) -> u64 {
    fnv(format!("{e:?}").as_bytes())
}

/// The one query of the random graphs.
struct Node;

impl Query for Node {
    type Db = Db;
    type Key = u32;
    type Value = u64;
    const NAME: &'static str = "node";

    fn compute(cx: &Cx<'_, Db>, key: &u32) -> u64 {
        let db = cx.db();
        db.executions[*key as usize].fetch_add(1, Ordering::SeqCst);
        let spec = &db.graph.nodes[*key as usize];
        if spec.panic == Some(PanicAt::Before) {
            inject_panic(format_args!("node {key} before its deps"));
        }
        let fetch = |&(d, how): &(u32, Fetch)| match how {
            Fetch::Get => cx.get::<Node>(d),
            Fetch::TryGet => cx.try_get::<Node>(d).unwrap_or_else(|e| error_value(&e)),
        };
        let values: Vec<u64> = if spec.par {
            par_map(&spec.deps, |_, dep| fetch(dep))
        } else {
            spec.deps.iter().map(fetch).collect()
        };
        if spec.panic == Some(PanicAt::After) {
            inject_panic(format_args!("node {key} after its deps"));
        }
        values
            .iter()
            .fold(fnv(&key.to_le_bytes()), |h, v| fnv(&(h ^ v).to_le_bytes()))
    }

    fn recover(cx: &Cx<'_, Db>, cycle: &Cycle, key: &u32) -> Option<u64> {
        let spec = &cx.db().graph.nodes[*key as usize];
        spec.recovers
            .then(|| fnv(format!("node {key} recovered from {cycle}").as_bytes()))
    }
}

type Outcome = Vec<Result<u64, QueryError>>;

/// Runs `graph` on a fresh engine over `rt`; returns every node's result
/// (by node index) and every node's execution count.
fn evaluate(rt: &Runtime, graph: &Arc<Graph>) -> (Outcome, Vec<usize>) {
    let n = graph.nodes.len();
    let db = Db {
        graph: Arc::clone(graph),
        executions: (0..n).map(|_| AtomicUsize::new(0)).collect(),
    };
    let engine = Engine::new(rt.clone(), db);
    let mut order: Vec<u32> = (0..n as u32).collect();
    if graph.top_reverse {
        order.reverse();
    }
    let mut asked: Vec<(u32, Result<u64, QueryError>)> = engine.run(|cx| {
        if graph.top_par {
            par_map(&order, |_, &u| (u, cx.try_get::<Node>(u)))
        } else {
            order.iter().map(|&u| (u, cx.try_get::<Node>(u))).collect()
        }
    });
    asked.sort_by_key(|&(u, _)| u);
    let results = asked.into_iter().map(|(_, r)| r).collect();
    let executions = engine
        .db()
        .executions
        .iter()
        .map(|e| e.load(Ordering::SeqCst))
        .collect();
    (results, executions)
}

/// Compares every configuration against serial mode for one graph.
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
    for (config, rt) in runtimes.iter().filter(|(c, _)| c.mode != Mode::Serial) {
        let (results, execs) = evaluate(rt, &graph);
        if let Some(u) = (0..n).find(|&u| results[u] != reference[u]) {
            problems.push(format!(
                "[{config}] node {u}: {:?}\n    serial: {:?}",
                results[u], reference[u]
            ));
        }
        if execs.iter().any(|&e| e != 1) {
            problems.push(format!("[{config}] executions {execs:?}"));
        }
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
