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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
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

/// One step of a simulated program.
#[derive(Debug, Clone)]
enum Step {
    /// Busy for this many ns.
    Work(u64),
    /// Read execution `execs[i]`.
    Read(usize),
    /// Run these programs in parallel, continue when all are done.
    Fork(Vec<usize>),
}

/// A recorded run turned into programs (see the module doc), ready to be
/// simulated at any worker count.
pub struct Simulation {
    /// All programs; `progs[exec_prog[i]]` is execution `i`'s.
    progs: Vec<Vec<Step>>,
    exec_prog: Vec<usize>,
    root: usize,
}

/// Builds the programs of a profile.
struct Builder<'p> {
    p: &'p Profile,
    index: HashMap<u64, usize>,
    /// Logical strand → the fork groups started on it: (group, children, time).
    forks_by_parent: HashMap<u64, Vec<(u64, Vec<u64>, u64)>>,
    fork_parent: HashMap<u64, u64>,
    execs_by_home: HashMap<u64, Vec<usize>>,
    progs: Vec<Vec<Step>>,
}

impl<'p> Builder<'p> {
    fn new(p: &'p Profile) -> Builder<'p> {
        let index = p
            .execs
            .iter()
            .enumerate()
            .map(|(i, e)| (e.exec, i))
            .collect();
        let mut groups: BTreeMap<(u64, u64), (Vec<u64>, u64)> = BTreeMap::new();
        let mut fork_parent = HashMap::new();
        for f in &p.forks {
            let g = groups
                .entry((f.parent, f.group))
                .or_insert((Vec::new(), f.at_ns));
            g.0.push(f.child);
            g.1 = g.1.min(f.at_ns);
            fork_parent.insert(f.child, f.parent);
        }
        let mut forks_by_parent: HashMap<u64, Vec<(u64, Vec<u64>, u64)>> = HashMap::new();
        for ((parent, group), (children, at)) in groups {
            forks_by_parent
                .entry(parent)
                .or_default()
                .push((group, children, at));
        }
        let mut execs_by_home: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, e) in p.execs.iter().enumerate() {
            execs_by_home.entry(e.strand).or_default().push(i);
        }
        Builder {
            p,
            index,
            forks_by_parent,
            fork_parent,
            execs_by_home,
            progs: Vec::new(),
        }
    }

    /// The execution (or top level, `None`) that owns what happens on
    /// logical strand `strand` at time `t`.
    fn owner(&self, strand: u64, t: u64) -> Option<usize> {
        let mut s = strand;
        for _ in 0..10_000 {
            let inner = self.execs_by_home.get(&s).and_then(|v| {
                v.iter()
                    .copied()
                    .filter(|&i| self.p.execs[i].start_ns <= t && t <= self.p.execs[i].end_ns)
                    .max_by_key(|&i| (self.p.execs[i].start_ns, Reverse(self.p.execs[i].end_ns)))
            });
            if inner.is_some() {
                return inner;
            }
            s = *self.fork_parent.get(&s)?;
        }
        None
    }

    fn add(&mut self, steps: Vec<Step>) -> usize {
        self.progs.push(steps);
        self.progs.len() - 1
    }

    /// The program of `owner`'s part of logical strand `strand`; `home`
    /// says whether to place the owner's self time on it.
    fn strand_prog(
        &mut self,
        strand: u64,
        owner: Option<usize>,
        reads: &[ReadRecord],
        home: bool,
        extra: Option<(u64, Step)>,
    ) -> usize {
        // (time, tie, step) items, and (time, progress) for self time.
        let mut items: Vec<(u64, usize, Step)> = Vec::new();
        if let Some((at, step)) = extra {
            items.push((at, usize::MAX, step));
        }
        let mut known: Vec<(u64, u64)> = Vec::new();
        for (k, r) in reads.iter().enumerate() {
            if r.strand != strand {
                continue;
            }
            if let Some(&t) = self.index.get(&r.target) {
                items.push((r.at_ns, k, Step::Read(t)));
                if let Some(s) = r.self_before_ns {
                    known.push((r.at_ns, s));
                }
            }
        }
        let groups = self
            .forks_by_parent
            .get(&strand)
            .cloned()
            .unwrap_or_default();
        for (g, (_, children, at)) in groups.into_iter().enumerate() {
            if self.owner(strand, at) != owner {
                continue;
            }
            let kids = children
                .into_iter()
                .map(|c| self.strand_prog(c, owner, reads, false, None))
                .collect();
            items.push((at, usize::MAX - 1 - g, Step::Fork(kids)));
        }
        items.sort_by_key(|(t, k, _)| (*t, *k));
        if !home {
            return self.add(items.into_iter().map(|(_, _, s)| s).collect());
        }
        let e = &self.p.execs[owner.expect("home strand of an execution")];
        known.sort_unstable();
        let progress = |t: u64| -> u64 {
            known
                .iter()
                .rev()
                .find(|(at, _)| *at <= t)
                .map_or(0, |&(_, s)| s)
                .min(e.self_ns)
        };
        let mut steps = Vec::new();
        let mut done = 0u64;
        for (t, _, step) in items {
            let at = progress(t).max(done);
            if at > done {
                steps.push(Step::Work(at - done));
                done = at;
            }
            steps.push(step);
        }
        if e.self_ns > done {
            steps.push(Step::Work(e.self_ns - done));
        }
        self.add(steps)
    }

    /// Logical strands forked, directly or not, from `strand`.
    fn descendants(&self, strand: u64) -> HashSet<u64> {
        let mut out = HashSet::from([strand]);
        let mut todo = vec![strand];
        while let Some(s) = todo.pop() {
            for (_, kids, _) in self.forks_by_parent.get(&s).into_iter().flatten() {
                for &k in kids {
                    if out.insert(k) {
                        todo.push(k);
                    }
                }
            }
        }
        out
    }

    fn exec_prog(&mut self, i: usize) -> usize {
        let e = &self.p.execs[i];
        let (home, reads) = (e.strand, e.reads.clone());
        // Reads on strands that no recorded fork leads to (a trace without
        // fork events) run as forked children, forked at their first read.
        let reachable = self.descendants(home);
        let mut stray: BTreeMap<u64, u64> = BTreeMap::new();
        for r in reads.iter().filter(|r| !reachable.contains(&r.strand)) {
            let t = stray.entry(r.strand).or_insert(r.at_ns);
            *t = (*t).min(r.at_ns);
        }
        let extra = match stray.values().min() {
            Some(&first) => {
                let kids = stray
                    .keys()
                    .map(|&s| self.strand_prog(s, Some(i), &reads, false, None))
                    .collect();
                Some((first, Step::Fork(kids)))
            }
            None => None,
        };
        self.strand_prog(home, Some(i), &reads, true, extra)
    }
}

impl Simulation {
    /// Turns `profile` into programs.
    pub fn new(profile: &Profile) -> Simulation {
        let mut b = Builder::new(profile);
        let exec_prog: Vec<usize> = (0..profile.execs.len()).map(|i| b.exec_prog(i)).collect();
        // Top level: the root strands (no fork parent) in time order, one
        // after the other.
        let mut root_strands: BTreeMap<u64, u64> = BTreeMap::new();
        for r in &profile.roots {
            let mut s = r.strand;
            while let Some(&p) = b.fork_parent.get(&s) {
                s = p;
            }
            let t = root_strands.entry(s).or_insert(r.at_ns);
            *t = (*t).min(r.at_ns);
        }
        let mut by_time: Vec<(u64, u64)> = root_strands.into_iter().map(|(s, t)| (t, s)).collect();
        by_time.sort_unstable();
        let roots = profile.roots.clone();
        let mut steps: Vec<Step> = by_time
            .into_iter()
            .map(|(_, s)| Step::Fork(vec![b.strand_prog(s, None, &roots, false, None)]))
            .collect();
        // Executions nobody read (a truncated record) still count as work.
        let mut read: HashSet<usize> = HashSet::new();
        for prog in &b.progs {
            for s in prog {
                if let Step::Read(i) = s {
                    read.insert(*i);
                }
            }
        }
        let unread: Vec<usize> = (0..profile.execs.len())
            .filter(|i| !read.contains(i))
            .map(|i| b.add(vec![Step::Read(i)]))
            .collect();
        if !unread.is_empty() {
            steps.push(Step::Fork(unread));
        }
        let root = b.add(steps);
        Simulation {
            progs: b.progs,
            exec_prog,
            root,
        }
    }

    /// The predicted wall time in ns on `p` workers in `mode`.
    pub fn run(&self, p: usize, mode: SimMode) -> u64 {
        Machine::new(self, p.max(1), mode).run()
    }
}

/// The `prog` of a frame that marks a fork's join; its `pc` is the join.
const JOIN_MARK: usize = usize::MAX;

/// A frame of a simulated stack: a program and where it is.
struct Frame {
    prog: usize,
    pc: usize,
    /// The execution this frame computes (marked done when it returns).
    exec: Option<usize>,
    /// The fork child this frame is (the join to count down when it returns).
    join: Option<usize>,
}

struct Stack {
    frames: Vec<Frame>,
    worker: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExecState {
    NotStarted,
    Running(usize),
    Done,
}

struct Join {
    remaining: usize,
    /// The forking stack, once it waits for the join.
    waiter: Option<usize>,
    /// Children offered on a deque and not taken yet: (prog).
    offered: Vec<usize>,
}

/// A task on a deque: a fork child (program, join).
#[derive(Clone, Copy)]
struct Offered {
    prog: usize,
    join: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Idle,
    /// Running a stack; an event is due when its work step ends.
    Busy,
    /// Threads mode: blocked in a wait of this stack.
    Blocked(usize),
}

struct Machine<'s> {
    sim: &'s Simulation,
    mode: SimMode,
    now: u64,
    stacks: Vec<Stack>,
    execs: Vec<ExecState>,
    exec_waiters: Vec<Vec<usize>>,
    joins: Vec<Join>,
    workers: Vec<WorkerState>,
    deques: Vec<VecDeque<Offered>>,
    mailboxes: Vec<VecDeque<usize>>,
    /// Which stack a busy worker runs.
    running: Vec<Option<usize>>,
    events: BinaryHeap<Reverse<(u64, u64, usize)>>,
    seq: u64,
    injector: VecDeque<usize>,
    finished: bool,
}

impl<'s> Machine<'s> {
    fn new(sim: &'s Simulation, p: usize, mode: SimMode) -> Machine<'s> {
        let n = sim.exec_prog.len();
        Machine {
            sim,
            mode,
            now: 0,
            stacks: Vec::new(),
            execs: vec![ExecState::NotStarted; n],
            exec_waiters: vec![Vec::new(); n],
            joins: Vec::new(),
            workers: vec![WorkerState::Idle; p],
            deques: vec![VecDeque::new(); p],
            mailboxes: vec![VecDeque::new(); p],
            running: vec![None; p],
            events: BinaryHeap::new(),
            seq: 0,
            injector: VecDeque::from([sim.root]),
            finished: false,
        }
    }

    fn run(mut self) -> u64 {
        loop {
            self.dispatch_idle();
            if self.finished {
                return self.now;
            }
            let Some(Reverse((t, _, w))) = self.events.pop() else {
                // Nothing runs and nothing is due: a wait that can never end
                // (only around a broken cycle). Stop here.
                return self.now;
            };
            self.now = t;
            if let Some(s) = self.running[w] {
                self.step(w, s);
            }
        }
    }

    fn schedule(&mut self, w: usize, at: u64) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, w)));
    }

    /// Gives every idle worker something to run, if there is anything.
    fn dispatch_idle(&mut self) {
        loop {
            let mut progress = false;
            for w in 0..self.workers.len() {
                if self.workers[w] != WorkerState::Idle {
                    continue;
                }
                if let Some(s) = self.mailboxes[w].pop_front() {
                    self.start_running(w, s);
                    progress = true;
                    continue;
                }
                let task = self.deques[w].pop_back().or_else(|| {
                    if let Some(prog) = self.injector.pop_front() {
                        return Some(Offered {
                            prog,
                            join: usize::MAX,
                        });
                    }
                    let n = self.deques.len();
                    (1..n)
                        .map(|k| (w + k) % n)
                        .find_map(|v| self.deques[v].pop_front())
                });
                if let Some(t) = task {
                    if t.join != usize::MAX {
                        let j = &mut self.joins[t.join];
                        if let Some(pos) = j.offered.iter().position(|&p| p == t.prog) {
                            j.offered.swap_remove(pos);
                        }
                    }
                    let s = self.stacks.len();
                    self.stacks.push(Stack {
                        frames: vec![Frame {
                            prog: t.prog,
                            pc: 0,
                            exec: None,
                            join: (t.join != usize::MAX).then_some(t.join),
                        }],
                        worker: w,
                    });
                    self.start_running(w, s);
                    progress = true;
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn start_running(&mut self, w: usize, s: usize) {
        self.workers[w] = WorkerState::Busy;
        self.running[w] = Some(s);
        self.schedule(w, self.now);
    }

    /// Runs stack `s` on worker `w` until it works, waits or finishes.
    fn step(&mut self, w: usize, s: usize) {
        let sim = self.sim;
        loop {
            let Some(top) = self.stacks[s].frames.last() else {
                self.release(w);
                return;
            };
            let (prog, pc) = (top.prog, top.pc);
            if prog == JOIN_MARK {
                // After a fork's inline child: claim a child nobody took, or
                // wait for the rest.
                let j = pc;
                if let Some(k) = self.joins[j].offered.pop() {
                    if let Some(pos) = self.deques[w]
                        .iter()
                        .position(|o| o.prog == k && o.join == j)
                    {
                        self.deques[w].remove(pos);
                    }
                    self.push_frame(s, k, None, Some(j));
                    continue;
                }
                if self.joins[j].remaining == 0 {
                    self.stacks[s].frames.pop();
                    continue;
                }
                self.joins[j].waiter = Some(s);
                self.wait(w, s);
                return;
            }
            let steps = &sim.progs[prog];
            if pc >= steps.len() {
                let frame = self.stacks[s].frames.pop().expect("frame");
                if let Some(e) = frame.exec {
                    self.execs[e] = ExecState::Done;
                    for waiter in std::mem::take(&mut self.exec_waiters[e]) {
                        self.wake(waiter);
                    }
                }
                if let Some(j) = frame.join {
                    self.joins[j].remaining -= 1;
                    if self.joins[j].remaining == 0 {
                        if let Some(waiter) = self.joins[j].waiter.take() {
                            self.wake(waiter);
                        }
                    }
                }
                if s == 0 && self.stacks[s].frames.is_empty() {
                    self.finished = true;
                }
                continue;
            }
            self.stacks[s].frames.last_mut().expect("frame").pc += 1;
            match &steps[pc] {
                Step::Work(ns) => {
                    self.schedule(w, self.now + ns);
                    return;
                }
                Step::Read(e) => {
                    let e = *e;
                    match self.execs[e] {
                        ExecState::Done => {}
                        ExecState::Running(owner) if owner == s => {}
                        ExecState::NotStarted => {
                            self.execs[e] = ExecState::Running(s);
                            self.push_frame(s, sim.exec_prog[e], Some(e), None);
                        }
                        ExecState::Running(_) => {
                            self.exec_waiters[e].push(s);
                            self.wait(w, s);
                            return;
                        }
                    }
                }
                Step::Fork(kids) => {
                    let j = self.joins.len();
                    self.joins.push(Join {
                        remaining: kids.len(),
                        waiter: None,
                        offered: kids.iter().skip(1).rev().copied().collect(),
                    });
                    for &k in kids.iter().skip(1).rev() {
                        self.deques[w].push_back(Offered { prog: k, join: j });
                    }
                    self.stacks[s].frames.push(Frame {
                        prog: JOIN_MARK,
                        pc: j,
                        exec: None,
                        join: None,
                    });
                    if let Some(&first) = kids.first() {
                        self.push_frame(s, first, None, Some(j));
                    }
                }
            }
        }
    }

    fn push_frame(&mut self, s: usize, prog: usize, exec: Option<usize>, join: Option<usize>) {
        self.stacks[s].frames.push(Frame {
            prog,
            pc: 0,
            exec,
            join,
        });
    }

    /// Stack `s` on worker `w` waits: fibers free the worker, threads block it.
    fn wait(&mut self, w: usize, s: usize) {
        match self.mode {
            SimMode::Fibers => self.release(w),
            SimMode::Threads => {
                self.workers[w] = WorkerState::Blocked(s);
                self.running[w] = None;
            }
        }
    }

    fn release(&mut self, w: usize) {
        self.workers[w] = WorkerState::Idle;
        self.running[w] = None;
    }

    /// The wait of stack `s` ended.
    fn wake(&mut self, s: usize) {
        let w = self.stacks[s].worker;
        match self.workers[w] {
            WorkerState::Blocked(b) if b == s => self.start_running(w, s),
            _ => self.mailboxes[w].push_back(s),
        }
    }
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
