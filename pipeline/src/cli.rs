//! Command-line options shared by the subcommands, and the runtime they build.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use weft_runtime::{Jobserver, Mode, Runtime};

/// An error in how `weft` was invoked or in its input path: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Whether to take part in a `make`/`cargo` jobserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobserverOpt {
    /// Use the jobserver named in the environment, if any.
    Auto,
    /// Ignore any jobserver.
    Off,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse::<Mode>()
        .map_err(|_| format!("unknown mode `{s}` (expected fibers, threads or serial)"))
}

/// The most worker threads `-j` (and `weft simulate --workers`) accepts:
/// far above any machine Weft runs on, low enough that a typo (`-j 100000`)
/// is a usage error instead of minutes of thread start-up.
pub const MAX_JOBS: usize = 1024;

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
        Ok(n) if n > MAX_JOBS => Err(format!(
            "{n} threads is more than the maximum of {MAX_JOBS}"
        )),
        _ => Err(format!("`{s}` is not a positive number of threads")),
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Options of every subcommand that runs queries.
#[derive(Debug, Clone, Args)]
pub struct RunOpts {
    /// How tasks run: fibers (suspend on wait), threads (block on wait) or serial.
    #[arg(long, value_name = "MODE", value_parser = parse_mode, default_value_t = Mode::default_for_platform())]
    pub mode: Mode,
    /// Worker threads (ignored in serial mode).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = default_jobs(), value_parser = parse_jobs)]
    pub jobs: usize,
    /// Take part in a jobserver from the environment (`auto`) or not (`off`).
    #[arg(long, value_enum, value_name = "auto|off", default_value_t = JobserverOpt::Auto)]
    pub jobserver: JobserverOpt,
    /// Print the profile on stderr after the run: per query kind, per worker,
    /// work, span, parallelism and efficiency.
    #[arg(long)]
    pub profile: bool,
    /// Write a Chrome trace-event JSON of the run to FILE (opens in Perfetto
    /// and chrome://tracing; `weft simulate` replays it).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write a timeline picture of the run to FILE (SVG, one row per worker).
    #[arg(long, value_name = "FILE")]
    pub timings: Option<PathBuf>,
}

/// The runtime builder configured by `opts` (mode, threads, jobserver).
pub fn runtime_builder(opts: &RunOpts) -> weft_runtime::Builder {
    let jobserver = match opts.jobserver {
        JobserverOpt::Auto => Jobserver::FromEnv,
        JobserverOpt::Off => Jobserver::Disabled,
    };
    Runtime::builder()
        .mode(opts.mode)
        .threads(opts.jobs)
        .jobserver(jobserver)
}

/// Builds the runtime described by `opts`.
pub fn build_runtime(opts: &RunOpts) -> anyhow::Result<Runtime> {
    runtime_builder(opts)
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")).into())
}
