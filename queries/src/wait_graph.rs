//! The wait-for graph: who waits for whom, across stacks, fibers, workers
//! and parallel children, and the search that finds a dependency cycle in
//! it before anyone waits on one.
//!
//! # Places: strands and depths
//!
//! A *strand* (`weft_runtime::current_strand`) is one sequential execution:
//! a task started from a deque (a fiber, or the base of a worker's stack in
//! threads mode) or a serial `block_on`. What one strand has in progress
//! nests like a stack. The engine keeps a [`StrandRec`] per *run of nested
//! jobs* on a strand: a job started on its parent's strand nests on the
//! parent's record at `depth + 1`; a job started on another strand (a task
//! forked by `join`, `scope` or `par_for_each` inside its parent's
//! provider, stolen or not) roots a new record at depth 0, whose `fork` is
//! that parent, and which is registered in the `children` of the parent's
//! record until the root job finishes. A wait by forked code that has no
//! job of its own (a `par_map` item reading a query directly) gets a
//! temporary record of the same kind. So:
//!
//! - the jobs of one record that are not done are exactly those at depth
//!   `0..=d`, where `d` is the depth of the code running on it;
//! - the **subtree** of a running job `X` — everything `X` cannot finish
//!   before — is: the code of `X`'s record at depth `>= X.depth`, and every
//!   record forked, transitively, from a job of `X`'s record at depth
//!   `>= X.depth`. Parallel children are in it whether they were stolen or
//!   run inline, whether they wait or run.
//! - the **ancestors** of the code running now are the jobs of its own
//!   record up to its depth, then those of its record's `fork`'s record up
//!   to the fork's depth, and so on: the *lineage*, one entry per fork
//!   level, not per job.
//!
//! # Edges, and what a wait publishes
//!
//! A waiting strand has one edge: its record's `waiting` names the owner
//! job of the query it waits for. A job `X` has an edge to every waiter in
//! its subtree (it cannot finish before they do), and through them to their
//! owners. Publishing a wait is one store under one mutex, O(1) whatever the
//! depth of the job chain; the edges through parents and parallel children
//! are never stored, they are read off the records at search time.
//!
//! # The search
//!
//! A requester (the code running now, its current job `L`) that finds the
//! query it wants in progress in job `O` first publishes its wait, then
//! searches: depth-first from `O`, each step from a job `X` to the owner of
//! a waiter in `X`'s subtree, until it reaches an ancestor of `L` (checked
//! against the lineage in O(fork levels)). Each job is expanded once per
//! search. A path found is then **verified**: every job on it is still not
//! done, every waiter still waiting, every fork between a waiter and the
//! job above it still running. Only then is it a cycle; otherwise the
//! search runs again.
//!
//! *No false cycle.* An edge, once gone (its waiter woke, its job finished),
//! never comes back: waiters and jobs are fresh records. The verification
//! runs after the search, so every edge of a verified path was present when
//! the search read it and still is when the verification reads it, hence at
//! the moment the verification began: the path was a cycle then, all at
//! once. A cycle of waits never resolves by itself, so it still is one.
//!
//! *No missed cycle.* A cycle closes when its last edge is published. Every
//! requester publishes before it searches, and a record's `waiting` and
//! `children` are written and read under the record's mutex. Take the last
//! two edges `e1` (requester `R1`) and `e2` (`R2`) published concurrently:
//! if `R1`'s search read `e2`'s record before `R2` wrote it, then `R1` had
//! published `e1` before that read, which precedes `R2`'s write, which
//! precedes `R2`'s search (program order and the mutex's release/acquire):
//! `R2` reads `e1`. At least one of them sees the whole cycle; both may,
//! which is harmless (they report the same frames, `cycle.rs`). Structural
//! edges (a record's registration with its fork's record) are published
//! before the forked code can wait, so they are older than any wait
//! through them. No waiter is skipped by a search, not even one that is on
//! a cycle being broken: it may not wake before the new cycle is broken too.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
// The protocol's locks and flags, model-checked under `--cfg loom`
// (`loom_models.rs`).
use weft_runtime::sync::{yield_now, AtomicBool, Mutex, Ordering};

use crate::cycle::CycleUnwind;
use crate::job::Job;

/// Process-wide record ids; only uniqueness matters.
static NEXT_REC: AtomicU64 = AtomicU64::new(1);

/// One run of nested jobs on one strand (see the module doc).
pub(crate) struct StrandRec {
    id: u64,
    /// The runtime strand id ([`weft_runtime::current_strand`]).
    rid: u64,
    /// The job in whose context this record's code was forked; `None` for
    /// top-level code (nothing can wait on it).
    fork: Option<Arc<Job>>,
    state: Mutex<StrandState>,
}

#[derive(Default)]
struct StrandState {
    /// The wait of the code running on this record, if it waits.
    waiting: Option<Arc<Waiter>>,
    /// Records forked from jobs of this record, by id, until they end.
    children: FxHashMap<u64, Arc<StrandRec>>,
}

impl StrandRec {
    fn new(rid: u64, fork: Option<&Arc<Job>>) -> Arc<StrandRec> {
        let rec = Arc::new(StrandRec {
            // Relaxed: only uniqueness is needed.
            id: NEXT_REC.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rid,
            fork: fork.cloned(),
            state: Mutex::new(StrandState::default()),
        });
        if let Some(fork) = fork {
            // Published before the new record's code can wait (see the
            // module doc: structural edges are older than waits through them).
            let mut st = fork.strand.state.lock();
            st.children.insert(rec.id, rec.clone());
        }
        rec
    }

    /// The place of a job started now by code whose current job is
    /// `parent`: on the parent's record one deeper when this is the
    /// parent's strand, else at the root of a new record.
    pub(crate) fn place_new_job(rid: u64, parent: Option<&Arc<Job>>) -> (Arc<StrandRec>, usize) {
        match parent {
            Some(p) if p.strand.rid == rid => (p.strand.clone(), p.depth + 1),
            Some(p) => (StrandRec::new(rid, Some(p)), 0),
            None => (StrandRec::top_level(rid), 0),
        }
    }

    /// The record of top-level jobs on strand `rid`. Top-level jobs of one
    /// strand run one after another, so they share one record at depth 0
    /// (as the jobs at one depth of any record do over time); it is never
    /// registered anywhere. Cached per thread, for the strand that ran last.
    fn top_level(rid: u64) -> Arc<StrandRec> {
        thread_local! {
            static TOP: std::cell::RefCell<Option<Arc<StrandRec>>> =
                const { std::cell::RefCell::new(None) };
        }
        TOP.with(|top| {
            let mut top = top.borrow_mut();
            match &*top {
                Some(rec) if rec.rid == rid => rec.clone(),
                _ => {
                    let rec = StrandRec::new(rid, None);
                    *top = Some(rec.clone());
                    rec
                }
            }
        })
    }

    /// The record a pooled job record points at (`job.rs`): no code runs
    /// on it and nothing is registered with it.
    pub(crate) fn idle() -> Arc<StrandRec> {
        StrandRec::new(0, None)
    }

    /// The record's code ended (its root job finished, or its temporary
    /// wait is over): off its fork's list.
    pub(crate) fn end(&self) {
        if let Some(fork) = &self.fork {
            fork.strand.state.lock().children.remove(&self.id);
        }
    }
}

/// A piece of code waiting for a query: where it waits, its current job,
/// the owner of the query, and the cycle it must unwind with, if any.
pub(crate) struct Waiter {
    /// The job the waiting code runs for (its task context).
    pub(crate) leaf: Arc<Job>,
    /// The record it waits on: `leaf.strand`, or a temporary record forked
    /// from `leaf` when the code runs on another strand.
    rec: Arc<StrandRec>,
    /// `rec` is temporary: it ends with the wait.
    temp: bool,
    pub(crate) owner: Arc<Job>,
    /// `true` until the wait is withdrawn.
    active: AtomicBool,
    /// Set (once) when the waiter is on a cycle being broken.
    unwind: Mutex<Option<Arc<CycleUnwind>>>,
}

impl Waiter {
    /// Whether the wait is still published.
    fn is_active(&self) -> bool {
        // Acquire: pairs with `withdraw`.
        self.active.load(Ordering::Acquire)
    }

    /// The depth of the waiting code on its record (a temporary record
    /// has no jobs: depth 0, below everything that could be compared).
    fn depth(&self) -> usize {
        if self.temp {
            0
        } else {
            self.leaf.depth
        }
    }

    /// Marks the waiter to unwind with `unwind` when it wakes (first mark
    /// wins).
    pub(crate) fn mark(&self, unwind: &Arc<CycleUnwind>) {
        self.unwind.lock().get_or_insert_with(|| unwind.clone());
    }
}

/// The outcome of [`publish`].
pub(crate) enum Published {
    /// Published: wait, then [`Wait::end`].
    Waiting(Wait),
    /// Waiting would close this cycle (already withdrawn): `path` runs from
    /// the owner to `closing`, an ancestor of the requester.
    Cycle(Path),
}

/// One step of a search path: a job and a waiter in its subtree.
pub(crate) type Step = (Arc<Job>, Arc<Waiter>);

/// A cycle found by [`publish`]: the steps from the owner, each a job and
/// a waiter in its subtree (whose owner is the next step's job), then the
/// ancestor of the requester that the last waiter (or the owner) waits on.
pub(crate) struct Path {
    pub(crate) steps: Vec<Step>,
    pub(crate) closing: Arc<Job>,
    /// The requester's own (withdrawn) waiter: its leaf is the bottom of
    /// the closing segment.
    pub(crate) requester: Arc<Waiter>,
}

/// A published wait. [`Wait::end`] withdraws it when the wait is over;
/// dropping it unended (the waiting stack unwinds: a fiber dropped at
/// shutdown) withdraws it too, so no record outlives its wait.
pub(crate) struct Wait {
    waiter: Option<Arc<Waiter>>,
}

impl Wait {
    /// Withdraws the wait; returns the cycle it was marked to unwind with.
    pub(crate) fn end(mut self) -> Option<Arc<CycleUnwind>> {
        self.waiter.take().and_then(|w| withdraw(&w))
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            withdraw(&w);
        }
    }
}

/// Publishes the wait of the code running now on runtime strand `rid`
/// (current job `leaf`) for a query owned by `owner`, then searches for a
/// cycle through it (see the module doc). Never blocks: it takes one
/// record's mutex at a time, and retries only when the graph changed.
pub(crate) fn publish(rid: u64, leaf: &Arc<Job>, owner: &Arc<Job>) -> Published {
    let (rec, temp) = if leaf.strand.rid == rid {
        (leaf.strand.clone(), false)
    } else {
        (StrandRec::new(rid, Some(leaf)), true)
    };
    let waiter = Arc::new(Waiter {
        leaf: leaf.clone(),
        rec,
        temp,
        owner: owner.clone(),
        active: AtomicBool::new(true),
        unwind: Mutex::new(None),
    });
    {
        let mut st = waiter.rec.state.lock();
        debug_assert!(st.waiting.is_none(), "a strand waits on two things");
        st.waiting = Some(waiter.clone());
    }
    let lineage = Lineage::of(&waiter);
    loop {
        let Some((steps, closing)) = search(owner, &lineage) else {
            return Published::Waiting(Wait {
                waiter: Some(waiter),
            });
        };
        if verify(owner, &steps, &closing) {
            withdraw(&waiter);
            return Published::Cycle(Path {
                steps,
                closing,
                requester: waiter,
            });
        }
        // The graph moved under the search: look again.
        yield_now();
    }
}

/// Withdraws a waiter's edge after its wait ended (or instead of waiting);
/// returns the cycle it was marked to unwind with, if any.
fn withdraw(waiter: &Arc<Waiter>) -> Option<Arc<CycleUnwind>> {
    // Release: a search that sees `false` also sees everything before.
    waiter.active.store(false, Ordering::Release);
    {
        let mut st = waiter.rec.state.lock();
        if st.waiting.as_ref().is_some_and(|w| Arc::ptr_eq(w, waiter)) {
            st.waiting = None;
        }
    }
    if waiter.temp {
        waiter.rec.end();
    }
    waiter.unwind.lock().clone()
}

/// The requester's ancestors, one entry per fork level: a record and the
/// deepest depth on it that is an ancestor.
struct Lineage {
    /// `(record id, max depth)`; a temporary record has no jobs (`None`).
    levels: Vec<(u64, Option<usize>)>,
}

impl Lineage {
    fn of(waiter: &Waiter) -> Lineage {
        let mut levels = Vec::new();
        let mut rec = waiter.rec.clone();
        let mut bound = (!waiter.temp).then_some(waiter.leaf.depth);
        loop {
            levels.push((rec.id, bound));
            match &rec.fork {
                Some(fork) => {
                    bound = Some(fork.depth);
                    rec = fork.strand.clone();
                }
                None => break,
            }
        }
        Lineage { levels }
    }

    /// Whether `job` (not done) is an ancestor-or-self of the requester.
    fn contains(&self, job: &Job) -> bool {
        self.levels
            .iter()
            .any(|&(id, bound)| id == job.strand.id && bound.is_some_and(|b| job.depth <= b))
    }
}

/// Depth-first search from `owner` for an ancestor of the requester;
/// returns the steps taken and the ancestor reached.
fn search(owner: &Arc<Job>, lineage: &Lineage) -> Option<(Vec<Step>, Arc<Job>)> {
    // A finished owner: the wait ends at once. (Its place may be taken by
    // a later job, ancestor or not: a finished job is never compared.)
    if owner.is_done() {
        return None;
    }
    if lineage.contains(owner) {
        return Some((Vec::new(), owner.clone()));
    }
    let mut expanded: FxHashSet<u64> = FxHashSet::default();
    expanded.insert(owner.id);
    // Each frame: a job, the waiters in its subtree, the next one to try.
    let mut stack: Vec<(Arc<Job>, Vec<Arc<Waiter>>, usize)> =
        vec![(owner.clone(), waiters_under(owner), 0)];
    while let Some((_, waiters, next)) = stack.last_mut() {
        let Some(w) = waiters.get(*next).cloned() else {
            stack.pop();
            continue;
        };
        *next += 1;
        let to = &w.owner;
        if to.is_done() {
            continue;
        }
        if lineage.contains(to) {
            let steps = stack
                .iter()
                .map(|(job, waiters, next)| (job.clone(), waiters[next - 1].clone()))
                .collect();
            return Some((steps, to.clone()));
        }
        if expanded.insert(to.id) {
            let under = waiters_under(to);
            stack.push((to.clone(), under, 0));
        }
    }
    None
}

/// The active waiters in the subtree of `job` (see the module doc).
fn waiters_under(job: &Arc<Job>) -> Vec<Arc<Waiter>> {
    let mut out = Vec::new();
    let mut todo: Vec<(Arc<StrandRec>, usize)> = vec![(job.strand.clone(), job.depth)];
    while let Some((rec, min_depth)) = todo.pop() {
        let st = rec.state.lock();
        if let Some(w) = &st.waiting {
            if w.is_active() && w.depth() >= min_depth {
                out.push(w.clone());
            }
        }
        for child in st.children.values() {
            let fork = child.fork.as_ref().expect("a child record has a fork");
            if fork.depth >= min_depth && !fork.is_done() {
                todo.push((child.clone(), 0));
            }
        }
    }
    out
}

/// Whether `waiter` is still waiting inside the subtree of `job`, which is
/// still running: its record, walked up through forks that are still
/// running, reaches `job`'s record at `job`'s depth or deeper.
fn in_subtree(waiter: &Waiter, job: &Job) -> bool {
    if !waiter.is_active() || job.is_done() {
        return false;
    }
    let mut rec = waiter.rec.clone();
    let mut depth = waiter.depth();
    loop {
        if rec.id == job.strand.id {
            return depth >= job.depth;
        }
        let Some(fork) = rec.fork.clone() else {
            return false;
        };
        if fork.is_done() {
            return false;
        }
        depth = fork.depth;
        rec = fork.strand.clone();
    }
}

/// The second pass over a found path (see the module doc).
fn verify(owner: &Arc<Job>, steps: &[Step], closing: &Arc<Job>) -> bool {
    if owner.is_done() || closing.is_done() {
        return false;
    }
    steps
        .iter()
        .all(|(job, w)| in_subtree(w, job) && !w.owner.is_done())
}
