//! Random query DAGs with injected panics and cycles, shared by
//! `tests/tests/random_dags.rs` (issue 2) and `tests/tests/stress.rs`
//! (issue 5).
//!
//! # The graphs
//!
//! A [`Graph`] is a random DAG over one query, [`Node`] (`node(u32)`): node
//! `u` depends on nodes with a larger index, fetched in order, each with
//! `cx.get` (an error unwinds: `u`'s result becomes the same error) or with
//! `cx.try_get` (an error becomes part of `u`'s value, deterministically);
//! some nodes fetch all their dependencies at once through `par_map`. Some
//! nodes panic, before or after fetching their dependencies; some define a
//! `recover` value; some busy-spin for a while before returning (*slow*
//! nodes, so that others really wait on them). A node's value combines its
//! index and its dependencies' values (FNV hash).
//!
//! Cycles are injected as *gadgets*: `k` (1–3) consecutive nodes `g..g+k`
//! where each member's last dependency is the next member (the last one's is
//! `g`), and whose other dependencies all lie after the gadget. So every
//! strongly connected component is one simple cycle, whose canonical report
//! does not depend on where it was entered; graphs with overlapping cycles
//! are not generated, since which of two overlapping cycles is found first
//! may legitimately depend on timing.
//!
//! [`Graph::generate`] makes the small graphs of `random_dags.rs` (5–30
//! nodes, up to 3 dependencies each). [`Graph::generate_stress`] makes
//! larger and deeper ones whose shape knobs are drawn per graph: long chains,
//! a few slow *hubs* that many nodes depend on (many tasks waiting on the
//! same slow query), and wide `par_map` fan-outs.
//!
//! # The check
//!
//! [`evaluate`] runs a graph on a fresh [`Engine`] over a runtime: it asks
//! for every node from the top — one by one in a fixed order, or all at once
//! through `par_map` (the graph decides) — and returns every node's
//! `Result<u64, QueryError>` and execution count. [`compare`] checks a run
//! against serial mode's: same results, every node executed exactly once.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_queries::{Cx, Cycle, Engine, Query, QueryError};
use weft_runtime::{par_map, Runtime};

use crate::{inject_panic, Config};

/// How a node fetches one dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// `cx.get`: an error unwinds through the node.
    Get,
    /// `cx.try_get`: an error is hashed into the node's value.
    TryGet,
}

/// Where a node panics, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicAt {
    /// Before fetching any dependency.
    Before,
    /// After fetching all of them.
    After,
}

/// One node of a [`Graph`].
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Dependencies in fetch order.
    pub deps: Vec<(u32, Fetch)>,
    /// Whether and where the node's provider panics.
    pub panic: Option<PanicAt>,
    /// Whether the node has a `recover` value (used when it is on a cycle).
    pub recovers: bool,
    /// Fetch the dependencies with `par_map` instead of one by one.
    pub par: bool,
    /// Microseconds the provider busy-spins after fetching its dependencies
    /// (0 for most nodes): keeps the node in progress while others ask.
    pub spin_us: u32,
}

/// A random query DAG (see the module doc).
#[derive(Clone, Debug)]
pub struct Graph {
    /// The nodes, by index.
    pub nodes: Vec<NodeSpec>,
    /// `(first node, length)` of each cycle gadget.
    pub gadgets: Vec<(u32, u32)>,
    /// Ask the nodes from the top with `par_map` instead of one by one.
    pub top_par: bool,
    /// Ask the nodes from the top in reverse index order.
    pub top_reverse: bool,
}

/// SplitMix64: a tiny seeded generator.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Lays out cycle gadgets over `n` nodes: returns `block_end` (for each
/// node, the first index after its gadget, or `u + 1` for a plain node) and
/// the gadgets.
fn layout(rng: &mut Rng, n: u32, gadget_percent: u64) -> (Vec<u32>, Vec<(u32, u32)>) {
    let mut block_end = vec![0u32; n as usize];
    let mut gadgets = Vec::new();
    let mut u = 0;
    while u < n {
        let k = 1 + rng.below(3) as u32;
        if u + k <= n && rng.chance(gadget_percent) {
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
    (block_end, gadgets)
}

fn random_fetch(rng: &mut Rng) -> Fetch {
    if rng.chance(50) {
        Fetch::Get
    } else {
        Fetch::TryGet
    }
}

fn random_panic(rng: &mut Rng) -> Option<PanicAt> {
    match rng.below(100) {
        0..=3 => Some(PanicAt::Before),
        4..=7 => Some(PanicAt::After),
        _ => None,
    }
}

/// Closes every gadget: each member's last dependency is the next member.
fn close_gadgets(rng: &mut Rng, nodes: &mut [NodeSpec], gadgets: &[(u32, u32)]) {
    for &(g, k) in gadgets {
        for m in g..g + k {
            let next = if m + 1 == g + k { g } else { m + 1 };
            let fetch = random_fetch(rng);
            nodes[m as usize].deps.push((next, fetch));
        }
    }
}

impl Graph {
    /// The small graphs of `random_dags.rs`: `n` nodes, 0–3 dependencies
    /// each, gadgets at 12 %, no slow nodes.
    pub fn generate(seed: u64, n: usize) -> Graph {
        let mut rng = Rng(seed);
        let n = n as u32;
        let (block_end, gadgets) = layout(&mut rng, n, 12);
        let mut nodes: Vec<NodeSpec> = (0..n)
            .map(|u| {
                let lo = block_end[u as usize];
                let mut deps = Vec::new();
                if lo < n {
                    for _ in 0..rng.below(4) {
                        let d = lo + rng.below(u64::from(n - lo)) as u32;
                        deps.push((d, random_fetch(&mut rng)));
                    }
                }
                let panic = random_panic(&mut rng);
                NodeSpec {
                    deps,
                    panic,
                    recovers: rng.chance(30),
                    par: rng.chance(30),
                    spin_us: 0,
                }
            })
            .collect();
        close_gadgets(&mut rng, &mut nodes, &gadgets);
        Graph {
            nodes,
            gadgets,
            top_par: rng.chance(50),
            top_reverse: rng.chance(30),
        }
    }

    /// A stress graph of `min_nodes..=max_nodes` nodes whose shape is drawn
    /// from `seed` (see the module doc): a chain probability (each node
    /// also depends on the first node after its block, so chains run as
    /// deep as the graph), up to 6 random dependencies per node, 0–3 slow
    /// hubs that each node depends on with a per-hub probability, and wide
    /// `par_map` fan-outs (8–24 dependencies) on some nodes.
    pub fn generate_stress(seed: u64, min_nodes: u32, max_nodes: u32) -> Graph {
        let mut rng = Rng(seed);
        let n = rng.range(u64::from(min_nodes), u64::from(max_nodes)) as u32;
        let chain = rng.below(90);
        let max_deps = rng.range(1, 6);
        let fan_percent = rng.below(12);
        let gadget_percent = rng.range(2, 12);
        let (block_end, gadgets) = layout(&mut rng, n, gadget_percent);
        // Hubs sit in the upper half, so that most nodes can depend on them.
        let hubs: Vec<(u32, u64)> = (0..rng.below(4))
            .map(|_| {
                (
                    n / 2 + rng.below(u64::from(n - n / 2)) as u32,
                    rng.range(20, 90),
                )
            })
            .collect();
        let mut nodes: Vec<NodeSpec> = (0..n)
            .map(|u| {
                let lo = block_end[u as usize];
                let mut deps = Vec::new();
                let mut par = rng.chance(30);
                if lo < n {
                    let pick = |rng: &mut Rng| lo + rng.below(u64::from(n - lo)) as u32;
                    if rng.chance(chain) {
                        deps.push((lo, random_fetch(&mut rng)));
                    }
                    for &(hub, percent) in &hubs {
                        if hub >= lo && rng.chance(percent) {
                            deps.push((hub, random_fetch(&mut rng)));
                        }
                    }
                    let count = if rng.chance(fan_percent) {
                        par = true;
                        rng.range(8, 24)
                    } else {
                        rng.below(max_deps + 1)
                    };
                    for _ in 0..count {
                        let d = pick(&mut rng);
                        deps.push((d, random_fetch(&mut rng)));
                    }
                }
                let panic = random_panic(&mut rng);
                let hub = hubs.iter().any(|&(h, _)| h == u);
                NodeSpec {
                    deps,
                    panic,
                    recovers: rng.chance(30),
                    par,
                    spin_us: if hub {
                        rng.range(100, 1_000) as u32
                    } else if rng.chance(3) {
                        rng.range(10, 100) as u32
                    } else {
                        0
                    },
                }
            })
            .collect();
        close_gadgets(&mut rng, &mut nodes, &gadgets);
        Graph {
            nodes,
            gadgets,
            top_par: rng.chance(70),
            top_reverse: rng.chance(30),
        }
    }

    /// A multi-line description for failure messages.
    pub fn describe(&self) -> String {
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

/// The user data of the graph engine: the graph and per-node execution
/// counts.
pub struct Db {
    graph: Arc<Graph>,
    executions: Vec<AtomicUsize>,
}

/// FNV-1a: a fixed hash, the same in every process (unlike `RandomState`).
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn error_value(e: &QueryError) -> u64 {
    fnv(format!("{e:?}").as_bytes())
}

/// Busy-waits (without suspending or blocking) for `micros` microseconds.
fn spin(micros: u32) {
    let until = Instant::now() + Duration::from_micros(u64::from(micros));
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The one query of the random graphs.
pub struct Node;

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
        spin(spec.spin_us);
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

/// Every node's result, by node index.
pub type Outcome = Vec<Result<u64, QueryError>>;

/// Runs `graph` on a fresh engine over `rt`; returns every node's result
/// (by node index) and every node's execution count.
pub fn evaluate(rt: &Runtime, graph: &Arc<Graph>) -> (Outcome, Vec<usize>) {
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

/// Checks one run against serial mode's results: `None` when every node's
/// result equals `reference`'s and every node executed exactly once, else a
/// line naming the configuration and the first difference.
pub fn compare(
    config: Config,
    reference: &Outcome,
    results: &Outcome,
    executions: &[usize],
) -> Option<String> {
    let mut problems = Vec::new();
    if let Some(u) = (0..reference.len()).find(|&u| results.get(u) != reference.get(u)) {
        problems.push(format!(
            "[{config}] node {u}: {:?}\n    serial: {:?}",
            results.get(u),
            reference[u]
        ));
    }
    if executions.iter().any(|&e| e != 1) {
        problems.push(format!("[{config}] executions {executions:?}"));
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}
