//! Group `parallel`: `par_for_each` over 10,000 tiny items on 2 workers,
//! per mode, against rayon's `par_iter().for_each` on a 2-thread pool doing
//! the same (each item squares its value into `black_box`: no shared
//! writes, so the figure is scheduling overhead, not cache-line contention
//! on a shared counter). Each iteration includes entering the pool
//! (`block_on` / `install`).
//!
//! Group `parallel-j1`: the same call at 1 worker, timed *inside* one
//! `block_on` (entering a pool is a thread hop that a loop does not pay),
//! per mode, against the plain loop `for x in &items` in the same place:
//! what `par_for_each` costs where nothing can run in parallel (issue 12:
//! at most 1.2× the loop).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rayon::prelude::*;
use weft_bench::{modes, runtime};

const ITEMS: usize = 10_000;

fn parallel(c: &mut Criterion) {
    let items: Vec<u64> = (0..ITEMS as u64).collect();
    let mut g = c.benchmark_group("parallel");
    g.measurement_time(Duration::from_secs(2));
    for mode in modes() {
        let rt = runtime(mode, 2);
        g.bench_function(BenchmarkId::new("par_for_each", mode), |b| {
            b.iter(|| {
                rt.block_on(|| {
                    weft_runtime::par_for_each(&items, |_, &x| {
                        black_box(x.wrapping_mul(x));
                    })
                });
            });
        });
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool");
    g.bench_function(BenchmarkId::new("par_iter", "rayon"), |b| {
        b.iter(|| {
            pool.install(|| {
                items.par_iter().for_each(|&x| {
                    black_box(x.wrapping_mul(x));
                })
            });
        });
    });
    g.finish();

    let mut g = c.benchmark_group("parallel-j1");
    g.measurement_time(Duration::from_secs(2));
    let rt = runtime(weft_runtime::Mode::Serial, 1);
    g.bench_function(BenchmarkId::new("loop", "serial"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let start = Instant::now();
                for _ in 0..iters {
                    for &x in &items {
                        black_box(x.wrapping_mul(x));
                    }
                }
                start.elapsed()
            })
        });
    });
    for mode in modes() {
        let rt = runtime(mode, 1);
        g.bench_function(BenchmarkId::new("par_for_each", mode), |b| {
            b.iter_custom(|iters| {
                rt.block_on(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        weft_runtime::par_for_each(&items, |_, &x| {
                            black_box(x.wrapping_mul(x));
                        });
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, parallel);
criterion_main!(benches);
