//! The simulated machine of `weft simulate`: programs built from a recorded
//! profile (work steps, reads, forks), and `P` virtual workers that run them
//! greedily, in fibers mode (a wait frees the worker) or threads mode (a
//! wait blocks it). See the parent module for the model.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};

use weft_queries::profile::{Profile, ReadRecord};

use super::SimMode;

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
    forks_by_parent: ForksByParent,
    fork_parent: HashMap<u64, u64>,
    /// Per strand: its executions, by start time (the profile's order).
    execs_by_home: HashMap<u64, Vec<usize>>,
    /// Per strand: pre- and post-order numbers in the fork tree, so that
    /// "forked from, directly or not" is two comparisons.
    tour: HashMap<u64, (u32, u32)>,
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
        // Each strand's fork groups by time (ties: recorded order), with
        // their index in that order kept for the tie-break of `strand_prog`.
        for groups in forks_by_parent.values_mut() {
            groups.sort_by_key(|g| g.2);
        }
        let mut execs_by_home: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, e) in p.execs.iter().enumerate() {
            execs_by_home.entry(e.strand).or_default().push(i);
        }
        for v in execs_by_home.values_mut() {
            v.sort_by_key(|&i| (p.execs[i].start_ns, p.execs[i].exec));
        }
        let tour = fork_tour(&forks_by_parent, &fork_parent);
        Builder {
            p,
            index,
            forks_by_parent,
            fork_parent,
            execs_by_home,
            tour,
            progs: Vec::new(),
        }
    }

    /// Whether `s` is `home` or was forked from it, directly or not.
    fn forked_from(&self, s: u64, home: u64) -> bool {
        if s == home {
            return true;
        }
        match (self.tour.get(&s), self.tour.get(&home)) {
            (Some(&(pre, post)), Some(&(hpre, hpost))) => hpre < pre && post <= hpost,
            _ => false,
        }
    }

    /// The execution (or top level, `None`) that owns what happens on
    /// logical strand `strand` at time `t`.
    fn owner(&self, strand: u64, t: u64) -> Option<usize> {
        let mut s = strand;
        for _ in 0..10_000 {
            let inner = self
                .execs_by_home
                .get(&s)
                .and_then(|v| self.innermost(v, t));
            if inner.is_some() {
                return inner;
            }
            s = *self.fork_parent.get(&s)?;
        }
        None
    }

    /// Among the executions `v` of one strand (by start), the innermost one
    /// running at `t`: the latest started, the shortest of those. They nest
    /// (one stack), so the answer is the last one started by `t` or one of
    /// its callers on the strand; a linear scan is the fallback.
    fn innermost(&self, v: &[usize], t: u64) -> Option<usize> {
        let e = &self.p.execs;
        let contains = |i: usize| e[i].start_ns <= t && t <= e[i].end_ns;
        let best = |a: usize, b: usize| {
            if (e[a].start_ns, Reverse(e[a].end_ns)) >= (e[b].start_ns, Reverse(e[b].end_ns)) {
                a
            } else {
                b
            }
        };
        let n = v.partition_point(|&i| e[i].start_ns <= t);
        let last = *v[..n].last()?;
        // Executions that started at the same time as the last one.
        let same = v[..n]
            .iter()
            .rev()
            .take_while(|&&i| e[i].start_ns == e[last].start_ns)
            .copied()
            .filter(|&i| contains(i))
            .reduce(best);
        if same.is_some() {
            return same;
        }
        let mut at = last;
        for _ in 0..10_000 {
            let Some(&parent) = e[at].parent.and_then(|id| self.index.get(&id)) else {
                break;
            };
            if e[parent].strand != e[last].strand {
                break;
            }
            if contains(parent) {
                // Any execution of the strand that contains `t` and started
                // later would be a caller of `last` below `parent`: none.
                return v[..n]
                    .iter()
                    .copied()
                    .filter(|&i| e[i].start_ns == e[parent].start_ns && contains(i))
                    .reduce(best);
            }
            at = parent;
        }
        v[..n].iter().copied().filter(|&i| contains(i)).reduce(best)
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
        by_strand: &HashMap<u64, Vec<usize>>,
        home: bool,
        extra: Option<(u64, Step)>,
    ) -> usize {
        // (time, tie, step) items, and (time, progress) for self time.
        let mut items: Vec<(u64, usize, Step)> = Vec::new();
        if let Some((at, step)) = extra {
            items.push((at, usize::MAX, step));
        }
        let mut known: Vec<(u64, u64)> = Vec::new();
        let on_strand = by_strand.get(&strand).map_or(&[][..], Vec::as_slice);
        for &k in on_strand {
            let r = &reads[k];
            if let Some(&t) = self.index.get(&r.target) {
                items.push((r.at_ns, k, Step::Read(t)));
                if let Some(s) = r.self_before_ns {
                    known.push((r.at_ns, s));
                }
            }
        }
        // The strand's fork groups in the owner's time window (all of them
        // at the top level), those that the owner made.
        let window: Vec<(usize, Vec<u64>, u64)> = {
            let groups = self
                .forks_by_parent
                .get(&strand)
                .map_or(&[][..], Vec::as_slice);
            let (lo, hi) = match owner {
                Some(i) => {
                    let (a, b) = (self.p.execs[i].start_ns, self.p.execs[i].end_ns);
                    (
                        groups.partition_point(|g| g.2 < a),
                        groups.partition_point(|g| g.2 <= b),
                    )
                }
                None => (0, groups.len()),
            };
            (lo..hi.max(lo))
                .filter(|&g| self.owner(strand, groups[g].2) == owner)
                .map(|g| (g, groups[g].1.clone(), groups[g].2))
                .collect()
        };
        for (g, children, at) in window {
            let kids = children
                .into_iter()
                .map(|c| self.strand_prog(c, owner, reads, by_strand, false, None))
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
            let n = known.partition_point(|(at, _)| *at <= t);
            n.checked_sub(1).map_or(0, |i| known[i].1).min(e.self_ns)
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

    fn exec_prog(&mut self, i: usize) -> usize {
        let e = &self.p.execs[i];
        let (home, reads) = (e.strand, e.reads.clone());
        let by_strand = reads_by_strand(&reads);
        // Reads on strands that no recorded fork leads to (a trace without
        // fork events) run as forked children, forked at their first read.
        let mut stray: BTreeMap<u64, u64> = BTreeMap::new();
        for r in reads.iter().filter(|r| !self.forked_from(r.strand, home)) {
            let t = stray.entry(r.strand).or_insert(r.at_ns);
            *t = (*t).min(r.at_ns);
        }
        let extra = match stray.values().min() {
            Some(&first) => {
                let kids = stray
                    .keys()
                    .map(|&s| self.strand_prog(s, Some(i), &reads, &by_strand, false, None))
                    .collect();
                Some((first, Step::Fork(kids)))
            }
            None => None,
        };
        self.strand_prog(home, Some(i), &reads, &by_strand, true, extra)
    }
}

/// The indices of `reads` per strand, in order.
fn reads_by_strand(reads: &[ReadRecord]) -> HashMap<u64, Vec<usize>> {
    let mut by: HashMap<u64, Vec<usize>> = HashMap::new();
    for (k, r) in reads.iter().enumerate() {
        by.entry(r.strand).or_default().push(k);
    }
    by
}

/// Per parent strand: its fork groups as (group, children, time).
type ForksByParent = HashMap<u64, Vec<(u64, Vec<u64>, u64)>>;

/// Pre- and post-order numbers of every strand of the fork tree
/// (iterative: fork trees are as deep as the query graph).
fn fork_tour(
    forks_by_parent: &ForksByParent,
    fork_parent: &HashMap<u64, u64>,
) -> HashMap<u64, (u32, u32)> {
    let mut roots: Vec<u64> = forks_by_parent
        .keys()
        .copied()
        .filter(|s| !fork_parent.contains_key(s))
        .collect();
    roots.sort_unstable();
    let mut tour: HashMap<u64, (u32, u32)> = HashMap::new();
    let mut clock = 0u32;
    for root in roots {
        // (strand, its children, next child)
        let mut stack: Vec<(u64, Vec<u64>, usize)> = Vec::new();
        let kids = |s: u64| -> Vec<u64> {
            forks_by_parent
                .get(&s)
                .into_iter()
                .flatten()
                .flat_map(|(_, c, _)| c.iter().copied())
                .collect()
        };
        tour.insert(root, (clock, 0));
        clock += 1;
        stack.push((root, kids(root), 0));
        while let Some((s, children, next)) = stack.last_mut() {
            if let Some(&c) = children.get(*next) {
                *next += 1;
                if tour.contains_key(&c) {
                    continue;
                }
                tour.insert(c, (clock, 0));
                clock += 1;
                let grand = kids(c);
                stack.push((c, grand, 0));
            } else {
                let s = *s;
                tour.get_mut(&s).expect("visited").1 = clock;
                stack.pop();
            }
        }
    }
    tour
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
        let roots_by_strand = reads_by_strand(&roots);
        let mut steps: Vec<Step> = by_time
            .into_iter()
            .map(|(_, s)| {
                Step::Fork(vec![b.strand_prog(
                    s,
                    None,
                    &roots,
                    &roots_by_strand,
                    false,
                    None,
                )])
            })
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
