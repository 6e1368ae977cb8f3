//! Dependency cycles: the canonical [`Cycle`] report, how a cycle found in
//! the wait-for graph (`wait_graph.rs`) is broken, and which outcome each
//! of its queries gets.
//!
//! # Breaking a cycle
//!
//! The search returns a path: steps from the owner `O` the requester waits
//! for, each a job `X` and a waiter in `X`'s subtree, then the ancestor of
//! the requester that the last waiter waits on. The cycle's queries are the
//! jobs of the *segments*: for each step, the jobs from its waiter's leaf up
//! to `X`; for the closing edge, from the requester's job up to the
//! ancestor. The top of each segment is an *entry*. One [`CycleUnwind`]
//! (frames and entries, behind one `Arc`) is pushed onto every member job's
//! list and marks every waiter on the path; the requester unwinds with it,
//! and each marked waiter unwinds with it as soon as it is woken.
//!
//! # One outcome, whatever the timing
//!
//! A member's result is decided when its provider ends, by the first of
//! these that applies:
//!
//! 1. its provider unwound with a cycle's payload: that cycle's
//!    [`Query::recover`](crate::Query::recover) value (or `QueryError::Cycle`);
//! 2. it unwound with an error or a panic: that error;
//! 3. it returned, but it is on a cycle (a read during unwinding returned
//!    instead): the recover value for the smallest of its cycles.
//!
//! What reaches a provider is what a serial run delivers there: reads in
//! program order stop at the first that fails, and `par_for_each`/`par_map`
//! (like `join` and `scope`) resume the failure of the *lowest item index*
//! after every item ran. So a query whose parallel children meet cycles or
//! panics gets the outcome of its lowest-index child that has one, exactly
//! as serial mode's in-order run, and not the cycle that happened to close
//! first. Then, if the job is a member that is not an entry of one of its
//! cycles, it keeps unwinding with that cycle's payload (the smallest such
//! cycle): its caller is on that cycle too, and decides the same way; an
//! entry returns its result to its caller. So every member finishes, and
//! every marked waiter is woken by the member it waits on.
//!
//! The frames are rotated to start at the smallest `(query, key)`, so the
//! report, and every `recover` value computed from it, is the same whichever
//! job closed the cycle, in every mode and thread count. Where every query
//! of a strongly connected component lies on one cycle per read of it (a
//! ring, or rings sharing one query — the shapes the soak generates), the
//! frames and outcomes are those of serial mode; where one read lies on
//! several cycles, which of them closes first may still depend on timing.

use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::job::Job;
use crate::wait_graph::Path;

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
/// the first. Canonical: rotated to start at the smallest frame. The frames
/// are shared: cloning a `Cycle` (every member's error holds one) copies a
/// pointer, not the frames.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cycle {
    /// The queries of the cycle, in dependency order.
    pub frames: Arc<[CycleFrame]>,
}

impl Cycle {
    /// Builds a cycle from frames in dependency order, in canonical rotation.
    pub fn new(mut frames: Vec<CycleFrame>) -> Cycle {
        if let Some(min) = (0..frames.len()).min_by(|&a, &b| frames[a].cmp(&frames[b])) {
            frames.rotate_left(min);
        }
        Cycle {
            frames: frames.into(),
        }
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
        for frame in self.frames.iter() {
            write!(f, "`{frame}` -> ")?;
        }
        match self.frames.first() {
            Some(first) => write!(f, "`{first}`"),
            None => Ok(()),
        }
    }
}

/// A cycle being broken (see the module doc): shared by its members, its
/// marked waiters and the unwind payload.
pub(crate) struct CycleUnwind {
    pub(crate) cycle: Cycle,
    /// Ids of the jobs at the top of each segment: they return their value
    /// instead of unwinding further.
    entries: FxHashSet<u64>,
}

impl CycleUnwind {
    /// Whether the job `id` is an entry of this cycle.
    pub(crate) fn is_entry(&self, id: u64) -> bool {
        self.entries.contains(&id)
    }
}

/// Turns a verified path into a cycle: frames, entries, and the marks on
/// every member job and every waiter of the path (see the module doc).
pub(crate) fn break_cycle(path: Path) -> Arc<CycleUnwind> {
    let mut frames = Vec::new();
    let mut members = Vec::new();
    let mut entries = FxHashSet::default();
    for (top, w) in &path.steps {
        push_segment(&mut frames, &mut members, &w.leaf, top);
        entries.insert(top.id);
    }
    push_segment(
        &mut frames,
        &mut members,
        &path.requester.leaf,
        &path.closing,
    );
    entries.insert(path.closing.id);
    let unwind = Arc::new(CycleUnwind {
        cycle: Cycle::new(frames),
        entries,
    });
    for job in members {
        job.cycles.lock().push(unwind.clone());
    }
    for (_, w) in &path.steps {
        w.mark(&unwind);
    }
    unwind
}

/// Appends the jobs from `top` down to `leaf` (top first).
fn push_segment(
    frames: &mut Vec<CycleFrame>,
    members: &mut Vec<Arc<Job>>,
    leaf: &Arc<Job>,
    top: &Arc<Job>,
) {
    let start = frames.len();
    for job in leaf.chain() {
        frames.push(CycleFrame {
            query: job.query,
            key: job.key_string(),
        });
        members.push(job.clone());
        if job.id == top.id {
            break;
        }
    }
    frames[start..].reverse();
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
