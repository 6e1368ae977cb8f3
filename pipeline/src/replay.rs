//! `weft replay PROFILE`: rustc's own query graphs, replayed on Weft.
//!
//! `PROFILE` is a rustc self-profile (`.mm_profdata`, also gzipped as
//! `.mm_profdata.gz`), recorded with
//!
//! ```text
//! RUSTFLAGS="-Zself-profile=DIR -Zself-profile-events=default,query-keys,query-cache-hit" \
//!     cargo +nightly check
//! ```
//!
//! (`bench/replay/record.sh` does it for the corpus), or a graph converted
//! from one with `--export`. [`load`] turns the profile into a DAG
//! ([`graph`]): one node per query (name and key text), whose steps are its
//! recorded self time and its reads; [`exec`] runs every node as a Weft
//! query that reads its dependencies as `--policy` says and spins for its
//! self time (times `--scale`).
//!
//! stdout: `checksum: 0x…` (or, with `--format json`, one JSON object of
//! the graph's counts and the checksum), identical in every mode, at every
//! `-j` and under every policy. stderr: one summary line (work `T1`, span
//! `T∞`, wall time against the Brent bound `max(T1/P, T∞)`), and the
//! `--check` lines:
//!
//! - the graph's executions and hits equal the profile's `Query` and
//!   `QueryCacheHit` events (and rustc's own hit counters);
//! - `T1` equals the profile's busy time (its outermost intervals, less the
//!   time blocked on other threads) within 2%;
//! - a serial replay's wall time is within 5% of `T1` (Weft's own cost is
//!   small against rustc's recorded work).
//!
//! What a replay cannot show: the spin reproduces rustc's self CPU time,
//! not its caches, allocations or locks; a serial profile hides what
//! rustc's parallel sections would cost in contention, which is why the
//! `sites` policy exists.

pub mod exec;
pub mod graph;
pub mod load;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use weft_queries::profile::Profile;
use weft_queries::Engine;
use weft_runtime::Mode;

use crate::cli::{RunOpts, UsageError};
use crate::profile_out::Profiling;
use exec::{replay_node, Policy, ReplayDb};
use graph::{ReplayGraph, StepKind};

/// Output format of `weft replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `checksum: 0x…`.
    Text,
    /// One JSON object: crate, policy, counts, work, span, checksum.
    Json,
}

/// Arguments of `weft replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// A rustc self-profile (`.mm_profdata`, or gzipped) or a converted
    /// graph (`--export`).
    #[arg(value_name = "PROFILE")]
    pub input: PathBuf,
    /// Runtime options.
    #[command(flatten)]
    pub run: RunOpts,
    /// How nodes read their dependencies: as recorded (serial), rustc's
    /// parallel loops in parallel (`sites`), or all at once (`dataflow`).
    #[arg(long, value_enum, default_value_t = Policy::Recorded)]
    pub policy: Policy,
    /// Multiply every self time by F (e.g. 0.1 for a quick run).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_scale)]
    pub scale: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the graph in the converted format to FILE and exit (no replay).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Validate the graph against the profile, and a serial replay against
    /// `T1`; exit 1 when a check fails.
    #[arg(long)]
    pub check: bool,
    /// Record the run and predict it with `weft simulate`'s model on P
    /// workers (comma-separated), in fibers and threads mode; printed on
    /// stderr after the summary. Recording slows the run itself down.
    #[arg(long, value_name = "P,..", value_delimiter = ',')]
    pub simulate: Vec<usize>,
    /// List the activities that contain reads, which of them are parallel
    /// sites, and the queries read directly inside each; then exit.
    #[arg(long)]
    pub sites: bool,
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=1e6).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a scale between 0 and 1e6")),
    }
}

/// Reads `path`: a converted graph, a profile, or a gzipped profile.
///
/// # Errors
///
/// A [`UsageError`] when the file cannot be read or is none of the three.
pub fn read_graph(path: &Path) -> anyhow::Result<ReplayGraph> {
    let meta = std::fs::metadata(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(UsageError(format!("{} is not a regular file", path.display())).into());
    }
    let bytes = std::fs::read(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    let usage = |e: anyhow::Error| UsageError(format!("{}: {e:#}", path.display()));
    if ReplayGraph::is_converted(&bytes) {
        return ReplayGraph::import(&bytes).map_err(|e| usage(e).into());
    }
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut raw)
            .map_err(|e| usage(anyhow::Error::new(e).context("gzip stream")))?;
        raw
    } else {
        bytes
    };
    let graph = load::load_profile_bytes(bytes, path).map_err(&usage)?;
    graph.validate().map_err(usage)?;
    Ok(graph)
}

/// The result of one replay.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The root's value.
    pub checksum: u64,
    /// Wall time of the run, ns.
    pub wall_ns: u64,
}

/// Replays `db` once on a runtime built from `opts`: with `outputs`, writes
/// the `--profile`, `--trace` and `--timings` that `opts` asks for; with
/// `record`, also returns the recorded profile (for the simulator).
///
/// # Errors
///
/// When the runtime cannot start, the root query fails, or a profile file
/// cannot be written.
pub fn replay_once(
    db: ReplayDb,
    opts: &RunOpts,
    outputs: bool,
    record: bool,
) -> anyhow::Result<(Outcome, Option<Profile>)> {
    let runtime = crate::cli::build_runtime(opts)?;
    let engine = Engine::new(runtime.clone(), db);
    let mut profiling = outputs.then(|| Profiling::start(&engine, opts));
    if record {
        engine.enable_recording();
    }
    let start = Instant::now();
    let value = engine.get::<replay_node>(0);
    let wall_ns = start.elapsed().as_nanos() as u64;
    if let Some(p) = profiling.as_mut() {
        p.stop();
        p.finish(&engine, opts)?;
    }
    let profile = if record {
        let mut p = engine.profile();
        if let Some(p) = p.as_mut() {
            p.set_wall(0, wall_ns);
        }
        p
    } else {
        None
    };
    drop(engine);
    drop(runtime);
    let checksum = value.map_err(|e| anyhow::anyhow!("replay query failed: {e}"))?;
    Ok((Outcome { checksum, wall_ns }, profile))
}

/// Replays `db` on `runtime` and returns the checksum (for the benches: no
/// output, no profile). The engine is dropped before this returns.
///
/// # Errors
///
/// When the root query fails.
pub fn run_on(runtime: weft_runtime::Runtime, db: ReplayDb) -> anyhow::Result<u64> {
    let engine = Engine::new(runtime, db);
    let value = engine.get::<replay_node>(0);
    drop(engine);
    value.map_err(|e| anyhow::anyhow!("replay query failed: {e}"))
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Writes one line to stderr in one `write`.
fn note(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Runs `weft replay`.
///
/// # Errors
///
/// Usage errors (exit 2) for unreadable or malformed input; other errors
/// (exit 1) when the replay fails or a `--check` does not hold.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    crate::profile_out::check_outputs(&args.run)?;
    let graph = read_graph(&args.input)?;
    if let Some(out) = &args.export {
        graph.export(out)?;
        note(&format!(
            "replay: wrote {} ({} nodes, {} steps)",
            out.display(),
            graph.nodes.len(),
            graph.steps.len()
        ));
        return Ok(());
    }
    if args.sites {
        print!("{}", render_sites(&graph));
        return Ok(());
    }
    let counts = graph.counts();
    let stats = graph.stats.clone();
    let crate_name = graph.crate_name.clone();
    let db = ReplayDb::new(graph, args.policy, args.scale);
    let (t1, tinf) = exec::work_and_span(&db);
    let checks = args.check.then(|| check_graph(db.graph(), args.scale));

    // The serial run of --check, before the measured one.
    let serial = if args.check && args.run.mode != Mode::Serial {
        let mut opts = args.run.clone();
        opts.mode = Mode::Serial;
        let graph = db.graph().clone();
        let db = ReplayDb::new(graph, Policy::Recorded, args.scale);
        Some(replay_once(db, &opts, false, false)?.0)
    } else {
        None
    };
    let workers = if args.run.mode == Mode::Serial {
        1
    } else {
        args.run.jobs
    };
    if let Some(&p) = args
        .simulate
        .iter()
        .find(|&&p| p == 0 || p > crate::cli::MAX_JOBS)
    {
        return Err(UsageError(format!(
            "--simulate: {p} is not a worker count between 1 and {}",
            crate::cli::MAX_JOBS
        ))
        .into());
    }
    let (o, recorded) = replay_once(db, &args.run, true, !args.simulate.is_empty())?;
    let bound = (t1 / workers as u64).max(tinf);
    note(&format!(
        "replay: {crate_name} policy {} {} -j{workers}: {} nodes, {} executions, {} hits; \
         T1 {:.2} ms, T∞ {:.2} ms, parallelism {:.2}; wall {:.2} ms, brent bound {:.2} ms, wall/bound {:.3}",
        args.policy,
        args.run.mode,
        counts.nodes,
        counts.executions,
        counts.hit_reads,
        ms(t1),
        ms(tinf),
        t1 as f64 / tinf.max(1) as f64,
        ms(o.wall_ns),
        ms(bound),
        o.wall_ns as f64 / bound.max(1) as f64,
    ));
    if !args.simulate.is_empty() {
        match recorded {
            Some(profile) => eprint!(
                "{}",
                crate::simulate::report(
                    &profile,
                    &args.simulate,
                    &[
                        crate::simulate::SimMode::Fibers,
                        crate::simulate::SimMode::Threads
                    ]
                )
            ),
            None => note("replay: this build has no `recording` feature: --simulate is ignored"),
        }
    }
    let mut failed = false;
    if let Some(mut checks) = checks {
        let serial_wall = serial.map_or(o.wall_ns, |s| s.wall_ns);
        if let Some(s) = serial {
            anyhow::ensure!(
                s.checksum == o.checksum,
                "the serial replay's checksum differs"
            );
        }
        let ratio = serial_wall as f64 / t1.max(1) as f64;
        checks.push(Check {
            what: format!(
                "serial replay wall {:.2} ms vs T1 {:.2} ms: {:+.2}% (limit 5%)",
                ms(serial_wall),
                ms(t1),
                (ratio - 1.0) * 100.0
            ),
            ok: (ratio - 1.0).abs() <= 0.05,
        });
        for c in &checks {
            note(&format!(
                "check: {} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.what
            ));
            failed |= !c.ok;
        }
    }
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Text => writeln!(stdout, "checksum: {:#018x}", o.checksum)?,
        Format::Json => {
            let v = serde_json::json!({
                "crate": crate_name,
                "policy": args.policy.to_string(),
                "scale": args.scale,
                "nodes": counts.nodes,
                // rustc's executions: the session and thread roots are ours.
                "executions": counts.executions - 1 - u64::from(stats.threads),
                "miss_reads": counts.miss_reads,
                "hit_reads": counts.hit_reads,
                "t1_ns": t1,
                "tinf_ns": tinf,
                "profile": {
                    "query_events": stats.query_events,
                    "hit_events": stats.hit_events,
                    "busy_ns": stats.busy_ns,
                    "threads": stats.threads,
                },
                "checksum": format!("{:#018x}", o.checksum),
            });
            writeln!(stdout, "{v}")?;
        }
    }
    stdout.flush()?;
    anyhow::ensure!(!failed, "replay --check failed");
    Ok(())
}

/// One `--check` line.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was compared, with the figures.
    pub what: String,
    /// Whether it holds.
    pub ok: bool,
}

/// The checks of `graph` against the profile it came from (all but the
/// serial wall time, which needs a run).
pub fn check_graph(graph: &ReplayGraph, scale: f64) -> Vec<Check> {
    let c = graph.counts();
    let s = &graph.stats;
    let threads = u64::from(s.threads);
    let mut out = Vec::new();
    // Every thread root counts one execution, and one miss read by the
    // session root.
    let executions = c.executions - 1 - threads + s.folded_queries;
    out.push(Check {
        what: format!(
            "executions {} (+{} folded into their caller) = Query events {}",
            c.executions - 1 - threads,
            s.folded_queries,
            s.query_events
        ),
        ok: executions == s.query_events,
    });
    let misses = c.miss_reads - threads + s.dropped_misses;
    out.push(Check {
        what: format!(
            "miss reads {} (+{} dropped) = executed Query events {}",
            c.miss_reads - threads,
            s.dropped_misses,
            s.query_events - s.folded_queries
        ),
        ok: misses == s.query_events - s.folded_queries,
    });
    out.push(Check {
        what: format!(
            "hit reads {} (+{} dropped) = QueryCacheHit events {} + QueryBlocked events {}",
            c.hit_reads, s.dropped_hits, s.hit_events, s.blocked_events
        ),
        ok: c.hit_reads + s.dropped_hits == s.hit_events + s.blocked_events,
    });
    out.push(Check {
        what: format!(
            "QueryCacheHit events {} = rustc's hit counters {}",
            s.hit_events, s.hit_counter_total
        ),
        ok: s.hit_events == s.hit_counter_total,
    });
    let dev = c.work_ns as f64 / s.busy_ns.max(1) as f64 - 1.0;
    out.push(Check {
        what: format!(
            "T1 {:.2} ms (unscaled) vs profile busy time {:.2} ms: {:+.3}% (limit 2%); \
             scale {scale}",
            ms(c.work_ns),
            ms(s.busy_ns),
            dev * 100.0
        ),
        ok: dev.abs() <= 0.02,
    });
    out
}

/// The `--sites` listing: every activity that contains reads, whether it
/// is a parallel site, how often it ran, and the queries read directly in
/// it (most read first).
pub fn render_sites(graph: &ReplayGraph) -> String {
    use std::collections::BTreeMap;
    #[derive(Default)]
    struct Site {
        instances: u64,
        reads: BTreeMap<String, u64>,
    }
    let mut sites: BTreeMap<&str, Site> = BTreeMap::new();
    for id in 0..graph.nodes.len() as u32 {
        let mut open: Vec<&str> = Vec::new();
        for s in graph.steps_of(id) {
            match s.kind() {
                StepKind::Begin(name) => {
                    let name = graph.names[name as usize].as_str();
                    sites.entry(name).or_default().instances += 1;
                    open.push(name);
                }
                StepKind::End => {
                    open.pop();
                }
                StepKind::Read { node, .. } => {
                    if let Some(&site) = open.last() {
                        let q = graph.name_of(node).to_owned();
                        *sites.entry(site).or_default().reads.entry(q).or_default() += 1;
                    }
                }
                StepKind::Work(_) => {}
            }
        }
    }
    let mut out = String::new();
    for (name, site) in &sites {
        let mark = if exec::SITE_ACTIVITIES.contains(name) {
            "site"
        } else {
            "    "
        };
        let mut reads: Vec<_> = site.reads.iter().collect();
        reads.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = reads
            .iter()
            .take(8)
            .map(|(q, n)| format!("{q} {n}"))
            .collect();
        out.push_str(&format!(
            "{mark} {name} (×{}): {}\n",
            site.instances,
            list.join(", ")
        ));
    }
    out
}
