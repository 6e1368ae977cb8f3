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

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

/// The context value: shared, type-erased, cheap to clone (one `Arc`).
pub type TaskContext = Option<Arc<dyn Any + Send + Sync>>;

thread_local! {
    static CURRENT: RefCell<TaskContext> = const { RefCell::new(None) };
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
