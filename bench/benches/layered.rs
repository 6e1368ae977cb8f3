//! Group `layered`: the engine's cost per query on a layered DAG of
//! 200,000 nodes with 3 dependencies each and no work
//! (`weft_bench::layered`), beside a plain `OnceLock` memo doing the same.
//!
//! Every figure is **per node** (the measured time divided by 200,000):
//!
//! - `miss/<mode>-j<N>`: a fresh engine computes the whole graph from the
//!   top layer (one miss and three reads per node); at `-j2` the top layer
//!   is split with `par_for_each`, so the workers meet in shared nodes
//!   (fibers suspend, threads block);
//! - `hit/<mode>`: every node read once more, all memoized (the table no
//!   longer fits in L2: this is a hit with cache misses, unlike `query/hit`);
//! - `…/oncelock-j<N>`: the peer (`Vec<OnceLock<u64>>` and recursion; at
//!   `-j2` on a 2-thread rayon pool);
//! - `…/salsa`: salsa 0.28 on one thread, one `#[salsa::input]` per node
//!   (its id and dependencies, read through tracked fields) and a
//!   `#[salsa::tracked]` function per node: what a salsa user writes for
//!   this graph. Its reads of the input fields are recorded dependencies,
//!   which Weft's reads of the `Db` are not (Weft keeps no edges yet).
//!
//! Before the runs it prints the engine's memory per memo (`Engine::memory`).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rayon::prelude::*;
use weft_bench::layered::{node, Layered, OnceMemo, NODES};
use weft_bench::{modes, runtime};
use weft_queries::Engine;
use weft_runtime::Mode;

/// The seed of the graph (any fixed value).
const SEED: u64 = 13;

/// Computes the graph on a fresh engine; returns the time of the
/// computation alone (not building or dropping the engine).
fn weft_miss(graph: &Arc<Layered>, top: &[u32], mode: Mode, threads: usize) -> Duration {
    let e = Engine::new(runtime(mode, threads), graph.clone());
    let t = Instant::now();
    e.run(|cx| {
        if threads == 1 {
            for &i in top {
                black_box(cx.get::<node>(i));
            }
        } else {
            weft_runtime::par_for_each(top, |_, &i| {
                black_box(cx.get::<node>(i));
            });
        }
    });
    t.elapsed()
}

/// The salsa peer: one input per node, its dependencies as input ids.
#[salsa::input]
struct SalsaNode {
    #[returns(copy)]
    id: u32,
    #[returns(copy)]
    deps: [Option<SalsaNode>; 3],
}

/// The node's value, as `Layered`'s (the same fold).
#[salsa::tracked(returns(copy))]
fn salsa_value(db: &dyn salsa::Database, node: SalsaNode) -> u64 {
    let id = node.id(db);
    node.deps(db)
        .iter()
        .flatten()
        .fold(u64::from(id), |acc, &d| {
            acc.rotate_left(5) ^ salsa_value(db, d)
        })
}

/// A fresh salsa database with `graph`'s nodes as inputs (in id order,
/// so every dependency exists before its reader).
fn salsa_db(graph: &Layered) -> (salsa::DatabaseImpl, Vec<SalsaNode>) {
    let db = salsa::DatabaseImpl::default();
    let mut nodes: Vec<SalsaNode> = Vec::with_capacity(NODES);
    for (i, deps) in graph.deps.iter().enumerate() {
        let deps = deps.map(|d| (d != u32::MAX).then(|| nodes[d as usize]));
        nodes.push(SalsaNode::new(&db, i as u32, deps));
    }
    (db, nodes)
}

/// Criterion divides what `iter_custom` returns by `iters`; dividing it by
/// the nodes too makes every reported time a time per node.
fn per_node(total: Duration, _iters: u64) -> Duration {
    total / NODES as u32
}

fn layered(c: &mut Criterion) {
    let graph = Arc::new(Layered::new(SEED));
    let top = graph.top();
    let mut g = c.benchmark_group("layered");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));

    // The memory report, once.
    {
        let e = Engine::new(runtime(Mode::Serial, 1), graph.clone());
        e.run(|cx| top.iter().for_each(|&i| _ = cx.get::<node>(i)));
        for m in e.memory() {
            eprintln!(
                "layered: {} memos of `{}`: {:.1} bytes per memo ({} header + {} key + {} value \
                 + {:.1} index); 0 bytes per dependency edge (none kept)",
                m.memos,
                m.query,
                m.bytes_per_memo(),
                m.header_bytes,
                m.key_bytes,
                m.value_bytes,
                m.index_bytes as f64 / m.memos as f64
            );
        }
    }

    for mode in modes() {
        let widths: &[usize] = if mode == Mode::Serial { &[1] } else { &[1, 2] };
        for &threads in widths {
            g.bench_function(
                BenchmarkId::new("miss", format!("{mode}-j{threads}")),
                |b| {
                    b.iter_custom(|iters| {
                        let total: Duration = (0..iters)
                            .map(|_| weft_miss(&graph, &top, mode, threads))
                            .sum();
                        per_node(total, iters)
                    });
                },
            );
        }
        g.bench_function(BenchmarkId::new("hit", mode.to_string()), |b| {
            let e = Engine::new(runtime(mode, 1), graph.clone());
            e.run(|cx| top.iter().for_each(|&i| _ = cx.get::<node>(i)));
            b.iter_custom(|iters| {
                e.run(|cx| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        for i in 0..NODES as u32 {
                            black_box(cx.get::<node>(i));
                        }
                    }
                    per_node(t.elapsed(), iters)
                })
            });
        });
    }

    g.bench_function(BenchmarkId::new("miss", "oncelock-j1"), |b| {
        b.iter_custom(|iters| {
            let total: Duration = (0..iters)
                .map(|_| {
                    let memo = OnceMemo::new(&graph);
                    let t = Instant::now();
                    for &i in &top {
                        black_box(memo.get(i));
                    }
                    t.elapsed()
                })
                .sum();
            per_node(total, iters)
        });
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool");
    g.bench_function(BenchmarkId::new("miss", "oncelock-j2"), |b| {
        b.iter_custom(|iters| {
            let total: Duration = (0..iters)
                .map(|_| {
                    let memo = OnceMemo::new(&graph);
                    let t = Instant::now();
                    pool.install(|| {
                        top.par_iter().for_each(|&i| {
                            black_box(memo.get(i));
                        })
                    });
                    t.elapsed()
                })
                .sum();
            per_node(total, iters)
        });
    });
    g.bench_function(BenchmarkId::new("miss", "salsa-j1"), |b| {
        b.iter_custom(|iters| {
            let total: Duration = (0..iters)
                .map(|_| {
                    let (db, nodes) = salsa_db(&graph);
                    let t = Instant::now();
                    for &i in &top {
                        black_box(salsa_value(&db, nodes[i as usize]));
                    }
                    t.elapsed()
                })
                .sum();
            per_node(total, iters)
        });
    });
    g.bench_function(BenchmarkId::new("hit", "salsa"), |b| {
        let (db, nodes) = salsa_db(&graph);
        top.iter()
            .for_each(|&i| _ = salsa_value(&db, nodes[i as usize]));
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                for &n in &nodes {
                    black_box(salsa_value(&db, n));
                }
            }
            per_node(t.elapsed(), iters)
        });
    });
    g.bench_function(BenchmarkId::new("hit", "oncelock"), |b| {
        let memo = OnceMemo::new(&graph);
        top.iter().for_each(|&i| _ = memo.get(i));
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                for i in 0..NODES as u32 {
                    black_box(memo.get(i));
                }
            }
            per_node(t.elapsed(), iters)
        });
    });
    g.finish();
}

criterion_group!(benches, layered);
criterion_main!(benches);
