//! Group `cycles`: the cost of the wait-for graph (issue 10).
//!
//! - `wait_at_depth/D` (fibers, 1 worker): one wait by a query at the top
//!   of a chain of `D` nested queries, for a query in progress on a
//!   suspended fiber — publish the wait, search for a cycle (none), suspend,
//!   resume once the owner finished (`weft_bench::wait_depth`). Publishing
//!   is O(1) and the search starts at the owner, so the figure must not
//!   grow with `D` (10, 1,000, 100,000). Wall time per wait is noisy at
//!   this size; `examples/wait_depth.rs` counts instructions per wait under
//!   callgrind, which is repeatable.
//! - `ring_3000/<mode>`: `ring(0)` of a 3,000-query ring without `recover`,
//!   on a fresh engine: detection, the frames, and 3,000 members each
//!   publishing `QueryError::Cycle` (one shared `Cycle`, not one copy each).
//!   `ring_3000_two_entries/<mode>` (2 workers) enters at `ring(0)` and
//!   `ring(1500)` at once, so the cycle closes across two strands.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::wait_depth::waits_at_depth;
use weft_bench::{modes, runtime};
use weft_queries::{query, Cx, Engine, QueryError};
use weft_runtime::{par_map, Mode};

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
            b.iter_custom(|iters| waits_at_depth(&rt, depth, iters as usize))
        });
    }
    g.finish();
}

/// Queries in the ring.
const RING: u32 = 3_000;

/// `ring(i)` reads `ring(i + 1 mod 3000)`; no `recover`.
#[query]
fn ring(cx: &Cx<()>, i: u32) -> u32 {
    cx.ring((i + 1) % RING)
}

fn ring_3000(c: &mut Criterion) {
    let mut g = c.benchmark_group("cycles");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for mode in modes() {
        let threads = if mode == Mode::Serial { 1 } else { 2 };
        let rt = runtime(mode, threads);
        g.bench_function(BenchmarkId::new("ring_3000", mode), |b| {
            b.iter(|| {
                let engine = Engine::new(rt.clone(), ());
                let r = engine.get::<ring>(0);
                assert!(matches!(&r, Err(QueryError::Cycle(c)) if c.frames.len() == RING as usize));
            })
        });
        if mode == Mode::Serial {
            continue;
        }
        g.bench_function(BenchmarkId::new("ring_3000_two_entries", mode), |b| {
            b.iter(|| {
                let engine = Engine::new(rt.clone(), ());
                let r = engine.run(|cx| par_map(&[0, RING / 2], |_, &i| cx.try_ring(i)));
                assert!(r.iter().all(|r| matches!(r, Err(QueryError::Cycle(_)))));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, wait_at_depth, ring_3000);
criterion_main!(benches);
