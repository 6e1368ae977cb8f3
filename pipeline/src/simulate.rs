//! `weft simulate TRACE --workers 1,2,4 [--mode fibers,threads]`: replays a
//! recorded run (a `--trace` file) on `P` virtual workers and predicts its
//! wall time.
//!
//! # The model
//!
//! Every recorded execution becomes a *program* on its home logical strand:
//! its self time, cut into work steps at the points where it read other
//! queries (the self time it had used before each read is recorded), and
//! its forks (`join`, `par_for_each`), whose children are programs of their
//! own (the reads made in the forked tasks). Time outside providers is not
//! modelled: the simulated workers are ideal.
//!
//! The simulated runtime does what the real one does:
//! - a read of an execution that has not started computes it inline, on
//!   the reader's stack (a miss); of a finished one, costs nothing (a hit);
//!   of one running on another stack, waits;
//! - a fork runs its first child inline and offers the others on the
//!   worker's deque; idle workers take work from their own deque (newest
//!   first), then steal (oldest first); after its inline child the forking
//!   stack runs the offered children nobody took, then waits for the rest;
//! - waiting in **fibers** mode suspends the stack and frees its worker
//!   (the stack resumes later on the same worker); in **threads** mode the
//!   worker stays blocked until the wait ends.
//!
//! The scheduler is greedy: a worker never idles while it could take work.
//! At `P = 1` the prediction is the work `T1`; no prediction is below the
//! span `T∞`.

mod machine;

pub use machine::Simulation;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::Value;
use weft_queries::profile::{
    intern_query_name, ExecRecord, ForkRecord, Profile, ReadKind, ReadRecord, WaitRecord,
    WorkerStats,
};

use crate::cli::UsageError;

/// Arguments of `weft simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// A trace written by `weft analyze|synth --trace FILE`.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
    /// Worker counts to simulate, comma-separated.
    #[arg(
        long,
        value_name = "P,..",
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32"
    )]
    pub workers: Vec<usize>,
    /// Modes to simulate, comma-separated: fibers (a wait frees the worker),
    /// threads (a wait blocks it).
    #[arg(
        long,
        value_name = "MODE,..",
        value_delimiter = ',',
        default_value = "fibers,threads"
    )]
    pub mode: Vec<SimMode>,
}

/// How a simulated wait treats its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimMode {
    /// The waiting stack suspends; its worker runs other work.
    Fibers,
    /// The waiting thread blocks; its worker is lost until the wait ends.
    Threads,
}

impl std::fmt::Display for SimMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimMode::Fibers => "fibers",
            SimMode::Threads => "threads",
        })
    }
}

/// Runs `weft simulate`: prints the predicted wall time and speedup per
/// mode and worker count on stdout, the lower bound `max(T1/P, T∞)`, and
/// on the row of the recorded mode and worker count, the measured wall time.
///
/// # Errors
///
/// A usage error when the trace cannot be read or has no `"weft"` profile.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.trace)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", args.trace.display())))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{} is not JSON: {e}", args.trace.display())))?;
    let profile = profile_from_trace(&json)
        .map_err(|e| UsageError(format!("{}: {e:#}", args.trace.display())))?;
    if args.workers.contains(&0) {
        bail!(UsageError(
            "--workers: every count must be at least 1".into()
        ));
    }
    if let Some(n) = args.workers.iter().find(|&&n| n > crate::cli::MAX_JOBS) {
        bail!(UsageError(format!(
            "--workers: {n} is more than the maximum of {}",
            crate::cli::MAX_JOBS
        )));
    }
    print!("{}", report(&profile, &args.workers, &args.mode));
    Ok(())
}

/// The `weft simulate` report for `profile`.
pub fn report(profile: &Profile, workers: &[usize], modes: &[SimMode]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let ms = |ns: u64| ns as f64 / 1e6;
    let _ = writeln!(
        out,
        "recorded: {} mode, {} worker{}, {} executions, wall {:.3} ms",
        profile.mode,
        profile.workers,
        if profile.workers == 1 { "" } else { "s" },
        profile.execs.len(),
        ms(profile.wall_ns)
    );
    let _ = writeln!(
        out,
        "work T1 {:.3} ms, span T∞ {:.3} ms, parallelism {:.2}",
        ms(profile.work()),
        ms(profile.span()),
        profile.parallelism()
    );
    let _ = writeln!(
        out,
        "{:<8} {:>4} {:>14} {:>8} {:>16} {:>12}",
        "mode", "P", "predicted ms", "speedup", "bound ms", "measured ms"
    );
    let sim = Simulation::new(profile);
    for &mode in modes {
        let base = sim.run(1, mode).max(1);
        for &p in workers {
            let t = sim.run(p, mode);
            // The recorded run itself, on its row.
            let measured = if mode.to_string() == profile.mode && p == profile.workers {
                format!("{:.3}", ms(profile.wall_ns))
            } else {
                "-".to_owned()
            };
            let _ = writeln!(
                out,
                "{:<8} {:>4} {:>14.3} {:>7.2}x {:>16.3} {:>12}",
                mode,
                p,
                ms(t),
                base as f64 / t.max(1) as f64,
                ms(profile.brent_bound(p)),
                measured
            );
        }
    }
    out
}

/// Reads the profile embedded in a `--trace` file (its `"weft"` object).
///
/// # Errors
///
/// When the object is missing or malformed.
pub fn profile_from_trace(json: &Value) -> anyhow::Result<Profile> {
    let w = json
        .get("weft")
        .context("no \"weft\" object: not a trace written by weft --trace")?;
    let u = |v: &Value, k: &str| -> anyhow::Result<u64> {
        v.get(k)
            .and_then(Value::as_u64)
            .with_context(|| format!("missing `{k}`"))
    };
    let ou = |v: &Value| v.as_u64();
    let read = |r: &Value| -> anyhow::Result<ReadRecord> {
        let a = r.as_array().context("a read is not an array")?;
        Ok(ReadRecord {
            target: a.first().and_then(Value::as_u64).context("read target")?,
            kind: a
                .get(1)
                .and_then(Value::as_str)
                .and_then(ReadKind::parse)
                .context("read kind")?,
            strand: a.get(2).and_then(Value::as_u64).context("read strand")?,
            at_ns: a.get(3).and_then(Value::as_u64).context("read time")?,
            self_before_ns: a.get(4).and_then(ou),
        })
    };
    let arr = |v: &Value, k: &str| -> anyhow::Result<Vec<Value>> {
        Ok(v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    };
    let mut execs = Vec::new();
    for e in arr(w, "execs")? {
        let waits = arr(&e, "waits")?
            .iter()
            .map(|x| {
                let a = x.as_array().context("a wait is not an array")?;
                Ok(WaitRecord {
                    on_exec: a.first().and_then(Value::as_u64).context("wait target")?,
                    start_ns: a.get(1).and_then(Value::as_u64).context("wait start")?,
                    end_ns: a.get(2).and_then(Value::as_u64).context("wait end")?,
                    worker: a.get(3).and_then(ou).map(|w| w as usize),
                    blocking: a.get(4).and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        execs.push(ExecRecord {
            exec: u(&e, "exec")?,
            query: intern_query_name(
                e.get("query")
                    .and_then(Value::as_str)
                    .context("missing `query`")?,
            ),
            key: e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            worker: e.get("worker").and_then(ou).map(|w| w as usize),
            strand: u(&e, "strand")?,
            start_ns: u(&e, "start_ns")?,
            end_ns: u(&e, "end_ns")?,
            self_ns: u(&e, "self_ns")?,
            parent: e.get("parent").and_then(ou),
            reads: arr(&e, "reads")?
                .iter()
                .map(read)
                .collect::<anyhow::Result<_>>()?,
            waits,
        });
    }
    let forks = arr(w, "forks")?
        .iter()
        .filter_map(|f| {
            let a = f.as_array()?;
            Some(ForkRecord {
                parent: a.first()?.as_u64()?,
                group: a.get(1)?.as_u64()?,
                child: a.get(2)?.as_u64()?,
                at_ns: a.get(3)?.as_u64()?,
            })
        })
        .collect();
    let hits: BTreeMap<&'static str, u64> = w
        .get("hits")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((intern_query_name(k), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let worker_stats = arr(w, "worker_stats")?
        .iter()
        .map(|s| WorkerStats {
            worker: s.get("worker").and_then(ou).unwrap_or(0) as usize,
            busy_ns: s.get("busy_ns").and_then(ou).unwrap_or(0),
            waiting_ns: s.get("waiting_ns").and_then(ou).unwrap_or(0),
            idle_ns: s.get("idle_ns").and_then(ou).unwrap_or(0),
            executions: s.get("executions").and_then(ou).unwrap_or(0),
            steals: s.get("steals").and_then(ou).unwrap_or(0),
            suspends: s.get("suspends").and_then(ou).unwrap_or(0),
            resumes: s.get("resumes").and_then(ou).unwrap_or(0),
            parks: s.get("parks").and_then(ou).unwrap_or(0),
        })
        .collect();
    Ok(Profile {
        mode: w
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned(),
        workers: u(w, "workers")? as usize,
        start_ns: u(w, "start_ns")?,
        wall_ns: u(w, "wall_ns")?,
        execs,
        roots: arr(w, "roots")?
            .iter()
            .map(read)
            .collect::<anyhow::Result<_>>()?,
        hits,
        forks,
        worker_stats,
        runtime_events: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: u64, strand: u64, self_ns: u64, reads: &[(u64, u64)]) -> ExecRecord {
        ExecRecord {
            exec: id,
            query: "q",
            key: String::new(),
            worker: Some(0),
            strand,
            start_ns: 0,
            end_ns: 1_000_000,
            self_ns,
            parent: None,
            reads: reads
                .iter()
                .map(|&(t, s)| ReadRecord {
                    target: t,
                    kind: ReadKind::Computed,
                    strand: s,
                    at_ns: t,
                    self_before_ns: None,
                })
                .collect(),
            waits: Vec::new(),
        }
    }

    /// Top level forks two strands; each reads one leaf of 100 ns; leaf 3
    /// reads the shared 1 (50 ns) first.
    fn forked() -> Profile {
        let mut p = Profile {
            mode: "serial".into(),
            workers: 1,
            execs: vec![
                exec(1, 10, 50, &[]),
                exec(2, 11, 100, &[(1, 11)]),
                exec(3, 12, 100, &[(1, 12)]),
            ],
            ..Profile::default()
        };
        p.execs[0].strand = 11;
        for (child, at) in [(11, 1), (12, 2)] {
            p.forks.push(ForkRecord {
                parent: 5,
                group: 7,
                child,
                at_ns: at,
            });
        }
        p.roots = vec![
            ReadRecord {
                target: 2,
                kind: ReadKind::Computed,
                strand: 11,
                at_ns: 3,
                self_before_ns: None,
            },
            ReadRecord {
                target: 3,
                kind: ReadKind::Computed,
                strand: 12,
                at_ns: 4,
                self_before_ns: None,
            },
        ];
        p
    }

    fn read(target: u64, strand: u64, at_ns: u64, self_before_ns: Option<u64>) -> ReadRecord {
        ReadRecord {
            target,
            kind: ReadKind::Computed,
            strand,
            at_ns,
            self_before_ns,
        }
    }

    /// The top level forks A (computes the slow Q, 100 ns), C (independent,
    /// 100 ns) and B (reads X: 10 ns of work, then Q).
    ///
    /// ```text
    /// fibers   W0: Q(A)--------|        W1: X~wait  C-------| X
    /// threads  W0: Q(A)--------| C----  W1: X~blocked-------| X
    /// ```
    #[test]
    fn threads_lose_the_blocked_worker() {
        let mut p = Profile {
            mode: "serial".into(),
            workers: 1,
            execs: vec![
                exec(1, 21, 100, &[]),
                exec(2, 22, 10, &[]),
                exec(3, 23, 100, &[]),
            ],
            ..Profile::default()
        };
        p.execs[1].reads = vec![read(1, 22, 500, Some(10))];
        for (child, at) in [(31, 1), (32, 2), (33, 3)] {
            p.forks.push(ForkRecord {
                parent: 5,
                group: 7,
                child,
                at_ns: at,
            });
        }
        p.roots = vec![
            read(1, 31, 10, None),
            read(3, 32, 20, None),
            read(2, 33, 30, None),
        ];
        let sim = Simulation::new(&p);
        assert_eq!(sim.run(1, SimMode::Fibers), 210);
        assert_eq!(sim.run(2, SimMode::Fibers), 110);
        assert_eq!(sim.run(2, SimMode::Threads), 200);
    }

    #[test]
    fn one_worker_predicts_the_work() {
        let p = forked();
        let sim = Simulation::new(&p);
        assert_eq!(sim.run(1, SimMode::Fibers), 250);
        assert_eq!(sim.run(1, SimMode::Threads), 250);
    }

    #[test]
    fn two_workers_overlap_and_fibers_free_the_waiter() {
        let p = forked();
        let sim = Simulation::new(&p);
        // Worker 0 runs 2 (needs 1: computes it inline, 50, then 100);
        // worker 1 steals 3, which waits for 1 until 50, then runs 100.
        assert_eq!(sim.run(2, SimMode::Fibers), 150);
        assert_eq!(sim.run(2, SimMode::Threads), 150);
        assert_eq!(sim.run(8, SimMode::Fibers), 150);
    }
}
