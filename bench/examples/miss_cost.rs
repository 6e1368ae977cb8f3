//! Runs many trivial misses (and then hits) in one mode on one worker: a
//! target for callgrind and perf (`valgrind --tool=callgrind`), where
//! instruction counts per read are repeatable.
//!
//! `cargo run --release -p weft-bench --example miss_cost -- [serial|threads|fibers] [N] [hashed]`
//! (`hashed`: the default storage instead of dense ids)

use std::hint::black_box;
use std::time::{Duration, Instant};

use weft_bench::{runtime, trivial, trivial_hashed};
use weft_queries::{Engine, Query};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .map_or(Ok(weft_runtime::Mode::Serial), |m| m.parse());
    let mode = mode.expect("a mode: serial, threads or fibers");
    let n: u64 = args
        .next()
        .map_or(1_000_000, |s| s.parse().expect("a count"));
    let hashed = args.next().as_deref() == Some("hashed");
    let e = Engine::new(runtime(mode, 1), ());
    let (miss, hit) = if hashed {
        misses_then_hits::<trivial_hashed>(&e, n)
    } else {
        misses_then_hits::<trivial>(&e, n)
    };
    let t = Instant::now();
    drop(e);
    let per = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;
    eprintln!(
        "{mode}: miss {:.1} ns, hit {:.1} ns, drop {:.1} ns per key ({n} keys)",
        per(miss),
        per(hit),
        per(t.elapsed())
    );
}

/// Reads keys `0..n` of `Q` (all misses), then again (all hits): the time
/// of each pass.
fn misses_then_hits<Q: Query<Db = (), Key = u64>>(e: &Engine<()>, n: u64) -> (Duration, Duration) {
    e.run(|cx| {
        let t = Instant::now();
        for k in 0..n {
            black_box(cx.get::<Q>(k));
        }
        let miss = t.elapsed();
        let t = Instant::now();
        for k in 0..n {
            black_box(cx.get::<Q>(k));
        }
        (miss, t.elapsed())
    })
}
