//! `weft synth`: synthetic query graphs of known shape, for benchmarks and
//! for tests that check the scheduler from outside.
//!
//! Every node of a graph is one query `synth_node(id)`. A node fetches its
//! dependencies (in parallel with `par_map` when it has several), spins for
//! its work on the monotonic clock, and returns a 64-bit value mixed from its
//! id and its dependencies' values only. The root's value is the checksum
//! printed on stdout: it depends on the graph alone, so it is identical in
//! every mode and at every `-j`.
//!
//! Shapes (`N` = `--nodes`, `U` = `--work-us`):
//!
//! - `chain`: node `i` needs `i - 1`; work `N·U`, span `N·U`.
//! - `fan-in`: one slow shared query `Q` (work `N·U/2`) and `N` tasks that the
//!   root fetches in order; odd tasks spin `U` and *then* need `Q`, even tasks
//!   spin `U` and never need `Q`. Work `1.5·N·U`, span `U + N·U/2`; on 2
//!   workers the Brent bound is `0.75·N·U`. In threads mode the worker that
//!   reaches an odd task while `Q` runs blocks, and the even tasks wait:
//!   about `N·U`. A suspended fiber frees its worker for them.
//! - `fan-in-first`: `N` tasks that the root fetches in order, each of
//!   which needs one shared query `Q` (work `N·U/8`) *before* its own work
//!   `U`, as items that all start by reading one slow shared query (the
//!   crate's `type_of` of a popular type). Nothing but `Q` can run until `Q`
//!   ends, so the bound is `N·U/8 + N·U/P`; threads mode reaches it (the
//!   waiters block), and fibers must not pile every waiter onto one worker.
//! - `diamond`: one source, `N - 2` middle nodes that need it, one sink that
//!   needs them all; span `3·U`.
//! - `layered`: `⌈√N⌉`-wide layers; a node needs two or three nodes of the
//!   layer before it (one picked by `--seed`); a zero-work root needs the
//!   last layer.
//! - `random`: node `i` needs 0–3 random earlier nodes (by `--seed`); a
//!   zero-work root needs every node that no other node needs.
//!
//! stdout: `checksum: 0x…` only. stderr: one summary line per run (wall
//! time, work `T1`, span `T∞`, the lower bound (`Graph::bound_ns`: Brent's
//! `max(T1/P, T∞)` sharpened by release times) for `P` =
//! workers), or one line per mode with `--compare`. `--busy-log FILE` writes
//! the busy intervals of the runtime's workers (as the jobserver gate saw
//! them), one `worker start_ns end_ns` line each, in `CLOCK_MONOTONIC`
//! nanoseconds, so files from two processes compare.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use weft_queries::{query, Cx, Engine};
use weft_runtime::{Mode, Runtime};

use crate::cli::RunOpts;
use crate::profile_out::Profiling;

/// Arguments of `weft synth`.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Runtime options.
    #[command(flatten)]
    pub run: RunOpts,
    /// Graph shape.
    #[arg(long, value_enum)]
    pub shape: Shape,
    /// Number of nodes (for `fan-in`: tasks, besides `Q` and the root).
    #[arg(long, default_value_t = 200)]
    pub nodes: usize,
    /// Work of one node in microseconds, spun on the monotonic clock.
    #[arg(long = "work-us", value_name = "U", default_value_t = 100)]
    pub work_us: u64,
    /// Seed of the `layered` and `random` shapes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the workers' busy intervals to FILE: `worker start_ns end_ns`
    /// per line, `CLOCK_MONOTONIC` nanoseconds.
    #[arg(long = "busy-log", value_name = "FILE")]
    pub busy_log: Option<PathBuf>,
    /// Run serial, threads and fibers one after the other (same `-j`) and
    /// print their wall times against the bounds, side by side.
    #[arg(long)]
    pub compare: bool,
    /// Make node ID panic after its work (tests: tokens survive a panic).
    #[arg(long = "panic-at", value_name = "ID", hide = true)]
    pub panic_at: Option<usize>,
}

/// The shape of a synthetic graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// A single chain: no parallelism.
    Chain,
    /// One slow shared query that half of the tasks need after their own
    /// work: fibers beat threads.
    FanIn,
    /// One slow shared query that every task needs before its own work:
    /// the shape where fibers that pile up on one worker lose.
    FanInFirst,
    /// Source, a wide middle, sink.
    Diamond,
    /// Layers of width ⌈√N⌉, each node needing nodes of the previous layer.
    Layered,
    /// A random DAG.
    Random,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Chain => "chain",
            Shape::FanIn => "fan-in",
            Shape::FanInFirst => "fan-in-first",
            Shape::Diamond => "diamond",
            Shape::Layered => "layered",
            Shape::Random => "random",
        })
    }
}

/// One node of a synthetic graph.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Nodes this one needs, fetched in this order.
    deps: Vec<usize>,
    /// Spin time in nanoseconds.
    work_ns: u64,
    /// Spin before fetching the dependencies (else after).
    work_first: bool,
}

/// A synthetic graph: the engine's database.
#[derive(Debug, Clone)]
pub struct Graph {
    nodes: Vec<Node>,
    root: usize,
    /// A node that panics after its work (tests).
    panic_at: Option<usize>,
}

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// splitmix64's finalizer (also the checksum mix of `weft replay`).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Graph {
    /// Builds the graph of `shape` with `n` nodes of `work_us` µs each
    /// (`seed` picks the edges of `layered` and `random`).
    pub fn new(shape: Shape, n: usize, work_us: u64, seed: u64) -> Graph {
        let u = work_us * 1_000;
        let node = |deps: Vec<usize>| Node {
            deps,
            work_ns: u,
            work_first: false,
        };
        let mut nodes: Vec<Node>;
        let root;
        match shape {
            Shape::Chain => {
                let n = n.max(1);
                nodes = (0..n)
                    .map(|i| node(if i == 0 { vec![] } else { vec![i - 1] }))
                    .collect();
                root = n - 1;
            }
            Shape::FanIn => {
                let n = n.max(2);
                let q = n;
                nodes = (0..n)
                    .map(|i| Node {
                        deps: if i % 2 == 1 { vec![q] } else { vec![] },
                        work_ns: u,
                        work_first: true,
                    })
                    .collect();
                root = push_q_and_root(&mut nodes, (n as u64) * u / 2);
            }
            Shape::FanInFirst => {
                let n = n.max(1);
                let q = n;
                nodes = (0..n).map(|_| node(vec![q])).collect();
                root = push_q_and_root(&mut nodes, (n as u64) * u / 8);
            }
            Shape::Diamond => {
                let n = n.max(3);
                nodes = vec![node(vec![])];
                nodes.extend((1..n - 1).map(|_| node(vec![0])));
                nodes.push(node((1..n - 1).collect()));
                root = n - 1;
            }
            Shape::Layered => {
                let n = n.max(1);
                let width = (1..=n).find(|w| w * w >= n).unwrap_or(1);
                let mut rng = Rng::new(seed);
                nodes = (0..n)
                    .map(|i| {
                        let (layer, k) = (i / width, i % width);
                        if layer == 0 {
                            return node(vec![]);
                        }
                        let prev = (layer - 1) * width;
                        let mut deps =
                            vec![prev + k, prev + (k + 1) % width, prev + rng.below(width)];
                        deps.sort_unstable();
                        deps.dedup();
                        node(deps)
                    })
                    .collect();
                let last = ((n - 1) / width) * width;
                root = nodes.len();
                nodes.push(Node {
                    deps: (last..n).collect(),
                    ..Node::default()
                });
            }
            Shape::Random => {
                let n = n.max(1);
                let mut rng = Rng::new(seed);
                let mut needed = vec![false; n];
                nodes = (0..n)
                    .map(|i| {
                        let mut deps: Vec<usize> = if i == 0 {
                            vec![]
                        } else {
                            (0..rng.below(4)).map(|_| rng.below(i)).collect()
                        };
                        deps.sort_unstable();
                        deps.dedup();
                        for &d in &deps {
                            needed[d] = true;
                        }
                        node(deps)
                    })
                    .collect();
                root = nodes.len();
                nodes.push(Node {
                    deps: (0..n).filter(|&i| !needed[i]).collect(),
                    ..Node::default()
                });
            }
        }
        Graph {
            nodes,
            root,
            panic_at: None,
        }
    }

    /// Work `T1` in nanoseconds: the sum of every node's work.
    pub fn work_ns(&self) -> u64 {
        self.nodes.iter().map(|n| n.work_ns).sum()
    }

    /// Span `T∞` in nanoseconds: the heaviest dependency path to the root.
    pub fn span_ns(&self) -> u64 {
        // `fan-in`'s Q and the added roots have larger ids than the nodes
        // that need them (or smaller), so use an explicit post-order.
        let mut memo: Vec<Option<u64>> = vec![None; self.nodes.len()];
        let mut stack = vec![(self.root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if memo[i].is_some() {
                continue;
            }
            if expanded {
                let deps = self.nodes[i].deps.iter().map(|&d| memo[d].unwrap_or(0));
                memo[i] = Some(self.nodes[i].work_ns + deps.max().unwrap_or(0));
            } else {
                stack.push((i, true));
                stack.extend(self.nodes[i].deps.iter().map(|&d| (d, false)));
            }
        }
        memo[self.root].unwrap_or(0)
    }

    /// The lower bound on the wall time on `p` workers, in nanoseconds:
    /// Brent's `max(T1/p, T∞)`, sharpened by release times. With unlimited
    /// workers node `n`'s own work starts at the earliest at `s(n)`; work
    /// that cannot start before `t` needs at least `W(≥t)/p` after `t`, so
    /// every `t + W(≥t)/p` bounds the wall time too (for `fan-in-first`,
    /// `Q + N·U/p`: nothing but `Q` can run before `Q` ends).
    pub fn bound_ns(&self, p: usize) -> u64 {
        let p = p.max(1) as u64;
        let starts = self.earliest_starts();
        let mut by_start: Vec<(u64, u64)> = starts
            .iter()
            .zip(&self.nodes)
            .filter_map(|(s, n)| s.map(|s| (s, n.work_ns)))
            .collect();
        by_start.sort_unstable();
        let mut bound = (self.work_ns() / p).max(self.span_ns());
        let mut later: u64 = by_start.iter().map(|&(_, w)| w).sum();
        for &(t, w) in &by_start {
            bound = bound.max(t + later / p);
            later -= w;
        }
        bound
    }

    /// For every node reachable from the root, the earliest time its own
    /// work can start with unlimited workers: a node is requested when the
    /// first of its dependents fetches its dependencies (after that
    /// dependent's work for `work_first` nodes), and works at once
    /// (`work_first`) or once its dependencies are done.
    fn earliest_starts(&self) -> Vec<Option<u64>> {
        let n = self.nodes.len();
        // Post-order from the root, then reverse: dependents before deps.
        let mut order = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        let mut stack = vec![(self.root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if expanded {
                order.push(i);
                continue;
            }
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            stack.push((i, true));
            stack.extend(self.nodes[i].deps.iter().map(|&d| (d, false)));
        }
        let mut request: Vec<Option<u64>> = vec![None; n];
        request[self.root] = Some(0);
        for &i in order.iter().rev() {
            let Some(r) = request[i] else { continue };
            let node = &self.nodes[i];
            let fetch = if node.work_first { r + node.work_ns } else { r };
            for &d in &node.deps {
                request[d] = Some(request[d].map_or(fetch, |x| x.min(fetch)));
            }
        }
        // Deps before dependents: finish times, then starts.
        let mut start: Vec<Option<u64>> = vec![None; n];
        let mut finish: Vec<u64> = vec![0; n];
        for &i in &order {
            let Some(r) = request[i] else { continue };
            let node = &self.nodes[i];
            let deps_done = node.deps.iter().map(|&d| finish[d]).max().unwrap_or(0);
            let (s, f) = if node.work_first {
                (r, (r + node.work_ns).max(deps_done))
            } else {
                let s = r.max(deps_done);
                (s, s + node.work_ns)
            };
            start[i] = Some(s);
            finish[i] = f;
        }
        start
    }

    /// Number of nodes (queries), the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a graph has a root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// The end of both fan-in shapes: after the `N` tasks in `nodes`, the
/// shared query `Q` (id `N`, `q_work` ns, no dependencies) and a zero-work
/// root that fetches the tasks in order. Returns the root's id.
fn push_q_and_root(nodes: &mut Vec<Node>, q_work: u64) -> usize {
    let n = nodes.len();
    nodes.push(Node {
        deps: vec![],
        work_ns: q_work,
        work_first: true,
    });
    nodes.push(Node {
        deps: (0..n).collect(),
        ..Node::default()
    });
    n + 1
}

/// Spins for `ns` nanoseconds of the monotonic clock. Work is measured in
/// time, not in loop iterations, so a node costs the same in every mode.
fn spin(ns: u64) {
    if ns == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_nanos(ns);
    while Instant::now() < until {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
    }
}

/// The query: one node of the synthetic graph; its value is a checksum of
/// the node's id and its dependencies' values. Node ids are dense.
#[query(dense)]
fn synth_node(cx: &Cx<'_, Graph>, id: usize) -> u64 {
    let graph = cx.db();
    let node = &graph.nodes[id];
    if node.work_first {
        spin(node.work_ns);
    }
    let values: Vec<u64> = match node.deps.as_slice() {
        [] => Vec::new(),
        &[d] => vec![cx.synth_node(d)],
        deps => weft_runtime::par_map(deps, |_, &d| cx.synth_node(d)),
    };
    if !node.work_first {
        spin(node.work_ns);
    }
    if graph.panic_at == Some(id) {
        panic!("synth: node {id} panics on purpose (--panic-at)");
    }
    values
        .iter()
        .fold(mix(id as u64), |acc, &v| mix(acc.rotate_left(5) ^ v))
}

/// The result of one run.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    checksum: u64,
    wall: Duration,
    /// Reads that waited for a query in progress elsewhere.
    waits: u64,
    workers: usize,
    mode: Mode,
}

/// Runs `graph` on `runtime`; with `busy_log`, records and writes the busy
/// intervals. The engine and the runtime are dropped before this returns,
/// on success and on error alike, so every jobserver token is handed back.
fn run_once(
    runtime: Runtime,
    graph: Graph,
    busy_log: Option<&Path>,
    profile: Option<&RunOpts>,
) -> anyhow::Result<Outcome> {
    if let Some(opts) = profile {
        crate::profile_out::check_outputs(opts)?;
    }
    if busy_log.is_some() {
        runtime.enable_busy_log();
    }
    let (mode, workers) = (runtime.mode(), runtime.num_threads());
    let root = graph.root;
    let engine = Engine::new(runtime.clone(), graph);
    // `--profile`, `--trace`, `--timings` (see `profile_out.rs`).
    let mut profiling = profile.map(|opts| Profiling::start(&engine, opts));
    let start = Instant::now();
    let value = engine.get::<synth_node>(root);
    let wall = start.elapsed();
    let waits = engine.waits();
    if let (Some(p), Some(opts)) = (profiling.as_mut(), profile) {
        p.stop();
        p.finish(&engine, opts)?;
    }
    let written = busy_log.map(|path| write_busy_log(path, &runtime.busy_log()));
    drop(engine);
    drop(runtime);
    let checksum = value.map_err(|e| anyhow::anyhow!("synth query failed: {e}"))?;
    written.transpose()?;
    Ok(Outcome {
        checksum,
        wall,
        waits,
        workers,
        mode,
    })
}

/// Runs `graph` once on `runtime` and returns the root's checksum, with no
/// output (for the benches).
///
/// # Errors
///
/// When the root query fails (a node panicked).
pub fn run_graph(runtime: Runtime, graph: Graph) -> anyhow::Result<u64> {
    run_once(runtime, graph, None, None).map(|o| o.checksum)
}

fn write_busy_log(path: &Path, intervals: &[(usize, u64, u64)]) -> anyhow::Result<()> {
    let mut out = String::with_capacity(intervals.len() * 32);
    for &(w, start, end) in intervals {
        out.push_str(&format!("{w} {start} {end}\n"));
    }
    std::fs::write(path, out).with_context(|| format!("writing busy log {}", path.display()))
}

/// Writes one line to stderr in a single `write` (lines of two processes
/// under make do not interleave).
fn note(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Runs `weft synth`: prints the root's checksum on stdout and a summary on
/// stderr.
pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    if args.run.jobserver == crate::cli::JobserverOpt::Auto {
        // Before any file is opened (the busy log, ...): see `init_from_env`.
        weft_runtime::Jobserver::init_from_env();
    }
    let mut graph = Graph::new(args.shape, args.nodes, args.work_us, args.seed);
    graph.panic_at = args.panic_at;
    let (t1, tinf) = (graph.work_ns(), graph.span_ns());
    let bounds: Vec<u64> = (0..=args.run.jobs.max(1))
        .map(|p| graph.bound_ns(p))
        .collect();
    let bound = |p: usize| bounds[p.min(bounds.len() - 1)];
    let summary = |o: &Outcome| {
        let b = bound(o.workers);
        format!(
            "{:<8} -j{:<3} wall {:>9.2} ms   bound {:>9.2} ms   wall/bound {:.3}   waits {}",
            o.mode.to_string(),
            o.workers,
            o.wall.as_secs_f64() * 1e3,
            ms(b),
            o.wall.as_nanos() as f64 / b.max(1) as f64,
            o.waits,
        )
    };
    note(&format!(
        "synth: shape {} nodes {} ({} queries) work {} us: T1 {:.2} ms, T∞ {:.2} ms, parallelism {:.2}",
        args.shape,
        args.nodes,
        graph.len(),
        args.work_us,
        ms(t1),
        ms(tinf),
        t1 as f64 / tinf.max(1) as f64,
    ));
    let outcome = if args.compare {
        let mut rows: Vec<Outcome> = Vec::new();
        for mode in [Mode::Serial, Mode::Threads, Mode::Fibers] {
            let mut opts = args.run.clone();
            opts.mode = mode;
            let runtime = crate::cli::build_runtime(&opts)?;
            let o = run_once(runtime, graph.clone(), None, None)?;
            note(&summary(&o));
            if o.checksum != rows.first().map_or(o.checksum, |r| r.checksum) {
                anyhow::bail!("checksum differs in {} mode", o.mode);
            }
            rows.push(o);
        }
        rows[0]
    } else {
        let runtime = crate::cli::build_runtime(&args.run)?;
        let o = run_once(runtime, graph, args.busy_log.as_deref(), Some(&args.run))?;
        note(&summary(&o));
        o
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "checksum: {:#018x}", outcome.checksum)?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_in_bounds() {
        let g = Graph::new(Shape::FanIn, 100, 10, 1);
        // Tasks 100·10 µs, Q 500 µs: T1 1.5 ms; span U + N·U/2.
        assert_eq!(g.work_ns(), 1_500_000);
        assert_eq!(g.span_ns(), 510_000);
        assert_eq!(g.len(), 102);
        // Brent's max(T1/2, T∞) = 750 µs; release times add nothing: Q
        // starts at 10 µs, and 10 + (1500 - 10)/2 µs is lower.
        assert_eq!(g.bound_ns(2), 750_000);
    }

    #[test]
    fn fan_in_first_bound_counts_the_wait_for_q() {
        let g = Graph::new(Shape::FanInFirst, 400, 2_000, 1);
        // Q 100 ms, tasks 400 · 2 ms: T1 900 ms, T∞ 102 ms.
        assert_eq!(g.work_ns(), 900_000_000);
        assert_eq!(g.span_ns(), 102_000_000);
        // Nothing but Q runs in its first 100 ms: 100 + 800/p.
        assert_eq!(g.bound_ns(1), 900_000_000);
        assert_eq!(g.bound_ns(2), 500_000_000);
        assert_eq!(g.bound_ns(4), 300_000_000);
        assert_eq!(g.bound_ns(1000), 102_000_000);
    }

    #[test]
    fn shapes_are_dags_with_a_root() {
        let shapes = [
            Shape::Chain,
            Shape::FanIn,
            Shape::FanInFirst,
            Shape::Diamond,
            Shape::Layered,
            Shape::Random,
        ];
        for shape in shapes {
            for n in [1, 2, 3, 10, 97] {
                let g = Graph::new(shape, n, 1, 7);
                assert!(g.span_ns() > 0, "{shape} {n}");
                assert!(g.span_ns() <= g.work_ns());
                for p in [1, 2, 4] {
                    let b = g.bound_ns(p);
                    assert!(
                        b >= (g.work_ns() / p as u64).max(g.span_ns()),
                        "{shape} {n}"
                    );
                    assert!(b <= g.work_ns(), "{shape} {n} p {p}");
                }
            }
        }
        assert_eq!(Graph::new(Shape::Chain, 10, 1, 0).span_ns(), 10_000);
        assert_eq!(Graph::new(Shape::Diamond, 10, 1, 0).span_ns(), 3_000);
    }
}
