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
//! Cycles are injected as *flowers*: a block of consecutive nodes, a
//! *center* `c` and 1–3 *petals*, each a chain of 0–2 further nodes that
//! leads from `c` back to `c` (a petal of length 0 is `c` reading itself).
//! The center reads the first node of every petal; each petal node reads
//! the next one, the last reads `c`; these cycle edges sit at random places
//! among the node's other dependencies, which all lie after the block. A
//! flower of one petal is a ring (`g → g+1 → … → g`); one of several is the
//! shape compilers meet when a query reads its children in parallel and
//! several of them lead back to it (`na` reads `nb(0..4)`, each `nb(i)`
//! reads `na`). Every read lies on at most one cycle, so which cycle a query
//! meets through a read does not depend on timing, and serial mode's
//! results are the reference; where one read lies on several cycles which
//! closes first may legitimately depend on timing, and such graphs are not
//! generated.
//!
//! A node reads its dependencies in one of four ways ([`Reads`]): one by
//! one, all at once with `par_map`, in two halves with `join`, or with a
//! `par_map` over pairs that each `par_map` again — so cycles close through
//! parallel children, stolen or not, nested, on other workers or on
//! suspended fibers.
//!
//! [`Graph::generate`] makes the small graphs of `random_dags.rs` (5–30
//! nodes, up to 3 dependencies each, rings only).
//! [`Graph::generate_parallel`] makes the small compiler-shaped graphs of
//! `parallel_cycles.rs`: flowers, most reads parallel, every node asked for
//! at once. [`Graph::generate_stress`] makes
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
use weft_runtime::{join, par_map, Mode, Runtime};

use crate::{inject_panic, modes, panic_message, runtime, try_with_timeout, Config};

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

/// How a node reads its dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// One by one, in order.
    Seq,
    /// All at once with `par_map`.
    Par,
    /// The first half and the second half (each in order) with `join`.
    Join,
    /// A `par_map` over pairs of dependencies, each pair read with
    /// `par_map` again.
    Nested,
}

/// A cycle gadget: a center and petals of nodes leading back to it (see
/// the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flower {
    /// The center node.
    pub center: u32,
    /// Each petal's nodes, in cycle order (may be empty: a self-read).
    pub petals: Vec<Vec<u32>>,
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
    /// How the dependencies are read.
    pub reads: Reads,
    /// Microseconds the provider busy-spins after fetching its dependencies
    /// (0 for most nodes): keeps the node in progress while others ask.
    pub spin_us: u32,
}

/// A random query DAG (see the module doc).
#[derive(Clone, Debug)]
pub struct Graph {
    /// The nodes, by index.
    pub nodes: Vec<NodeSpec>,
    /// The cycle gadgets.
    pub flowers: Vec<Flower>,
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

/// Lays out flowers over `n` nodes: returns `block_end` (for each node,
/// the first index after its block, or `u + 1` for a plain node) and the
/// flowers. `max_petals` is 1 for plain rings.
fn layout(rng: &mut Rng, n: u32, gadget_percent: u64, max_petals: u64) -> (Vec<u32>, Vec<Flower>) {
    let mut block_end = vec![0u32; n as usize];
    let mut flowers = Vec::new();
    let mut u = 0;
    while u < n {
        let petals: Vec<u32> = if max_petals == 1 {
            // A ring of 1–3 nodes: one petal of 0–2.
            vec![rng.below(3) as u32]
        } else {
            (0..rng.range(1, max_petals))
                .map(|_| rng.below(3) as u32)
                .collect()
        };
        let k = 1 + petals.iter().sum::<u32>();
        if u + k <= n && rng.chance(gadget_percent) {
            let mut next = u + 1;
            let petals = petals
                .iter()
                .map(|&len| {
                    let p: Vec<u32> = (next..next + len).collect();
                    next += len;
                    p
                })
                .collect();
            flowers.push(Flower { center: u, petals });
            for m in u..u + k {
                block_end[m as usize] = u + k;
            }
            u += k;
        } else {
            block_end[u as usize] = u + 1;
            u += 1;
        }
    }
    (block_end, flowers)
}

/// 0–3 dependencies drawn from `lo..n` (none when `lo == n`).
fn random_deps(rng: &mut Rng, lo: u32, n: u32) -> Vec<(u32, Fetch)> {
    if lo >= n {
        return Vec::new();
    }
    (0..rng.below(4))
        .map(|_| {
            let d = lo + rng.below(u64::from(n - lo)) as u32;
            (d, random_fetch(rng))
        })
        .collect()
}

fn random_reads(rng: &mut Rng, par_percent: u64) -> Reads {
    if !rng.chance(par_percent) {
        return Reads::Seq;
    }
    match rng.below(4) {
        0 | 1 => Reads::Par,
        2 => Reads::Join,
        _ => Reads::Nested,
    }
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

/// Closes every flower: the center reads each petal's first node (itself
/// for an empty petal), each petal node the next, the last the center;
/// each cycle edge goes to a random place among the node's dependencies.
fn close_flowers(rng: &mut Rng, nodes: &mut [NodeSpec], flowers: &[Flower]) {
    let mut add = |rng: &mut Rng, from: u32, to: u32| {
        let fetch = random_fetch(rng);
        let deps = &mut nodes[from as usize].deps;
        let at = rng.below(deps.len() as u64 + 1) as usize;
        deps.insert(at, (to, fetch));
    };
    for f in flowers {
        for petal in &f.petals {
            add(rng, f.center, petal.first().copied().unwrap_or(f.center));
            for (i, &m) in petal.iter().enumerate() {
                add(rng, m, petal.get(i + 1).copied().unwrap_or(f.center));
            }
        }
    }
}

impl Graph {
    /// The last step of every generator: closes the flowers, then draws
    /// how the top asks for the nodes (at once with `top_par_percent` %).
    fn close(
        rng: &mut Rng,
        mut nodes: Vec<NodeSpec>,
        flowers: Vec<Flower>,
        top_par_percent: u64,
    ) -> Graph {
        close_flowers(rng, &mut nodes, &flowers);
        Graph {
            nodes,
            flowers,
            top_par: rng.chance(top_par_percent),
            top_reverse: rng.chance(30),
        }
    }

    /// The small graphs of `random_dags.rs`: `n` nodes, 0–3 dependencies
    /// each, gadgets at 12 %, no slow nodes.
    pub fn generate(seed: u64, n: usize) -> Graph {
        let mut rng = Rng(seed);
        let n = n as u32;
        let (block_end, flowers) = layout(&mut rng, n, 12, 1);
        let nodes: Vec<NodeSpec> = (0..n)
            .map(|u| {
                let deps = random_deps(&mut rng, block_end[u as usize], n);
                let panic = random_panic(&mut rng);
                NodeSpec {
                    deps,
                    panic,
                    recovers: rng.chance(30),
                    reads: if rng.chance(30) {
                        Reads::Par
                    } else {
                        Reads::Seq
                    },
                    spin_us: 0,
                }
            })
            .collect();
        Graph::close(&mut rng, nodes, flowers, 50)
    }

    /// The compiler-shaped graphs of issue 10: `n` nodes, 0–3 dependencies
    /// each, flowers of 1–3 petals at 20 %, 60 % of the nodes reading in
    /// parallel ([`Reads`]), panics, recover values; every node asked for at
    /// once from the top in most graphs (several entry points at once).
    pub fn generate_parallel(seed: u64, n: usize) -> Graph {
        let mut rng = Rng(seed);
        let n = n as u32;
        let (block_end, flowers) = layout(&mut rng, n, 20, 3);
        let nodes: Vec<NodeSpec> = (0..n)
            .map(|u| {
                let deps = random_deps(&mut rng, block_end[u as usize], n);
                NodeSpec {
                    deps,
                    panic: random_panic(&mut rng),
                    recovers: rng.chance(40),
                    reads: random_reads(&mut rng, 60),
                    spin_us: if rng.chance(5) {
                        rng.range(5, 50) as u32
                    } else {
                        0
                    },
                }
            })
            .collect();
        Graph::close(&mut rng, nodes, flowers, 75)
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
        let (block_end, flowers) = layout(&mut rng, n, gadget_percent, 3);
        // Hubs sit in the upper half, so that most nodes can depend on them.
        let hubs: Vec<(u32, u64)> = (0..rng.below(4))
            .map(|_| {
                (
                    n / 2 + rng.below(u64::from(n - n / 2)) as u32,
                    rng.range(20, 90),
                )
            })
            .collect();
        let nodes: Vec<NodeSpec> = (0..n)
            .map(|u| {
                let lo = block_end[u as usize];
                let mut deps = Vec::new();
                let mut reads = random_reads(&mut rng, 30);
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
                        reads = Reads::Par;
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
                    reads,
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
        Graph::close(&mut rng, nodes, flowers, 70)
    }

    /// A multi-line description for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "flowers {:?}, top_par {}, top_reverse {}\n",
            self.flowers, self.top_par, self.top_reverse
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

/// The one query of the random graphs. `DENSE` stores its memos densely
/// ([`Query::dense_index`]) instead of hashed; results, cycle reports and
/// panics must be the same either way.
pub struct Node<const DENSE: bool = false>;

impl<const DENSE: bool> Query for Node<DENSE> {
    type Db = Db;
    type Key = u32;
    type Value = u64;
    const NAME: &'static str = "node";

    fn dense_index(key: &u32) -> Option<usize> {
        DENSE.then_some(*key as usize)
    }

    fn compute(cx: &Cx<'_, Db>, key: &u32) -> u64 {
        let db = cx.db();
        db.executions[*key as usize].fetch_add(1, Ordering::SeqCst);
        let spec = &db.graph.nodes[*key as usize];
        if spec.panic == Some(PanicAt::Before) {
            inject_panic(format_args!("node {key} before its deps"));
        }
        let fetch = |&(d, how): &(u32, Fetch)| match how {
            Fetch::Get => cx.get::<Node<DENSE>>(d),
            Fetch::TryGet => cx
                .try_get::<Node<DENSE>>(d)
                .unwrap_or_else(|e| error_value(&e)),
        };
        let deps = &spec.deps[..];
        let values: Vec<u64> = match spec.reads {
            Reads::Seq => deps.iter().map(fetch).collect(),
            Reads::Par => par_map(deps, |_, dep| fetch(dep)),
            Reads::Join => {
                let (lo, hi) = deps.split_at(deps.len() / 2);
                let (a, b) = join(
                    || lo.iter().map(fetch).collect::<Vec<_>>(),
                    || hi.iter().map(fetch).collect::<Vec<_>>(),
                );
                a.into_iter().chain(b).collect()
            }
            Reads::Nested => {
                let pairs: Vec<&[(u32, Fetch)]> = deps.chunks(2).collect();
                par_map(&pairs, |_, pair| par_map(pair, |_, dep| fetch(dep))).concat()
            }
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
    evaluate_stored::<false>(rt, graph)
}

/// [`evaluate`] with the memos stored densely (`DENSE`) or hashed.
pub fn evaluate_stored<const DENSE: bool>(
    rt: &Runtime,
    graph: &Arc<Graph>,
) -> (Outcome, Vec<usize>) {
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
            par_map(&order, |_, &u| (u, cx.try_get::<Node<DENSE>>(u)))
        } else {
            order
                .iter()
                .map(|&u| (u, cx.try_get::<Node<DENSE>>(u)))
                .collect()
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

/// Worker counts of the stress matrix (serial mode only at 1).
pub const STRESS_THREADS: [usize; 4] = [1, 2, 4, 8];

/// The stress matrix: every mode of this build at [`STRESS_THREADS`]
/// workers, serial mode at 1.
pub fn stress_configs() -> Vec<Config> {
    let mut out = Vec::new();
    for mode in modes() {
        let counts: &[usize] = if mode == Mode::Serial {
            &[1]
        } else {
            &STRESS_THREADS
        };
        for &threads in counts {
            out.push(Config { mode, threads });
        }
    }
    out
}

/// What went wrong with one graph.
#[derive(Default)]
pub struct GraphReport {
    /// One line per configuration whose results differ from serial mode's
    /// (or whose run panicked).
    pub mismatches: Vec<String>,
    /// Configurations whose run did not end within the timeout.
    pub hangs: Vec<Config>,
}

/// The configurations' runtimes, built once and reused for every graph
/// (a fresh engine per graph), so they also live through thousands of
/// panics, cycles and suspensions.
pub struct Matrix {
    /// Each configuration and its runtime.
    pub runtimes: Vec<(Config, Runtime)>,
    /// Seconds one run may take before it counts as a hang.
    pub timeout_secs: u64,
    /// Runs done (graphs × configurations, serial included).
    pub runs: u64,
}

impl Matrix {
    /// The stress matrix ([`stress_configs`]), each run under `timeout_secs`.
    pub fn new(timeout_secs: u64) -> Matrix {
        let configs = stress_configs();
        Matrix {
            runtimes: configs.into_iter().map(|c| (c, c.runtime())).collect(),
            timeout_secs,
            runs: 0,
        }
    }

    /// Runs `graph` in one configuration on its own thread, under the
    /// timeout: `None` for a hang (the runtime is then replaced by a fresh
    /// one; the hung one is leaked with its thread).
    fn run(
        &mut self,
        index: usize,
        seed: u64,
        graph: &Arc<Graph>,
    ) -> Option<Result<(Outcome, Vec<usize>), String>> {
        let (config, rt) = &self.runtimes[index];
        let config = *config;
        let label = format!("{config} seed {seed:#x}");
        let (rt, graph) = (rt.clone(), Arc::clone(graph));
        self.runs += 1;
        match try_with_timeout(&label, self.timeout_secs, move || evaluate(&rt, &graph)) {
            Some(Ok(run)) => Some(Ok(run)),
            Some(Err(payload)) => Some(Err(format!(
                "[{config}] the run panicked: {}",
                panic_message(&*payload)
            ))),
            None => {
                let fresh = runtime(config.mode, config.threads);
                let hung = std::mem::replace(&mut self.runtimes[index].1, fresh);
                // Dropping it would join workers that may never finish.
                std::mem::forget(hung);
                None
            }
        }
    }

    /// Runs `graph` in serial mode, then in every other configuration, and
    /// compares.
    pub fn check(&mut self, seed: u64, graph: &Arc<Graph>) -> GraphReport {
        let mut report = GraphReport::default();
        let serial = self
            .runtimes
            .iter()
            .position(|(c, _)| c.mode == Mode::Serial)
            .expect("serial mode is always in the matrix");
        let serial_config = self.runtimes[serial].0;
        let reference = match self.run(serial, seed, graph) {
            None => {
                report.hangs.push(serial_config);
                return report;
            }
            Some(Err(e)) => {
                report.mismatches.push(e);
                return report;
            }
            Some(Ok((reference, executions))) => {
                if executions.iter().any(|&e| e != 1) {
                    report
                        .mismatches
                        .push(format!("[{serial_config}] executions {executions:?}"));
                }
                reference
            }
        };
        for index in 0..self.runtimes.len() {
            if index == serial {
                continue;
            }
            let config = self.runtimes[index].0;
            match self.run(index, seed, graph) {
                None => report.hangs.push(config),
                Some(Err(e)) => report.mismatches.push(e),
                Some(Ok((results, executions))) => {
                    report
                        .mismatches
                        .extend(compare(config, &reference, &results, &executions))
                }
            }
        }
        report
    }
}

/// The counts of a sweep over many graphs (the soaks): graphs, runs that
/// differ from serial mode, runs that hung, and the first failures.
#[derive(Default)]
pub struct Tally {
    /// Graphs checked.
    pub graphs: u64,
    /// Configurations whose results differed from serial mode's.
    pub mismatches: u64,
    /// Configurations whose run did not end in time.
    pub hangs: u64,
    /// The first five failing graphs, described.
    pub failures: Vec<String>,
}

impl Tally {
    /// Counts one graph's report; returns whether it failed.
    pub fn add(&mut self, seed: u64, graph: &Graph, report: &GraphReport) -> bool {
        self.graphs += 1;
        self.mismatches += report.mismatches.len() as u64;
        self.hangs += report.hangs.len() as u64;
        let failed = !report.mismatches.is_empty() || !report.hangs.is_empty();
        if failed && self.failures.len() < 5 {
            let hangs: Vec<String> = report.hangs.iter().map(Config::to_string).collect();
            self.failures.push(format!(
                "seed {seed:#x}, {} nodes: mismatches {:?}, hangs {hangs:?}\n{}",
                graph.nodes.len(),
                report.mismatches,
                graph.describe()
            ));
        }
        failed
    }

    /// Fails the test unless no run differed and none hung.
    pub fn assert_clean(&self) {
        assert!(
            self.mismatches == 0 && self.hangs == 0,
            "{} differences from serial mode and {} hangs; first failures:\n{}",
            self.mismatches,
            self.hangs,
            self.failures.join("\n")
        );
    }
}
