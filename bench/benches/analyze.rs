//! Group `analyze`: `weft analyze --deps` on the pinned corpus
//! (`bench/corpus/`, about 110 crates), in each mode at `-j 1` and `-j 2`.
//! Each iteration is a whole analysis: `cargo metadata`, reading and parsing
//! every file, name resolution, consts and panics.
//!
//! `WEFT_BENCH_CORPUS=DIR` analyzes another crate instead (with `--deps`).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use clap::Parser;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weft_bench::modes;
use weft_pipeline::analyze::{analyze, AnalyzeArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: AnalyzeArgs,
}

fn corpus() -> String {
    std::env::var("WEFT_BENCH_CORPUS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/corpus").to_owned())
}

fn bench_analyze(c: &mut Criterion) {
    let path = corpus();
    let mut g = c.benchmark_group("analyze");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for mode in modes() {
        for jobs in [1, 2] {
            if mode == weft_runtime::Mode::Serial && jobs > 1 {
                continue;
            }
            let (m, j) = (mode.to_string(), jobs.to_string());
            let cli = Cli::parse_from([
                "analyze",
                &path,
                "--deps",
                "--mode",
                &m,
                "-j",
                &j,
                "--jobserver",
                "off",
            ]);
            g.bench_function(BenchmarkId::new("corpus", format!("{mode}-j{jobs}")), |b| {
                b.iter(|| {
                    analyze(&cli.args)
                        .expect("analyze the corpus")
                        .reports
                        .len()
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_analyze);
criterion_main!(benches);
