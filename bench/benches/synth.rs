//! Group `synth`: every synthetic shape (`weft synth`), in each mode, on 1
//! and 2 workers (serial: 1). 200 nodes of 20 µs each (fan-in: 200 tasks).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::{modes, runtime};
use weft_pipeline::synth::{run_graph, Graph, Shape};
use weft_runtime::Mode;

const NODES: usize = 200;
const WORK_US: u64 = 20;

fn synth(c: &mut Criterion) {
    let mut g = c.benchmark_group("synth");
    g.measurement_time(Duration::from_secs(2)).sample_size(20);
    for shape in [
        Shape::Chain,
        Shape::FanIn,
        Shape::Diamond,
        Shape::Layered,
        Shape::Random,
    ] {
        let graph = Graph::new(shape, NODES, WORK_US, 1);
        for mode in modes() {
            for threads in [1, 2] {
                if mode == Mode::Serial && threads > 1 {
                    continue;
                }
                let id = BenchmarkId::new(shape.to_string(), format!("{mode}-j{threads}"));
                g.bench_function(id, |b| {
                    let rt = runtime(mode, threads);
                    b.iter(|| run_graph(rt.clone(), graph.clone()).expect("synth run"));
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, synth);
criterion_main!(benches);
