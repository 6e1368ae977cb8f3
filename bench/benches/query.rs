//! Group `query`: the cost of one `Cx::get`, per mode (1 worker).
//!
//! - `hit/<mode>`: the key is memoized: a lock-free read and a clone;
//! - `miss/<mode>`: a new key each time, with a trivial provider: claim,
//!   job, compute, publish, set the latch (keys are ids, stored densely);
//! - `hit-hashed/<mode>`, `miss-hashed/<mode>`: the same with hashed keys
//!   (the default storage; a miss allocates its entry);
//! - `…/<mode>+recording`: the same with `Engine::enable_recording` on (the
//!   cost of recording when it is on; off, it is one branch per hook).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::{modes, runtime, trivial, trivial_hashed};
use weft_queries::{Engine, Query};

/// Keys read by the hit benchmark (all memoized first).
const HOT_KEYS: u64 = 1024;

fn engine(mode: weft_runtime::Mode, recording: bool) -> Engine<()> {
    let e = Engine::new(runtime(mode, 1), ());
    if recording {
        e.enable_recording();
    }
    e
}

/// The hit and miss benches of query `Q` (keys `0, 1, 2, ...`), as `hit{suffix}/..`.
fn hit_and_miss<Q: Query<Db = (), Key = u64>>(c: &mut Criterion, suffix: &str) {
    let mut g = c.benchmark_group("query");
    g.measurement_time(Duration::from_secs(2));
    for mode in modes() {
        for recording in [false, true] {
            let name = if recording {
                format!("{mode}+recording")
            } else {
                mode.to_string()
            };
            g.bench_function(BenchmarkId::new(format!("hit{suffix}"), &name), |b| {
                b.iter_custom(|iters| {
                    // A fresh engine per sample keeps the recording small.
                    let e = engine(mode, recording);
                    e.run(|cx| {
                        for k in 0..HOT_KEYS {
                            black_box(cx.get::<Q>(k));
                        }
                        let start = Instant::now();
                        for i in 0..iters {
                            black_box(cx.get::<Q>(i % HOT_KEYS));
                        }
                        start.elapsed()
                    })
                });
            });
            g.bench_function(BenchmarkId::new(format!("miss{suffix}"), &name), |b| {
                b.iter_custom(|iters| {
                    let e = engine(mode, recording);
                    e.run(|cx| {
                        let start = Instant::now();
                        for k in 0..iters {
                            black_box(cx.get::<Q>(k));
                        }
                        start.elapsed()
                    })
                });
            });
        }
    }
    g.finish();
}

fn query(c: &mut Criterion) {
    hit_and_miss::<trivial>(c, "");
    hit_and_miss::<trivial_hashed>(c, "-hashed");
}

criterion_group!(benches, query);
criterion_main!(benches);
