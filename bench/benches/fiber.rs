//! Group `fiber`: fibers mode on one worker.
//!
//! - `suspend_resume`: two fibers hand a turn back and forth through
//!   latches; each turn is one suspend and one resume (the latch's wake
//!   through the worker's mailbox included). Time per round trip.
//! - `spawn_finish/<mode>`: `scope` spawns empty tasks: each is a task on
//!   the deque, a fiber (a pooled stack) started, run and finished. Threads
//!   mode runs the same tasks without fibers, for comparison.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::runtime;
use weft_runtime::{join, scope, Latch, Mode};

fn fiber(c: &mut Criterion) {
    let mut g = c.benchmark_group("fiber");
    g.measurement_time(Duration::from_secs(2));
    if Mode::fibers_available() {
        let rt = runtime(Mode::Fibers, 1);
        g.bench_function("suspend_resume", |b| {
            b.iter_custom(|iters| {
                let n = iters as usize;
                let ping: Vec<Latch> = (0..n).map(|_| Latch::new()).collect();
                let pong: Vec<Latch> = (0..n).map(|_| Latch::new()).collect();
                rt.block_on(|| {
                    let start = Instant::now();
                    join(
                        || {
                            for i in 0..n {
                                ping[i].set();
                                pong[i].wait();
                            }
                        },
                        || {
                            for i in 0..n {
                                ping[i].wait();
                                pong[i].set();
                            }
                        },
                    );
                    // Two suspends and two resumes per turn: one round trip each.
                    start.elapsed() / 2
                })
            });
        });
    }
    for mode in [Mode::Threads, Mode::Fibers] {
        if mode == Mode::Fibers && !Mode::fibers_available() {
            continue;
        }
        let rt = runtime(mode, 1);
        g.bench_function(BenchmarkId::new("spawn_finish", mode), |b| {
            b.iter_custom(|iters| {
                rt.block_on(|| {
                    let start = Instant::now();
                    scope(|s| {
                        for i in 0..iters {
                            s.spawn(move |_| {
                                black_box(i);
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, fiber);
criterion_main!(benches);
