//! `weft analyze`: the driver.
//!
//! Loads the crate graph (input errors are usage errors, exit status 2),
//! builds the runtime and engine, runs `crate_report` for every crate through
//! `par_map` (crates wait on their dependencies' `def_map` inside the engine),
//! prints the report on stdout and a summary line on stderr. A failed query
//! (a provider panic: a bug) is an internal failure, exit status 1, printed
//! with the failing query and key.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use weft_queries::QueryError;

use crate::cli::{runtime_builder, RunOpts, UsageError};
use crate::crate_graph::{CrateGraph, CrateId};
use crate::db::{Db, Engine};
use crate::profile_out::Profiling;
use crate::report::{render_json, render_text, CrateReport, CrateReportQuery};

/// Fiber stack size for the analysis: syn's parser and the lowering recurse
/// on deeply nested code.
pub const ANALYZE_STACK_BYTES: usize = 8 * 1024 * 1024;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable blocks.
    Text,
    /// One JSON document (schema in the README).
    Json,
}

/// Arguments of `weft analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// A directory with `Cargo.toml`, a directory with `src/lib.rs` or
    /// `src/main.rs`, or a `.rs` file.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Also analyze every dependency resolved for the host platform.
    #[arg(long)]
    pub deps: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Runtime options.
    #[command(flatten)]
    pub run: RunOpts,
}

/// The result of one analysis, before it is printed.
pub struct Analysis {
    /// The engine, kept for profiling output after the run.
    pub engine: Engine,
    /// One report per crate, in crate id order.
    pub reports: Vec<Arc<CrateReport>>,
    /// Wall time of loading and analysis.
    pub wall: std::time::Duration,
    /// The measured window of the query run, for `--profile`/`--trace`/`--timings`.
    pub profiling: Profiling,
}

/// Loads and analyzes `args.path`; no output except the progress bar.
pub fn analyze(args: &AnalyzeArgs) -> anyhow::Result<Analysis> {
    let start = Instant::now();
    crate::profile_out::check_outputs(&args.run)?;
    let graph = CrateGraph::load(&args.path, args.deps).map_err(|e| UsageError(e.to_string()))?;
    let runtime = runtime_builder(&args.run)
        .stack_size(ANALYZE_STACK_BYTES)
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(graph.crates.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} crates, {msg}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let ids: Vec<CrateId> = (0..graph.crates.len() as CrateId).collect();
    let engine = Engine::new(runtime, Db::new(graph, bar));
    let mut profiling = Profiling::start(&engine, &args.run);
    let results: Vec<Result<Arc<CrateReport>, QueryError>> = engine.run(|cx| {
        weft_runtime::par_map(&ids, |_, k| {
            let r = cx.try_crate_report(*k);
            cx.db().progress.crate_done();
            r
        })
    });
    profiling.stop();
    engine.db().progress.finish();
    let mut reports = Vec::with_capacity(results.len());
    for (k, r) in ids.iter().zip(results) {
        match r {
            Ok(r) => reports.push(r),
            Err(e) => {
                let name = &engine.db().graph.krate(*k).name;
                anyhow::bail!(
                    "internal failure; query stack (outermost first):\n  crate_report({name})\n{}",
                    describe(&e)
                );
            }
        }
    }
    Ok(Analysis {
        engine,
        reports,
        wall: start.elapsed(),
        profiling,
    })
}

/// A failed query, with the query and key that failed.
fn describe(e: &QueryError) -> String {
    match e {
        QueryError::Panicked {
            query,
            key,
            message,
        } => format!("  ...\n  {query}({key}) panicked: {message}"),
        QueryError::Cycle(c) => format!("  query cycle: {c}"),
        other => format!("  {other}"),
    }
}

/// Runs `weft analyze`: the report on stdout, a summary line on stderr.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let analysis = analyze(args)?;
    let out = match args.format {
        Format::Text => render_text(&analysis.reports),
        Format::Json => render_json(&analysis.reports),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is not a failure of the analysis.
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    let db = analysis.engine.db();
    let rt = analysis.engine.runtime();
    eprintln!(
        "weft: analyzed {} crates ({} files) in {:.2}s [{} mode, {} threads]",
        analysis.reports.len(),
        db.progress.files(),
        analysis.wall.as_secs_f64(),
        rt.mode(),
        rt.num_threads()
    );
    // Profiling output (`--profile`, `--trace`, `--timings`), after the run.
    analysis.profiling.finish(&analysis.engine, &args.run)?;
    Ok(())
}
