//! The `weft` binary: `weft analyze`, `weft synth`, `weft simulate`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_pipeline::analyze::{self, AnalyzeArgs};
use weft_pipeline::cli::{self, UsageError};
use weft_pipeline::{simulate, synth};

/// A parallel query engine for compiler front-ends, and its workloads.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyze Rust crates (modules, imports, consts, panics) as queries.
    Analyze(AnalyzeArgs),
    /// Run a synthetic query graph of a known shape.
    Synth(synth::SynthArgs),
    /// Replay a rustc self-profile's query graph on Weft.
    Replay(weft_pipeline::replay::ReplayArgs),
    /// Replay a --trace on P virtual workers: predicted wall time and speedup.
    Simulate(simulate::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Take the jobserver's descriptors before anything opens a file, so
    // that the fds named in MAKEFLAGS are still make's (a once-per-process
    // read; it warns once if the environment names a broken jobserver).
    let run = match &cli.command {
        Command::Analyze(args) => Some(&args.run),
        Command::Synth(args) => Some(&args.run),
        Command::Replay(args) => Some(&args.run),
        Command::Simulate(_) => None,
    };
    if run.is_some_and(|r| r.jobserver == cli::JobserverOpt::Auto) {
        weft_runtime::Jobserver::init_from_env();
    }
    let result = match &cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Replay(args) => weft_pipeline::replay::run(args),
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
