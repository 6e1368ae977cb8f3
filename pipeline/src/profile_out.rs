//! `--profile`, `--trace FILE` and `--timings FILE.svg` for the subcommands
//! that run queries.
//!
//! ```text
//! let profiling = Profiling::start(&engine, &args.run);   // before the run
//! engine.run(..);
//! profiling.stop();                                        // right after it
//! // ... print the report ...
//! profiling.finish(&engine, &args.run)?;                  // stderr and files
//! ```
//!
//! Recording is turned on only when one of the three options is given, so
//! a plain run pays one branch per recording hook.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context as _;
use weft_queries::profile::{write_chrome_trace, write_svg_timeline, Profile};
use weft_queries::Engine;
use weft_runtime::trace::now_ns;

use crate::cli::RunOpts;

/// Whether `opts` asks for any profiling output.
pub fn wanted(opts: &RunOpts) -> bool {
    opts.profile || opts.trace.is_some() || opts.timings.is_some()
}

/// The measured window of a run whose profile was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Profiling {
    on: bool,
    start_ns: u64,
    end_ns: Option<u64>,
}

/// Checks, before any work, that the `--trace` and `--timings` files can
/// be written (creating them empty), so that a bad path is a usage error
/// (exit 2) at once, not a failure after the whole run.
///
/// # Errors
///
/// A [`UsageError`](crate::cli::UsageError) naming the file and the OS error.
pub fn check_outputs(opts: &RunOpts) -> Result<(), crate::cli::UsageError> {
    for (what, path) in [("trace", &opts.trace), ("timeline", &opts.timings)] {
        if let Some(path) = path {
            File::create(path).map_err(|e| {
                crate::cli::UsageError(format!(
                    "cannot write the {what} to {}: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(())
}

impl Profiling {
    /// Turns recording on in `engine` if `opts` asks for a profile, a trace
    /// or a timeline, and starts the wall clock of the run.
    pub fn start<D: Send + Sync + 'static>(engine: &Engine<D>, opts: &RunOpts) -> Profiling {
        let on = wanted(opts);
        if on {
            engine.enable_recording();
        }
        Profiling {
            on,
            start_ns: now_ns(),
            end_ns: None,
        }
    }

    /// Ends the measured wall time (call right after the run).
    pub fn stop(&mut self) {
        self.end_ns.get_or_insert_with(now_ns);
    }

    /// The recorded profile with the measured wall time; `None` when no
    /// profiling option was given or recording is compiled out.
    pub fn profile<D: Send + Sync + 'static>(&self, engine: &Engine<D>) -> Option<Profile> {
        if !self.on {
            return None;
        }
        let mut profile = engine.profile()?;
        let end = self.end_ns.unwrap_or_else(now_ns);
        profile.set_wall(self.start_ns, end.saturating_sub(self.start_ns));
        Some(profile)
    }

    /// Prints the `--profile` table to stderr and writes `--trace` and
    /// `--timings`, as `opts` asks.
    ///
    /// # Errors
    ///
    /// When a file cannot be written.
    pub fn finish<D: Send + Sync + 'static>(
        &self,
        engine: &Engine<D>,
        opts: &RunOpts,
    ) -> anyhow::Result<()> {
        if !self.on {
            return Ok(());
        }
        let Some(profile) = self.profile(engine) else {
            eprintln!("weft: this build has no `recording` feature: --profile, --trace and --timings are ignored");
            return Ok(());
        };
        write_outputs(&profile, opts)
    }
}

/// Writes what `opts` asks for from `profile`.
///
/// # Errors
///
/// When a file cannot be written.
pub fn write_outputs(profile: &Profile, opts: &RunOpts) -> anyhow::Result<()> {
    if opts.profile {
        eprint!("{}", profile.render_table());
    }
    if let Some(path) = &opts.trace {
        write_file(path, |f| write_chrome_trace(profile, f))
            .with_context(|| format!("cannot write the trace to {}", path.display()))?;
    }
    if let Some(path) = &opts.timings {
        write_file(path, |f| write_svg_timeline(profile, f))
            .with_context(|| format!("cannot write the timeline to {}", path.display()))?;
    }
    Ok(())
}

fn write_file(
    path: &Path,
    write: impl FnOnce(BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let f = File::create(path)?;
    write(BufWriter::new(f))
}
