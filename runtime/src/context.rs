//! The task context: one word of user state that follows a task.
//!
//! The query engine keeps "which query execution am I running inside" here.
//! The runtime does not interpret it; it only guarantees that
//! - a task spawned by [`join`](crate::join), [`scope`](crate::scope) or
//!   [`par_for_each`](crate::par_for_each) starts with the context of the
//!   code that spawned it (so a child knows its parent job), and
//! - a fiber that suspends gets its own context back when it resumes, even
//!   though other fibers ran on the same worker thread in between.
//!
//! The value is a thread-local; the worker loop swaps it around every fiber
//! switch and every task it runs.
//!
//! # Strands
//!
//! Beside the context, the runtime names the *strand* running now: one
//! sequential execution — a task started from a deque (on its own fiber in
//! fibers mode, at the base of a worker's stack in threads mode), or the
//! caller of a serial-mode [`Runtime::block_on`](crate::Runtime::block_on).
//! A task run inline by its owner (`join`'s unclaimed `b`, a scope's
//! unstarted spawn) stays on the owner's strand. Code on one strand runs
//! one frame at a time, so what it has in progress nests like a stack: the
//! query engine relies on that to answer "is this job an ancestor of the
//! code running now" without walking the job chain (`queries/src/wait_graph.rs`).
//! [`current_strand`] is `0` outside any task.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The context value: shared, type-erased, cheap to clone (one `Arc`).
pub type TaskContext = Option<Arc<dyn Any + Send + Sync>>;

thread_local! {
    static CURRENT: RefCell<TaskContext> = const { RefCell::new(None) };
    /// The strand running on this thread now (0: none).
    static STRAND: Cell<u64> = const { Cell::new(0) };
    /// The next strand id this thread hands out, and the end of its block.
    static STRAND_IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Strand ids are handed to threads in blocks of this many, so that
/// starting a task touches no shared counter.
const STRAND_BLOCK: u64 = 1 << 16;

/// The next unused block of strand ids; starts at 1 (0 means "no strand").
static NEXT_STRAND_BLOCK: AtomicU64 = AtomicU64::new(1);

/// The id of the strand running now (see the module doc): unique in the
/// process for its lifetime (64 bits never wrap in practice); `0` outside
/// any task or serial `block_on`.
pub fn current_strand() -> u64 {
    STRAND.with(Cell::get)
}

/// A fresh strand id, from this thread's block.
fn fresh_strand() -> u64 {
    STRAND_IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            // Relaxed: only uniqueness is needed.
            next = NEXT_STRAND_BLOCK.fetch_add(1, Ordering::Relaxed) * STRAND_BLOCK;
            end = next + STRAND_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// Replaces the current strand id, returning the previous one (a fiber
/// saves its strand before it switches away and restores it on resume).
pub(crate) fn replace_strand(id: u64) -> u64 {
    STRAND.with(|s| s.replace(id))
}

/// Runs the code until the guard drops on a fresh strand, then restores the
/// previous strand id (also when unwinding).
pub(crate) struct StrandGuard {
    previous: u64,
}

impl StrandGuard {
    /// Enters a fresh strand.
    pub(crate) fn fresh() -> StrandGuard {
        StrandGuard {
            previous: replace_strand(fresh_strand()),
        }
    }
}

impl Drop for StrandGuard {
    fn drop(&mut self) {
        replace_strand(self.previous);
    }
}

/// The context of the code running now (a clone of the `Arc`).
pub fn current_context() -> TaskContext {
    CURRENT.with(|c| c.borrow().clone())
}

/// Replaces the current context, returning the previous one. Callers restore
/// the previous value when their scope ends (see [`ContextGuard`]).
pub fn replace_context(ctx: TaskContext) -> TaskContext {
    CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), ctx))
}

/// Installs a context for a scope and restores the previous one on drop,
/// also when the scope unwinds.
pub struct ContextGuard {
    previous: TaskContext,
}

impl ContextGuard {
    /// Makes `ctx` current until the guard is dropped.
    pub fn enter(ctx: TaskContext) -> ContextGuard {
        ContextGuard {
            previous: replace_context(ctx),
        }
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        replace_context(self.previous.take());
    }
}
