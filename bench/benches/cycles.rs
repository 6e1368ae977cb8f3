//! Group `cycles`: the cost of the wait-for graph (issue 10).
//!
//! - `wait_at_depth/D` (fibers, 1 worker): one wait by a query at the top
//!   of a chain of `D` nested queries, for a query in progress on a
//!   suspended fiber — publish the wait, search for a cycle (none), suspend,
//!   resume once the owner finished. Publishing is O(1) and the search
//!   starts at the owner, so the figure must not grow with `D` (10, 1,000,
//!   100,000). One worker makes every iteration the same schedule: the
//!   chain's top releases owner `i`, reads it (a wait: the owner's fiber is
//!   runnable but has not run), and the worker runs the owner, which
//!   finishes and wakes the top.
//! - `ring_3000/<mode>`: `ring(0)` of a 3,000-query ring without `recover`,
//!   on a fresh engine: detection, the frames, and 3,000 members each
//!   publishing `QueryError::Cycle` (one shared `Cycle`, not one copy each).
//!   `ring_3000_two_entries/<mode>` (2 workers) enters at `ring(0)` and
//!   `ring(1500)` at once, so the cycle closes across two strands.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::{modes, runtime};
use weft_queries::{Cx, Engine, Query, QueryError};
use weft_runtime::{par_map, scope, Latch, Mode};

/// Owners per batch: the chain's top spawns this many owner tasks at once
/// (each a parked fiber), then waits on each in turn.
const BATCH: usize = 2_000;

struct WaitDb {
    depth: u32,
    /// Waits to time.
    iters: usize,
    /// Nanoseconds spent in the timed reads.
    elapsed_ns: AtomicU64,
    /// The batch being run (set by the chain's top before it spawns).
    batch: std::sync::Mutex<Option<Arc<Batch>>>,
}

/// One batch's latches: owner `i` waits for `release[i]`; the last owner
/// to start sets `all_started`.
struct Batch {
    release: Vec<Latch>,
    started: AtomicUsize,
    all_started: Latch,
}

/// `owner(batch, i)`: in progress until the chain's top releases it.
struct Owner;

impl Query for Owner {
    type Db = WaitDb;
    type Key = (usize, usize);
    type Value = usize;
    const NAME: &'static str = "owner";

    fn compute(cx: &Cx<'_, WaitDb>, &(_, i): &(usize, usize)) -> usize {
        let batch = cx.db().batch.lock().unwrap().clone().expect("a batch");
        if batch.started.fetch_add(1, Ordering::AcqRel) + 1 == batch.release.len() {
            batch.all_started.set();
        }
        batch.release[i].wait();
        i
    }
}

/// `chain(d)`: reads `chain(d - 1)`; `chain(0)` runs the timed waits.
struct Chain;

impl Query for Chain {
    type Db = WaitDb;
    type Key = u32;
    type Value = usize;
    const NAME: &'static str = "chain";

    fn compute(cx: &Cx<'_, WaitDb>, d: &u32) -> usize {
        if *d > 0 {
            return cx.get::<Chain>(d - 1);
        }
        let db = cx.db();
        let mut left = db.iters;
        let mut round = 0;
        let mut sum = 0;
        while left > 0 {
            let n = left.min(BATCH);
            left -= n;
            round += 1;
            let batch = Arc::new(Batch {
                release: (0..n).map(|_| Latch::new()).collect(),
                started: AtomicUsize::new(0),
                all_started: Latch::new(),
            });
            *db.batch.lock().unwrap() = Some(batch.clone());
            scope(|s| {
                for i in 0..n {
                    s.spawn(move |_| {
                        cx.get::<Owner>((round, i));
                    });
                }
                batch.all_started.wait();
                let start = Instant::now();
                for i in 0..n {
                    batch.release[i].set();
                    sum += cx.get::<Owner>((round, i));
                }
                let ns = start.elapsed().as_nanos() as u64;
                db.elapsed_ns.fetch_add(ns, Ordering::Relaxed);
            });
        }
        sum
    }
}

fn wait_at_depth(c: &mut Criterion) {
    if !Mode::fibers_available() {
        return;
    }
    let mut g = c.benchmark_group("cycles");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    let rt = runtime(Mode::Fibers, 1);
    for depth in [10u32, 1_000, 100_000] {
        g.bench_function(BenchmarkId::new("wait_at_depth", depth), |b| {
            b.iter_custom(|iters| {
                let engine = Engine::new(
                    rt.clone(),
                    WaitDb {
                        depth,
                        iters: iters as usize,
                        elapsed_ns: AtomicU64::new(0),
                        batch: std::sync::Mutex::new(None),
                    },
                );
                let top = engine.db().depth;
                engine.get::<Chain>(top).expect("chain");
                Duration::from_nanos(engine.db().elapsed_ns.load(Ordering::Relaxed))
            })
        });
    }
    g.finish();
}

/// Queries in the ring.
const RING: u32 = 3_000;

/// `ring(i)` reads `ring(i + 1 mod 3000)`; no `recover`.
struct Ring;

impl Query for Ring {
    type Db = ();
    type Key = u32;
    type Value = u32;
    const NAME: &'static str = "ring";

    fn compute(cx: &Cx<'_, ()>, i: &u32) -> u32 {
        cx.get::<Ring>((i + 1) % RING)
    }
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("cycles");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for mode in modes() {
        let threads = if mode == Mode::Serial { 1 } else { 2 };
        let rt = runtime(mode, threads);
        g.bench_function(BenchmarkId::new("ring_3000", mode), |b| {
            b.iter(|| {
                let engine = Engine::new(rt.clone(), ());
                let r = engine.get::<Ring>(0);
                assert!(matches!(&r, Err(QueryError::Cycle(c)) if c.frames.len() == RING as usize));
            })
        });
        if mode == Mode::Serial {
            continue;
        }
        g.bench_function(BenchmarkId::new("ring_3000_two_entries", mode), |b| {
            b.iter(|| {
                let engine = Engine::new(rt.clone(), ());
                let r = engine.run(|cx| par_map(&[0, RING / 2], |_, &i| cx.try_get::<Ring>(i)));
                assert!(r.iter().all(|r| matches!(r, Err(QueryError::Cycle(_)))));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, wait_at_depth, ring);
criterion_main!(benches);
