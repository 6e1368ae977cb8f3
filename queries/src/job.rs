//! Jobs: one record per query execution, linked to the job it runs for.
//!
//! A job's identity is a wide, process-unique id (never a `ThreadId`: one
//! worker thread runs many fibers and many jobs over its life). Its `parent`
//! is the job that was current when it started: the caller on the same
//! stack, or, for a task forked by `join`/`par_for_each`/`scope`, the job
//! that forked it (the runtime's task context carries it across). So a child
//! task that asks for a query still running in its parent finds the parent
//! among its ancestors: a cycle, not a deadlock.

use std::any::Any;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::Diagnostic;

/// Process-wide job ids; 64 bits never wrap in practice.
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// One query execution in progress.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) query: &'static str,
    pub(crate) key: Box<dyn Debug + Send + Sync>,
    pub(crate) parent: Option<Arc<Job>>,
    /// Diagnostics emitted while this job (or a task it forked) ran.
    pub(crate) diagnostics: Mutex<Vec<Diagnostic>>,
    /// Set (once) when this job is found on a dependency cycle: its result
    /// is then its `recover` value (or `Cycle`), however its provider ends.
    pub(crate) cycle: Mutex<Option<Arc<crate::cycle::CycleUnwind>>>,
    /// The waiters whose leaf is this job or a descendant (see `cycle.rs`).
    pub(crate) blocked_under: Mutex<Vec<Arc<crate::cycle::Waiter>>>,
}

impl Job {
    pub(crate) fn new(
        query: &'static str,
        key: Box<dyn Debug + Send + Sync>,
        parent: Option<Arc<Job>>,
    ) -> Arc<Job> {
        Arc::new(Job {
            // Relaxed: only uniqueness is needed.
            id: NEXT_JOB.fetch_add(1, Ordering::Relaxed),
            query,
            key,
            parent,
            diagnostics: Mutex::new(Vec::new()),
            cycle: Mutex::new(None),
            blocked_under: Mutex::new(Vec::new()),
        })
    }

    /// `query(key)` for reports.
    pub(crate) fn key_string(&self) -> String {
        format!("{:?}", self.key)
    }

    /// This job and its ancestors, innermost first.
    pub(crate) fn chain(self: &Arc<Job>) -> impl Iterator<Item = &Arc<Job>> {
        std::iter::successors(Some(self), |j| j.parent.as_ref())
    }
}

/// The job the current code runs for, from the runtime's task context.
pub(crate) fn current_job() -> Option<Arc<Job>> {
    weft_runtime::current_context().and_then(|ctx| ctx.downcast::<Job>().ok())
}

/// Makes `job` current for the guard's lifetime.
pub(crate) fn enter(job: &Arc<Job>) -> weft_runtime::ContextGuard {
    weft_runtime::ContextGuard::enter(Some(job.clone() as Arc<dyn Any + Send + Sync>))
}
