//! A query-heavy program for overhead measurements: a layered DAG of
//! `layers × width` queries, each reading four queries of the layer below
//! (mostly cache hits), the last layer fetched with `par_map`; then a loop
//! of cache hits. Prints the checksum on stdout, times on stderr.
//!
//! `cargo run --release -p weft-queries --example overhead -- MODE THREADS [LAYERS WIDTH HITS]`
//!
//! Used for: fibers -j1 vs serial instruction counts under callgrind, and
//! the cache-hit cost in ns.

use std::time::Instant;

use weft_queries::{query, Cx, Engine};
use weft_runtime::{par_map, Mode, Runtime};

#[query]
fn node(cx: &Cx<u32>, layer: u32, i: u32) -> u64 {
    let width = *cx.db();
    if layer == 0 {
        return u64::from(i) + 1;
    }
    let mut h = u64::from(layer) << 32 | u64::from(i);
    for j in 0..4 {
        let dep = (i.wrapping_mul(7).wrapping_add(j * 13)) % width;
        h = h.rotate_left(5) ^ cx.node(layer - 1, dep);
    }
    h
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode: Mode = args
        .get(1)
        .map_or("serial", String::as_str)
        .parse()
        .expect("mode");
    let threads: usize = args.get(2).map_or(1, |s| s.parse().expect("threads"));
    let layers: u32 = args.get(3).map_or(50, |s| s.parse().expect("layers"));
    let width: u32 = args.get(4).map_or(2000, |s| s.parse().expect("width"));
    let hits: u32 = args.get(5).map_or(1_000_000, |s| s.parse().expect("hits"));
    let rt = Runtime::builder()
        .mode(mode)
        .threads(threads)
        .build()
        .expect("runtime");
    let engine = Engine::new(rt, width);
    let t = Instant::now();
    let sum = engine.run(|cx| {
        let top: Vec<u32> = (0..width).collect();
        par_map(&top, |_, &i| cx.node(layers - 1, i))
            .into_iter()
            .fold(0u64, |a, b| a.rotate_left(1) ^ b)
    });
    let build = t.elapsed();
    let t = Instant::now();
    let hit_sum = engine.run(|cx| {
        let mut s = 0u64;
        for k in 0..hits {
            s = s.wrapping_add(cx.node(layers - 1, k % 16));
        }
        s
    });
    let hit = t.elapsed();
    println!("{sum:016x} {hit_sum:016x}");
    eprintln!(
        "mode={mode} threads={threads} queries={} build={:.1} ms hit={:.1} ns waits={}",
        layers * width,
        build.as_secs_f64() * 1e3,
        hit.as_secs_f64() * 1e9 / f64::from(hits.max(1)),
        engine.waits()
    );
}
