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
//! `O` searches, under the graph's one mutex, for a path from `O` back to an
//! ancestor-or-self of `leaf`: depth-first, following from each job `J` the
//! waiters registered under `J` (`blocked_under`, an index maintained by
//! walking the waiter's ancestor chain on registration) to their owners.
//! If found, the requester does not wait: the path is the cycle. Otherwise it
//! registers itself, in the same critical section, and waits.
//!
//! *No missed cycle.* A cycle closes when its last edge is added, and every
//! edge is added by a registration that first searches, under the mutex,
//! with all earlier edges in place. Same-stack cycles (serial mode, or a
//! query reached again through its own callees) are the special case where
//! `O` itself is an ancestor of `leaf`.
//!
//! # Breaking a cycle
//!
//! The cycle's queries are the jobs on the path: for each edge, the jobs
//! from the waiter's leaf up to the job it hangs under (the *segment*), and
//! for the closing edge the jobs from `leaf` up to the ancestor found. The
//! top of each segment is an *entry*. The requester unwinds with a
//! [`CycleUnwind`] payload; each waiter on the path is marked and unwinds
//! with the same payload as soon as it is woken. Every query that catches
//! the payload publishes its [`Query::recover`](crate::Query::recover) value
//! (or `QueryError::Cycle`), which wakes the next marked waiter, and keeps
//! unwinding up to its entry, where the entry's caller receives the value.
//! So every job of the cycle finishes, and nobody waits on a cycle forever.
//! A marked waiter is skipped by later searches: it is about to unwind.
//!
//! The frames are rotated to start at the smallest `(query, key)`, so the
//! report, and every `recover` value computed from it, is the same whichever
//! job closed the cycle, in every mode and thread count.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};

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

struct Waiter {
    leaf: Arc<Job>,
    owner: Arc<Job>,
    /// Set when the waiter is on a cycle being broken.
    unwind: Option<Arc<CycleUnwind>>,
}

#[derive(Default)]
struct Graph {
    waiters: FxHashMap<u64, Waiter>,
    /// Job id -> waiters whose leaf is that job or one of its descendants.
    blocked_under: FxHashMap<u64, Vec<u64>>,
    next_waiter: u64,
}

/// The wait-for graph of one engine.
#[derive(Default)]
pub(crate) struct WaitGraph {
    graph: Mutex<Graph>,
}

/// The outcome of [`WaitGraph::register`].
pub(crate) enum Registered {
    /// Registered: wait, then call [`WaitGraph::unregister`] with this id.
    Waiting(u64),
    /// Waiting would close a cycle: unwind with this payload instead.
    Cycle(Arc<CycleUnwind>),
}

impl WaitGraph {
    /// Searches for a cycle through `leaf -> owner`; registers the waiter if
    /// there is none. `leaf` is the requester's current job.
    pub(crate) fn register(&self, leaf: &Arc<Job>, owner: &Arc<Job>) -> Registered {
        let mut g = self.graph.lock();
        if let Some(unwind) = g.find_cycle(leaf, owner) {
            return Registered::Cycle(unwind);
        }
        g.next_waiter += 1;
        let id = g.next_waiter;
        for job in leaf.chain() {
            g.blocked_under.entry(job.id).or_default().push(id);
        }
        g.waiters.insert(
            id,
            Waiter {
                leaf: leaf.clone(),
                owner: owner.clone(),
                unwind: None,
            },
        );
        Registered::Waiting(id)
    }

    /// Removes a waiter after its wait ended; returns the cycle payload if
    /// the waiter was marked to unwind.
    pub(crate) fn unregister(&self, id: u64) -> Option<Arc<CycleUnwind>> {
        let mut g = self.graph.lock();
        let w = g.waiters.remove(&id)?;
        for job in w.leaf.chain() {
            if let Some(list) = g.blocked_under.get_mut(&job.id) {
                if let Some(pos) = list.iter().position(|&x| x == id) {
                    list.swap_remove(pos);
                }
                if list.is_empty() {
                    g.blocked_under.remove(&job.id);
                }
            }
        }
        w.unwind
    }
}

impl Graph {
    fn find_cycle(&mut self, leaf: &Arc<Job>, owner: &Arc<Job>) -> Option<Arc<CycleUnwind>> {
        let ancestors: FxHashSet<u64> = leaf.chain().map(|j| j.id).collect();
        let mut visited = FxHashSet::default();
        // Each path step: (segment top job, waiter id hanging under it).
        let mut path: Vec<(Arc<Job>, u64)> = Vec::new();
        let closing = self.search(owner, &ancestors, &mut visited, &mut path)?;

        let mut frames = Vec::new();
        let mut entries = FxHashSet::default();
        let mut marked = Vec::new();
        for (top, wid) in &path {
            let w = &self.waiters[wid];
            push_segment(&mut frames, &w.leaf, top);
            entries.insert(top.id);
            marked.push(*wid);
        }
        push_segment(&mut frames, leaf, &closing);
        entries.insert(closing.id);
        let unwind = Arc::new(CycleUnwind {
            cycle: Cycle::new(frames),
            entries,
        });
        for wid in marked {
            if let Some(w) = self.waiters.get_mut(&wid) {
                w.unwind = Some(unwind.clone());
            }
        }
        Some(unwind)
    }

    /// Depth-first search from `job` for an ancestor of the requester;
    /// returns that ancestor, with `path` holding the edges taken.
    fn search(
        &self,
        job: &Arc<Job>,
        ancestors: &FxHashSet<u64>,
        visited: &mut FxHashSet<u64>,
        path: &mut Vec<(Arc<Job>, u64)>,
    ) -> Option<Arc<Job>> {
        if ancestors.contains(&job.id) {
            return Some(job.clone());
        }
        if !visited.insert(job.id) {
            return None;
        }
        let Some(under) = self.blocked_under.get(&job.id) else {
            return None;
        };
        // Deterministic order: by waiter id (registration order).
        let mut under = under.clone();
        under.sort_unstable();
        for wid in under {
            let w = &self.waiters[&wid];
            if w.unwind.is_some() {
                continue;
            }
            path.push((job.clone(), wid));
            if let Some(found) = self.search(&w.owner, ancestors, visited, path) {
                return Some(found);
            }
            path.pop();
        }
        None
    }
}

/// Appends the jobs from `top` down to `leaf` (top first).
fn push_segment(frames: &mut Vec<CycleFrame>, leaf: &Arc<Job>, top: &Arc<Job>) {
    let mut seg: Vec<CycleFrame> = Vec::new();
    for job in leaf.chain() {
        seg.push(CycleFrame {
            query: job.query,
            key: job.key_string(),
        });
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
