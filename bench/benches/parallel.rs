//! Group `parallel`: `par_for_each` over 10,000 tiny items on 2 workers,
//! per mode, against rayon's `par_iter().for_each` on a 2-thread pool doing
//! the same (each item squares its value into `black_box`: no shared
//! writes, so the figure is scheduling overhead, not cache-line contention
//! on a shared counter). Each iteration includes entering the pool
//! (`block_on` / `install`).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

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
}

criterion_group!(benches, parallel);
criterion_main!(benches);
