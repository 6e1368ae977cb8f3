//! Group `replay`: rustc's own query graph of `scopeguard` (the fixture of
//! `pipeline/tests/replay.rs`: 4,596 executions, 53,924 cache hits, 44 ms of
//! recorded self time), replayed at `--scale 0.25` under each policy, in
//! each mode, on 1 and 2 workers (serial: 1). `weft replay` on bigger
//! crates is `bench/replay/table.py`.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::{modes, runtime};
use weft_pipeline::replay::exec::{Policy, ReplayDb};
use weft_pipeline::replay::{read_graph, run_on};
use weft_runtime::Mode;

const SCALE: f64 = 0.25;

fn replay(c: &mut Criterion) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures/replay/scopeguard.mm_profdata.gz");
    let graph = read_graph(&fixture).expect("the replay fixture");
    let mut g = c.benchmark_group("replay");
    g.measurement_time(Duration::from_secs(2)).sample_size(10);
    for policy in [Policy::Recorded, Policy::Sites, Policy::Dataflow] {
        for mode in modes() {
            for threads in [1, 2] {
                if mode == Mode::Serial && threads > 1 {
                    continue;
                }
                let id = BenchmarkId::new(policy.to_string(), format!("{mode}-j{threads}"));
                g.bench_function(id, |b| {
                    let rt = runtime(mode, threads);
                    b.iter(|| {
                        let db = ReplayDb::new(graph.clone(), policy, SCALE);
                        run_on(rt.clone(), db).expect("replay run")
                    });
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
