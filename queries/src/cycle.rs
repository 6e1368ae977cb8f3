//! Cycle detection across stacks, workers and fibers, and the canonical
//! [`Cycle`] report.
//!
//! # The wait-for graph
//!
//! Nodes are jobs (`job.rs`). A job is *blocked* when some code running for
//! it, or for one of its descendants, waits: a **waiter** is a piece of code
//! (a fiber or a thread) that found a query in progress and is about to wait
//! for it. A waiter records its *leaf* (the job current where it waits) and
//! the *owner* job of the query it waits for. The graph has an edge from
//! every ancestor-or-self `A` of a waiter's leaf to that waiter's owner: `A`
//! cannot finish before the owner does. A job's ancestors include the job
//! that forked the task it runs in, so "a `par_for_each` child asks for the
//! query its parent is computing" is an edge like any other.
//!
//! # Eager detection
//!
//! Before it waits, a requester `R` (current job `leaf`) for a query owned by
//! `O` first *publishes* its edge: it pushes its waiter record onto the
//! `blocked_under` list of every job on `leaf`'s ancestor chain (each list
//! has its own mutex). Then it *searches* for a path from `O` back to an
//! ancestor-or-self of `leaf`: depth-first, following from each job `J` the
//! waiters in `J.blocked_under` to their owners. If found, the requester
//! withdraws its record and does not wait: the path is the cycle. There is
//! no engine-wide lock: waits on different jobs do not contend.
//!
//! *No missed cycle.* A cycle closes when its last edge is added. If two
//! requesters add edges concurrently, each publishes before it searches, and
//! both the publication and the search of a list go through that list's
//! mutex: if `R1`'s search read a list before `R2` published into it, then
//! `R1` had published (earlier in its program order) before `R2`'s search
//! (later in `R2`'s), so `R2` sees `R1`'s edge. At least one of them finds
//! the cycle (both may, which is harmless: they report the same canonical
//! cycle). Same-stack cycles (serial mode, or a query reached again through
//! its own callees) are the special case where `O` itself is an ancestor of
//! `leaf`.
//!
//! *No false cycle.* An edge is withdrawn right after its wait ends, before
//! the waiter's jobs can finish; a finished job has no waiters under it, so
//! a search never passes through a finished job.
//!
//! # Breaking a cycle
//!
//! The cycle's queries are the jobs on the path: for each edge, the jobs
//! from the waiter's leaf up to the job it hangs under (the *segment*), and
//! for the closing edge the jobs from `leaf` up to the ancestor found. The
//! top of each segment is an *entry*. Every job of the cycle is *marked*
//! with a [`CycleUnwind`], and so is each waiter on the path. The requester
//! unwinds; each marked waiter unwinds as soon as it is woken. A marked job
//! publishes its [`Query::recover`](crate::Query::recover) value (or
//! `QueryError::Cycle`) *however its provider ended* — membership decides,
//! not whichever payload reached it, since `par_for_each` may rethrow a
//! lower item's unrelated panic instead of the cycle's unwind. Publishing
//! wakes the next marked waiter; a marked job that is not an entry keeps
//! unwinding with the cycle's payload, and an entry returns its value to
//! its caller. So every job of the cycle finishes, and nobody waits on a
//! cycle forever. A marked waiter is skipped by later searches: it is about
//! to unwind.
//!
//! The frames are rotated to start at the smallest `(query, key)`, so the
//! report, and every `recover` value computed from it, is the same whichever
//! job closed the cycle, in every mode and thread count.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashSet;

use crate::job::Job;

/// One query in a cycle: its name and the `Debug` form of its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CycleFrame {
    /// The query's [`NAME`](crate::Query::NAME).
    pub query: &'static str,
    /// `format!("{:?}", key)`.
    pub key: String,
}

impl fmt::Display for CycleFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.query, self.key)
    }
}

/// A dependency cycle: each frame's query needs the next, the last needs
/// the first. Canonical: rotated to start at the smallest frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cycle {
    /// The queries of the cycle, in dependency order.
    pub frames: Vec<CycleFrame>,
}

impl Cycle {
    /// Builds a cycle from frames in dependency order, in canonical rotation.
    pub fn new(mut frames: Vec<CycleFrame>) -> Cycle {
        if let Some(min) = (0..frames.len()).min_by(|&a, &b| frames[a].cmp(&frames[b])) {
            frames.rotate_left(min);
        }
        Cycle { frames }
    }

    /// The frames, starting at the smallest.
    pub fn frames(&self) -> &[CycleFrame] {
        &self.frames
    }

    /// Whether `query(key)` (by `Debug` form) is part of the cycle.
    pub fn contains(&self, query: &str, key: &str) -> bool {
        self.frames.iter().any(|f| f.query == query && f.key == key)
    }
}

impl fmt::Display for Cycle {
    /// `` `a(1)` -> `b(2)` -> `a(1)` ``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for frame in &self.frames {
            write!(f, "`{frame}` -> ")?;
        }
        match self.frames.first() {
            Some(first) => write!(f, "`{first}`"),
            None => Ok(()),
        }
    }
}

/// The unwind payload that breaks a cycle (see the module doc).
pub(crate) struct CycleUnwind {
    pub(crate) cycle: Cycle,
    /// Ids of the jobs at the top of each segment: they return the value
    /// instead of unwinding further.
    pub(crate) entries: FxHashSet<u64>,
}

/// A piece of code waiting for a query: its current job, the owner of the
/// query it waits for, and the cycle it must unwind with, if any.
pub(crate) struct Waiter {
    leaf: Arc<Job>,
    owner: Arc<Job>,
    /// Set (once) when the waiter is on a cycle being broken.
    unwind: Mutex<Option<Arc<CycleUnwind>>>,
}

/// The outcome of [`register`].
pub(crate) enum Registered {
    /// Registered: wait, then call [`unregister`].
    Waiting(Arc<Waiter>),
    /// Waiting would close a cycle: unwind with this payload instead.
    Cycle(Arc<CycleUnwind>),
}

/// Publishes the edge `leaf -> owner`, then searches for a cycle through it
/// (see the module doc). `leaf` is the requester's current job.
pub(crate) fn register(leaf: &Arc<Job>, owner: &Arc<Job>) -> Registered {
    let waiter = Arc::new(Waiter {
        leaf: leaf.clone(),
        owner: owner.clone(),
        unwind: Mutex::new(None),
    });
    for job in leaf.chain() {
        job.blocked_under.lock().push(waiter.clone());
    }
    match find_cycle(leaf, owner) {
        Some(unwind) => {
            unregister(&waiter);
            Registered::Cycle(unwind)
        }
        None => Registered::Waiting(waiter),
    }
}

/// Withdraws a waiter's edge after its wait ended; returns the cycle payload
/// if the waiter was marked to unwind.
pub(crate) fn unregister(waiter: &Arc<Waiter>) -> Option<Arc<CycleUnwind>> {
    for job in waiter.leaf.chain() {
        let mut under = job.blocked_under.lock();
        // Waits under one job mostly end in the order they began: search
        // from the back.
        if let Some(pos) = under.iter().rposition(|w| Arc::ptr_eq(w, waiter)) {
            under.swap_remove(pos);
        }
    }
    waiter.unwind.lock().clone()
}

/// One step of a search path: a job and a waiter under it.
type Step = (Arc<Job>, Arc<Waiter>);

fn find_cycle(leaf: &Arc<Job>, owner: &Arc<Job>) -> Option<Arc<CycleUnwind>> {
    let ancestors: FxHashSet<u64> = leaf.chain().map(|j| j.id).collect();
    let mut visited = FxHashSet::default();
    let mut path: Vec<Step> = Vec::new();
    let closing = search(owner, &ancestors, &mut visited, &mut path)?;

    let mut frames = Vec::new();
    let mut members = Vec::new();
    let mut entries = FxHashSet::default();
    for (top, w) in &path {
        push_segment(&mut frames, &mut members, &w.leaf, top);
        entries.insert(top.id);
    }
    push_segment(&mut frames, &mut members, leaf, &closing);
    entries.insert(closing.id);
    let unwind = Arc::new(CycleUnwind {
        cycle: Cycle::new(frames),
        entries,
    });
    for job in members {
        job.cycle.lock().get_or_insert_with(|| unwind.clone());
    }
    for (_, w) in &path {
        w.unwind.lock().get_or_insert_with(|| unwind.clone());
    }
    Some(unwind)
}

/// Depth-first search from `job` for an ancestor of the requester; returns
/// that ancestor, with `path` holding the edges taken.
fn search(
    job: &Arc<Job>,
    ancestors: &FxHashSet<u64>,
    visited: &mut FxHashSet<u64>,
    path: &mut Vec<Step>,
) -> Option<Arc<Job>> {
    if ancestors.contains(&job.id) {
        return Some(job.clone());
    }
    if !visited.insert(job.id) {
        return None;
    }
    let under: Vec<Arc<Waiter>> = job.blocked_under.lock().clone();
    for w in under {
        if w.unwind.lock().is_some() {
            // On a cycle being broken: it is about to unwind.
            continue;
        }
        let owner = w.owner.clone();
        path.push((job.clone(), w));
        if let Some(found) = search(&owner, ancestors, visited, path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

/// Appends the jobs from `top` down to `leaf` (top first).
fn push_segment(
    frames: &mut Vec<CycleFrame>,
    members: &mut Vec<Arc<Job>>,
    leaf: &Arc<Job>,
    top: &Arc<Job>,
) {
    let mut seg: Vec<CycleFrame> = Vec::new();
    for job in leaf.chain() {
        seg.push(CycleFrame {
            query: job.query,
            key: job.key_string(),
        });
        members.push(job.clone());
        if job.id == top.id {
            break;
        }
    }
    seg.reverse();
    frames.extend(seg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(q: &'static str, k: &str) -> CycleFrame {
        CycleFrame {
            query: q,
            key: k.to_owned(),
        }
    }

    #[test]
    fn rotation_is_canonical() {
        let a = Cycle::new(vec![frame("b", "1"), frame("a", "2"), frame("c", "0")]);
        let b = Cycle::new(vec![frame("a", "2"), frame("c", "0"), frame("b", "1")]);
        assert_eq!(a, b);
        assert_eq!(a.frames[0], frame("a", "2"));
        assert_eq!(a.to_string(), "`a(2)` -> `c(0)` -> `b(1)` -> `a(2)`");
    }
}
