//! Group `query`: the cost of one `Cx::get`, per mode (1 worker).
//!
//! - `hit/<mode>`: the key is memoized: a shard lock and a clone;
//! - `miss/<mode>`: a new key each time, with a trivial provider: claim,
//!   job, compute, publish, set the latch;
//! - `…/<mode>+recording`: the same with `Engine::enable_recording` on (the
//!   cost of recording when it is on; off, it is one branch per hook).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::{modes, runtime, Trivial};
use weft_queries::Engine;

/// Keys read by the hit benchmark (all memoized first).
const HOT_KEYS: u64 = 1024;

fn engine(mode: weft_runtime::Mode, recording: bool) -> Engine<()> {
    let e = Engine::new(runtime(mode, 1), ());
    if recording {
        e.enable_recording();
    }
    e
}

fn query(c: &mut Criterion) {
    let mut g = c.benchmark_group("query");
    g.measurement_time(Duration::from_secs(2));
    for mode in modes() {
        for recording in [false, true] {
            let name = if recording {
                format!("{mode}+recording")
            } else {
                mode.to_string()
            };
            g.bench_function(BenchmarkId::new("hit", &name), |b| {
                b.iter_custom(|iters| {
                    // A fresh engine per sample keeps the recording small.
                    let e = engine(mode, recording);
                    e.run(|cx| {
                        for k in 0..HOT_KEYS {
                            cx.get::<Trivial>(k);
                        }
                        let start = Instant::now();
                        for i in 0..iters {
                            black_box(cx.get::<Trivial>(i % HOT_KEYS));
                        }
                        start.elapsed()
                    })
                });
            });
            g.bench_function(BenchmarkId::new("miss", &name), |b| {
                b.iter_custom(|iters| {
                    let e = engine(mode, recording);
                    e.run(|cx| {
                        let start = Instant::now();
                        for k in 0..iters {
                            black_box(cx.get::<Trivial>(k));
                        }
                        start.elapsed()
                    })
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, query);
criterion_main!(benches);
