//! Group `wait`: wake latency from one worker to another (2 workers).
//!
//! Two tasks on different workers hand a turn back and forth through
//! latches: each turn, one side sets a latch and the other, waiting on it
//! (a suspended fiber, or a blocked thread), runs again. The time per
//! one-way hand-over is the wake latency: the latch, the mailbox or condvar,
//! and waking the parked worker. Before timing, each side checks that it
//! runs on its own worker.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::runtime;
use weft_runtime::{current_worker_index, join, Latch, Mode};

fn wait(c: &mut Criterion) {
    let mut g = c.benchmark_group("wait");
    g.measurement_time(Duration::from_secs(2));
    for mode in [Mode::Threads, Mode::Fibers] {
        if mode == Mode::Fibers && !Mode::fibers_available() {
            continue;
        }
        let rt = runtime(mode, 2);
        g.bench_function(BenchmarkId::new("wake", mode), |b| {
            b.iter_custom(|iters| {
                let n = iters as usize;
                let ping: Vec<Latch> = (0..n).map(|_| Latch::new()).collect();
                let pong: Vec<Latch> = (0..n).map(|_| Latch::new()).collect();
                // The worker of the forked side (usize::MAX until it runs).
                let other = AtomicUsize::new(usize::MAX);
                rt.block_on(|| {
                    let (elapsed, ()) = join(
                        || {
                            let me = current_worker_index();
                            // Keep this worker busy until the other side
                            // was stolen by the other worker.
                            while other.load(Ordering::Acquire) == usize::MAX {
                                std::hint::spin_loop();
                            }
                            assert_ne!(
                                Some(other.load(Ordering::Acquire)),
                                me,
                                "both sides on one worker"
                            );
                            let start = Instant::now();
                            for i in 0..n {
                                ping[i].set();
                                pong[i].wait();
                            }
                            start.elapsed()
                        },
                        || {
                            other.store(current_worker_index().unwrap_or(0), Ordering::Release);
                            for i in 0..n {
                                ping[i].wait();
                                pong[i].set();
                            }
                        },
                    );
                    // Two hand-overs per turn.
                    elapsed / 2
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, wait);
criterion_main!(benches);
