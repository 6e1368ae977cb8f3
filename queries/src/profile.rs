//! Profiles: what every query execution did, and what that says about the
//! schedule.
//!
//! The engine records one [`ExecRecord`] per query execution through a
//! [`Recorder`] (`profile/recorder.rs`): its kind and key, its worker, its
//! start and end, its *self time*, the executions it read (cache hits
//! included) and every wait. A [`Profile`] is the finished record of a run,
//! with per-worker utilization from the runtime's events
//! (`weft_runtime::trace`).
//!
//! # Self time
//!
//! Self time is measured on the strand's on-CPU clock (see
//! `weft_runtime::trace`): the wall time between the start and the end of an
//! execution, minus the time its fiber was suspended or its thread blocked
//! (query waits, and `join`/`par_for_each` waits alike), minus the on-CPU
//! time of the executions that ran nested on the same strand (misses
//! computed inline). So the self times of one run add up to the time workers
//! spent inside providers, each instant counted once.
//!
//! # Work, span, parallelism
//!
//! The *dependency DAG* has one node per execution, weighted by its self
//! time, and an edge `R -> E` for every read of `R` by `E`: an execution can
//! only finish after everything it read. Then
//! - work `T1` = the sum of self times ([`Profile::work`]);
//! - span `T∞` = the heaviest path through the DAG ([`Profile::span`]);
//! - parallelism = `T1 / T∞`; with `P` workers no schedule beats
//!   `max(T1/P, T∞)` ([`Profile::brent_bound`]), and a greedy one stays
//!   within `T1/P + T∞` (Brent, Graham);
//! - efficiency = that bound divided by the measured wall time.
//!
//! Outputs: [`Profile::render_table`] (the `--profile` text),
//! [`write_chrome_trace`] (Chrome trace-event JSON for Perfetto and
//! `chrome://tracing`, with the DAG embedded for `weft simulate`) and
//! [`write_svg_timeline`] (a static picture, one row per worker).

use std::collections::BTreeMap;
use std::fmt::Write as _;

mod chrome;
mod recorder;
mod svg;
mod timeline;

pub use chrome::write_chrome_trace;
pub use recorder::{ExecToken, Recorder, WaitToken};
pub use svg::write_svg_timeline;

/// One execution of one query: a provider run from start to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The execution's id (the engine's job id; unique in the process).
    pub exec: u64,
    /// [`Query::NAME`](crate::Query::NAME) of its query kind.
    pub query: &'static str,
    /// `Debug` form of its key.
    pub key: String,
    /// The worker it ran on (`None` outside any pool).
    pub worker: Option<usize>,
    /// The strand (task body or thread) it ran on; see `weft_runtime::trace`.
    pub strand: u64,
    /// Start, in ns of the monotonic clock (`weft_runtime::trace::now_ns`).
    pub start_ns: u64,
    /// End, in ns of the same clock.
    pub end_ns: u64,
    /// Self time in ns (see the module doc).
    pub self_ns: u64,
    /// The execution whose job was current when this one started: the
    /// caller on the same stack, or the query that forked the calling task.
    pub parent: Option<u64>,
    /// What it read, in the order the reads happened.
    pub reads: Vec<ReadRecord>,
    /// Every wait, in order.
    pub waits: Vec<WaitRecord>,
}

/// How a read got its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadKind {
    /// Memoized already: a cache hit.
    Hit,
    /// A miss: the reader's task computed it, on its own stack.
    Computed,
    /// In progress elsewhere: the reader waited for it.
    Waited,
}

impl ReadKind {
    /// `"hit"`, `"computed"` or `"waited"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadKind::Hit => "hit",
            ReadKind::Computed => "computed",
            ReadKind::Waited => "waited",
        }
    }

    /// The inverse of [`ReadKind::as_str`].
    pub fn parse(s: &str) -> Option<ReadKind> {
        match s {
            "hit" => Some(ReadKind::Hit),
            "computed" => Some(ReadKind::Computed),
            "waited" => Some(ReadKind::Waited),
            _ => None,
        }
    }
}

/// One read of a query's value by an execution (or by top-level code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRecord {
    /// The execution that produced the value.
    pub target: u64,
    /// Hit, computed or waited.
    pub kind: ReadKind,
    /// The strand the read was made on: the reader's own strand, or a task
    /// it forked (`par_for_each`, `join`, `scope`).
    pub strand: u64,
    /// When the read was issued, in ns (for a computed read: when the
    /// computation started).
    pub at_ns: u64,
    /// The reader's self time in ns before this read, when the read was made
    /// on the reader's own strand; `None` from a forked task.
    pub self_before_ns: Option<u64>,
}

/// One wait of an execution for another one in progress elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitRecord {
    /// The execution waited for.
    pub on_exec: u64,
    /// Start of the wait, in ns.
    pub start_ns: u64,
    /// End of the wait (the waiter runs again), in ns.
    pub end_ns: u64,
    /// The worker of the waiter.
    pub worker: Option<usize>,
    /// `true` when the thread blocked (threads mode), `false` when the
    /// fiber suspended and its worker was free.
    pub blocking: bool,
}

/// How one worker spent the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// ns running a task (from runtime events), or inside providers (from the
    /// executions, when the runtime recorded nothing, as in serial mode).
    pub busy_ns: u64,
    /// ns not busy while one of its tasks waited (blocked thread, or a
    /// suspended fiber with nothing else to run).
    pub waiting_ns: u64,
    /// ns neither busy nor waiting.
    pub idle_ns: u64,
    /// Query executions that started on it.
    pub executions: u64,
    /// Tasks it stole from other workers.
    pub steals: u64,
    /// Fiber suspends on it.
    pub suspends: u64,
    /// Fiber resumes on it.
    pub resumes: u64,
    /// Times it parked with nothing to do.
    pub parks: u64,
}

/// Per query kind: what [`Profile::kind_stats`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindStats {
    /// The query kind.
    pub query: &'static str,
    /// Executions.
    pub executions: u64,
    /// Cache hits.
    pub hits: u64,
    /// Waits for an execution of this kind in progress elsewhere.
    pub waits: u64,
    /// Sum of (end - start) in ns: nested executions and waits included.
    pub total_ns: u64,
    /// Sum of self times in ns.
    pub self_ns: u64,
}

/// The recorded run: executions, reads, waits, hits and worker statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The runtime mode (`fibers`, `threads`, `serial`).
    pub mode: String,
    /// Number of workers `P` (1 in serial mode).
    pub workers: usize,
    /// Origin of the run, in ns of the monotonic clock.
    pub start_ns: u64,
    /// Measured wall time of the run in ns.
    pub wall_ns: u64,
    /// Every finished execution, by start time.
    pub execs: Vec<ExecRecord>,
    /// Reads made outside any query (`Engine::get`, `Engine::run`).
    pub roots: Vec<ReadRecord>,
    /// Cache hits per query kind.
    pub hits: BTreeMap<&'static str, u64>,
    /// Every fork of a logical strand (`join`, `par_for_each`), by time.
    pub forks: Vec<ForkRecord>,
    /// One entry per worker, index order.
    pub worker_stats: Vec<WorkerStats>,
    /// The runtime's raw events (empty for a profile read back from a file).
    pub runtime_events: Vec<weft_runtime::trace::ThreadEvents>,
}

/// A fork: logical strand `child` started from `parent` (see
/// `weft_runtime::trace::logical_strand`). The children of one `group` may
/// run in parallel; `parent` continues once they all finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkRecord {
    /// The forking logical strand.
    pub parent: u64,
    /// The fork site.
    pub group: u64,
    /// The new logical strand.
    pub child: u64,
    /// When, in ns.
    pub at_ns: u64,
}

/// The fork records in the runtime's `events`, by time.
#[cfg(feature = "recording")]
pub(crate) fn forks_of(events: &[weft_runtime::trace::ThreadEvents]) -> Vec<ForkRecord> {
    let mut forks: Vec<ForkRecord> = events
        .iter()
        .flat_map(|t| t.events.iter())
        .filter_map(|e| match e.event {
            weft_runtime::trace::Event::Fork {
                parent,
                group,
                child,
            } => Some(ForkRecord {
                parent,
                group,
                child,
                at_ns: e.at_ns,
            }),
            _ => None,
        })
        .collect();
    forks.sort_by_key(|f| (f.at_ns, f.child));
    forks
}

impl Profile {
    /// Work `T1`: the sum of all self times, in ns.
    pub fn work(&self) -> u64 {
        self.execs.iter().map(|e| e.self_ns).sum()
    }

    /// Span `T∞`: the heaviest path of the dependency DAG by self time, in ns.
    pub fn span(&self) -> u64 {
        self.critical_path().0
    }

    /// The span and the executions on one heaviest path, first to last.
    ///
    /// Execution `E` finishes at `self(E) + max(finish(R))` over the `R` it
    /// read. Reads of executions that had not finished when `E` did (only
    /// possible around a broken cycle) are ignored, so the walk in end-time
    /// order is acyclic.
    pub fn critical_path(&self) -> (u64, Vec<u64>) {
        let index = self.index();
        let mut order: Vec<usize> = (0..self.execs.len()).collect();
        order.sort_by_key(|&i| (self.execs[i].end_ns, self.execs[i].exec));
        let mut finish = vec![0u64; self.execs.len()];
        let mut via: Vec<Option<usize>> = vec![None; self.execs.len()];
        let mut done = vec![false; self.execs.len()];
        for &i in &order {
            let e = &self.execs[i];
            let mut best: Option<(u64, usize)> = None;
            for r in &e.reads {
                if let Some(&j) = index.get(&r.target) {
                    if j != i && done[j] && best.is_none_or(|(f, _)| finish[j] > f) {
                        best = Some((finish[j], j));
                    }
                }
            }
            finish[i] = e.self_ns + best.map_or(0, |(f, _)| f);
            via[i] = best.map(|(_, j)| j);
            done[i] = true;
        }
        let Some(last) = (0..self.execs.len()).max_by_key(|&i| (finish[i], std::cmp::Reverse(i)))
        else {
            return (0, Vec::new());
        };
        let mut path = vec![self.execs[last].exec];
        let mut at = last;
        while let Some(j) = via[at] {
            path.push(self.execs[j].exec);
            at = j;
        }
        path.reverse();
        (finish[last], path)
    }

    /// Parallelism `T1 / T∞` (0 for an empty profile).
    pub fn parallelism(&self) -> f64 {
        let span = self.span();
        if span == 0 {
            0.0
        } else {
            self.work() as f64 / span as f64
        }
    }

    /// The lower bound `max(T1/P, T∞)` on the wall time with `p` workers, in ns.
    pub fn brent_bound(&self, p: usize) -> u64 {
        (self.work() / p.max(1) as u64).max(self.span())
    }

    /// `brent_bound(workers) / wall_ns`: 1.0 is a perfect schedule.
    pub fn efficiency(&self) -> f64 {
        if self.wall_ns == 0 {
            0.0
        } else {
            self.brent_bound(self.workers) as f64 / self.wall_ns as f64
        }
    }

    /// Execution id → index into `execs`.
    pub fn index(&self) -> rustc_hash::FxHashMap<u64, usize> {
        self.execs
            .iter()
            .enumerate()
            .map(|(i, e)| (e.exec, i))
            .collect()
    }

    /// Per query kind: executions, hits, waits, total and self time, sorted
    /// by self time (largest first, then by name).
    pub fn kind_stats(&self) -> Vec<KindStats> {
        let mut by: BTreeMap<&'static str, KindStats> = BTreeMap::new();
        let index = self.index();
        for e in &self.execs {
            let s = by.entry(e.query).or_insert_with(|| empty_kind(e.query));
            s.executions += 1;
            s.total_ns += e.end_ns.saturating_sub(e.start_ns);
            s.self_ns += e.self_ns;
        }
        for e in &self.execs {
            for w in &e.waits {
                if let Some(&j) = index.get(&w.on_exec) {
                    let q = self.execs[j].query;
                    by.entry(q).or_insert_with(|| empty_kind(q)).waits += 1;
                }
            }
        }
        for r in &self.roots {
            if r.kind == ReadKind::Waited {
                if let Some(&j) = index.get(&r.target) {
                    let q = self.execs[j].query;
                    by.entry(q).or_insert_with(|| empty_kind(q)).waits += 1;
                }
            }
        }
        for (&q, &n) in &self.hits {
            by.entry(q).or_insert_with(|| empty_kind(q)).hits += n;
        }
        let mut out: Vec<KindStats> = by.into_values().collect();
        out.sort_by(|a, b| b.self_ns.cmp(&a.self_ns).then(a.query.cmp(b.query)));
        out
    }

    /// The `--profile` report: the per-kind table, worker utilization, and
    /// work, span, parallelism, bound, wall time and efficiency.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let kinds = self.kind_stats();
        let width = kinds
            .iter()
            .map(|k| k.query.len())
            .max()
            .unwrap_or(5)
            .max(10);
        let work = self.work();
        let _ = writeln!(
            out,
            "weft profile: mode {}, {} worker{}, {} executions",
            self.mode,
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            self.execs.len()
        );
        let _ = writeln!(
            out,
            "{:<width$} {:>10} {:>10} {:>8} {:>12} {:>12} {:>7}",
            "query", "executions", "cache hits", "waits", "total ms", "self ms", "self %"
        );
        for k in &kinds {
            let _ = writeln!(
                out,
                "{:<width$} {:>10} {:>10} {:>8} {:>12} {:>12} {:>6.1}%",
                k.query,
                k.executions,
                k.hits,
                k.waits,
                ms(k.total_ns),
                ms(k.self_ns),
                pct(k.self_ns, work)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>9} {:>7} {:>10} {:>7} {:>9} {:>8}",
            "worker",
            "busy %",
            "waiting %",
            "idle %",
            "executions",
            "steals",
            "suspends",
            "resumes"
        );
        for w in &self.worker_stats {
            let total = w.busy_ns + w.waiting_ns + w.idle_ns;
            let _ = writeln!(
                out,
                "{:<8} {:>6.1}% {:>8.1}% {:>6.1}% {:>10} {:>7} {:>9} {:>8}",
                w.worker,
                pct(w.busy_ns, total),
                pct(w.waiting_ns, total),
                pct(w.idle_ns, total),
                w.executions,
                w.steals,
                w.suspends,
                w.resumes
            );
        }
        let span = self.span();
        let p = self.workers.max(1);
        let _ = writeln!(out);
        let _ = writeln!(out, "work T1 (sum of self times)     {:>12} ms", ms(work));
        let _ = writeln!(out, "span T∞ (critical path)         {:>12} ms", ms(span));
        let _ = writeln!(
            out,
            "parallelism T1/T∞               {:>12.2}",
            self.parallelism()
        );
        let _ = writeln!(
            out,
            "bound max(T1/P, T∞), P = {:<3}   {:>12} ms",
            p,
            ms(self.brent_bound(p))
        );
        let _ = writeln!(
            out,
            "measured wall time              {:>12} ms",
            ms(self.wall_ns)
        );
        let _ = writeln!(
            out,
            "efficiency bound/measured       {:>11.1}%",
            self.efficiency() * 100.0
        );
        out
    }
}

fn empty_kind(query: &'static str) -> KindStats {
    KindStats {
        query,
        executions: 0,
        hits: 0,
        waits: 0,
        total_ns: 0,
        self_ns: 0,
    }
}

/// `ns` as milliseconds with three decimals.
fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Interns a query kind name read back from a trace file: each distinct name
/// is leaked once, so a [`Profile`] built from a file has `'static` names
/// like one recorded in the process.
pub fn intern_query_name(name: &str) -> &'static str {
    use parking_lot::Mutex;
    static NAMES: Mutex<BTreeMap<String, &'static str>> = Mutex::new(BTreeMap::new());
    let mut names = NAMES.lock();
    if let Some(&n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(name.to_owned(), leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An execution with known times and reads (all on worker 0).
    pub(super) fn exec(
        id: u64,
        query: &'static str,
        start: u64,
        end: u64,
        self_ns: u64,
        reads: &[u64],
    ) -> ExecRecord {
        ExecRecord {
            exec: id,
            query,
            key: format!("{id}"),
            worker: Some(0),
            strand: 1,
            start_ns: start,
            end_ns: end,
            self_ns,
            parent: None,
            reads: reads
                .iter()
                .map(|&t| ReadRecord {
                    target: t,
                    kind: ReadKind::Hit,
                    strand: 1,
                    at_ns: start,
                    self_before_ns: None,
                })
                .collect(),
            waits: Vec::new(),
        }
    }

    /// A diamond a -> (b, c) -> d, self times 10, 20, 50, 5:
    /// T1 = 85, T∞ = 10 + 50 + 5 = 65.
    pub(super) fn diamond() -> Profile {
        Profile {
            mode: "fibers".into(),
            workers: 2,
            start_ns: 0,
            wall_ns: 80,
            execs: vec![
                exec(1, "a", 0, 10, 10, &[]),
                exec(2, "b", 10, 30, 20, &[1]),
                exec(3, "c", 10, 60, 50, &[1]),
                exec(4, "d", 60, 80, 5, &[2, 3]),
            ],
            ..Profile::default()
        }
    }

    #[test]
    fn work_span_parallelism_of_a_diamond() {
        let p = diamond();
        assert_eq!(p.work(), 85);
        assert_eq!(p.critical_path(), (65, vec![1, 3, 4]));
        assert!((p.parallelism() - 85.0 / 65.0).abs() < 1e-9);
        assert_eq!(p.brent_bound(1), 85);
        assert_eq!(p.brent_bound(2), 65);
        assert!((p.efficiency() - 65.0 / 80.0).abs() < 1e-9);
    }

    #[test]
    fn kind_stats_sorted_by_self_time() {
        let mut p = diamond();
        p.hits.insert("a", 3);
        let k = p.kind_stats();
        let names: Vec<&str> = k.iter().map(|k| k.query).collect();
        assert_eq!(names, ["c", "b", "a", "d"]);
        assert_eq!(k[2].hits, 3);
        let table = p.render_table();
        assert!(table.contains("parallelism"), "{table}");
        assert!(table.contains("efficiency"), "{table}");
    }

    #[test]
    fn empty_profile_is_zero() {
        let p = Profile::default();
        assert_eq!((p.work(), p.span(), p.brent_bound(4)), (0, 0, 0));
        assert_eq!(p.parallelism(), 0.0);
    }
}
