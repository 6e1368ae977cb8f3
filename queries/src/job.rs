//! Jobs: one record per query execution, linked to the job it runs for and
//! placed on the strand that runs it.
//!
//! A job's identity is a wide, process-unique id (never a `ThreadId`: one
//! worker thread runs many fibers, and many jobs, over its life). Its
//! `parent` is the job that was current when it started: the caller on the
//! same stack, or, for a task forked by `join`/`par_for_each`/`scope`, the
//! job that forked it (the runtime's task context carries it across). So a
//! child task that asks for a query still running in its parent finds the
//! parent among its ancestors: a cycle, not a deadlock.
//!
//! A job also knows its *place*: the strand record it runs on and its depth
//! there (`wait_graph.rs`). A job started on the runtime strand of its
//! parent nests on the parent's record, one deeper; a job started on
//! another strand (a forked task) roots a new record, registered with the
//! parent's. Computing the place is O(1): nothing walks the job chain.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::mem::{align_of, size_of, MaybeUninit};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;
use weft_runtime::sync::{AtomicBool, Ordering};
use weft_runtime::Latch;

use crate::cycle::CycleUnwind;
use crate::wait_graph::StrandRec;
use crate::Diagnostic;

/// Job ids are handed to threads in blocks of this many, so that starting
/// a job touches no shared counter (as the runtime's strand ids).
const JOB_BLOCK: u64 = 1 << 16;

/// The next unused block of job ids; starts at 1 (ids start at 65,536).
/// 64 bits never wrap in practice.
static NEXT_JOB_BLOCK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's next job id and the end of its block.
    static JOB_IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A fresh, process-unique job id.
fn fresh_job_id() -> u64 {
    JOB_IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            // Relaxed: only uniqueness is needed.
            next = NEXT_JOB_BLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * JOB_BLOCK;
            end = next + JOB_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// A job's key, for reports: a copy of a small key held inline (no
/// allocation), or a shared clone of a larger one.
pub(crate) enum JobKey {
    /// A pooled record's: no key.
    None,
    /// A clone of a key that fits 16 bytes and has no drop glue.
    Inline(InlineKey),
    /// A clone of a key too large to hold inline.
    Shared(Arc<dyn Debug + Send + Sync>),
}

impl JobKey {
    /// The key's `Debug` text.
    pub(crate) fn format(&self) -> String {
        match self {
            JobKey::None => "(pooled)".to_owned(),
            JobKey::Inline(k) => k.format(),
            JobKey::Shared(k) => format!("{k:?}"),
        }
    }
}

/// A key of type `K` kept as bytes with its `Debug` function: see
/// [`InlineKey::new`].
pub(crate) struct InlineKey {
    bytes: MaybeUninit<[u64; 2]>,
    format: unsafe fn(*const u8) -> String,
}

// SAFETY: `new` stores only keys whose type is `Send + Sync`, and the bytes
// are only ever lent out as `&K`.
unsafe impl Send for InlineKey {}
// SAFETY: as for `Send`.
unsafe impl Sync for InlineKey {}

impl InlineKey {
    /// A clone of `key` held inline, when `K` fits 16 bytes at alignment
    /// 8 or less and has no drop glue (so the copy owns nothing and needs
    /// no drop); `None` otherwise.
    pub(crate) fn new<K: Clone + Debug + Send + Sync>(key: &K) -> Option<InlineKey> {
        if !InlineKey::fits::<K>() {
            return None;
        }
        let mut bytes = MaybeUninit::<[u64; 2]>::uninit();
        // SAFETY: the buffer is 16 bytes at alignment 8, and `K` fits in
        // both (checked above), so the write is in bounds and aligned.
        unsafe { bytes.as_mut_ptr().cast::<K>().write(key.clone()) };
        Some(InlineKey {
            bytes,
            format: format_key::<K>,
        })
    }

    /// Whether keys of type `K` can be held inline (see [`InlineKey::new`]).
    #[inline]
    pub(crate) const fn fits<K>() -> bool {
        size_of::<K>() <= 16 && align_of::<K>() <= 8 && !std::mem::needs_drop::<K>()
    }

    fn format(&self) -> String {
        // SAFETY: `format` is `format_key::<K>` for the `K` that `new`
        // wrote into `bytes`, which still holds it (never dropped: it has
        // no drop glue).
        unsafe { (self.format)(self.bytes.as_ptr().cast::<u8>()) }
    }
}

/// The `Debug` text of the `K` at `p`.
///
/// # Safety
///
/// `p` points at a valid, aligned `K`.
unsafe fn format_key<K: Debug>(p: *const u8) -> String {
    // SAFETY: the caller's contract.
    format!("{:?}", unsafe { &*p.cast::<K>() })
}

/// One query execution in progress.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) query: &'static str,
    /// The key, formatted only when a cycle or panic report names it.
    pub(crate) key: JobKey,
    pub(crate) parent: Option<Arc<Job>>,
    /// The strand record this job runs on (`wait_graph.rs`).
    pub(crate) strand: Arc<StrandRec>,
    /// Position on `strand`: 0 for the record's root job, +1 per nested job.
    pub(crate) depth: usize,
    /// Set once the job's result is published (before its latch is set).
    /// `Release`/`Acquire`: a search that sees `false` after seeing the
    /// job as an owner knows its waiters are still waiting.
    done: AtomicBool,
    /// Diagnostics emitted while this job (or a task it forked) ran.
    pub(crate) diagnostics: Mutex<Vec<Diagnostic>>,
    /// The cycles found through this job (`cycle.rs`): shared, one `Arc`
    /// per cycle however many members it has.
    pub(crate) cycles: Mutex<Vec<Arc<CycleUnwind>>>,
    /// Set once the result is published; the job's waiters wait on it (as
    /// rustc's `QueryLatch`).
    pub(crate) latch: Latch,
}

impl Job {
    /// A job for `query(key)` started by the code running now: its parent
    /// is the current job, its place is computed from the current strand.
    pub(crate) fn start(query: &'static str, key: JobKey) -> Arc<Job> {
        Job::start_on(weft_runtime::current_strand(), current_job(), query, key)
    }

    /// [`Job::start`] by code on runtime strand `rid` whose current job is
    /// `parent` (the loom models name both).
    pub(crate) fn start_on(
        rid: u64,
        parent: Option<Arc<Job>>,
        query: &'static str,
        key: JobKey,
    ) -> Arc<Job> {
        let (strand, depth) = StrandRec::place_new_job(rid, parent.as_ref());
        if let Some(mut job) = POOL.with(|p| p.borrow_mut().pop()) {
            // A pooled record is unique (`recycle`), and nothing can clone
            // an `Arc` out of the pool.
            let j = Arc::get_mut(&mut job).expect("a pooled job record is unique");
            j.id = fresh_job_id();
            j.query = query;
            j.key = key;
            j.parent = parent;
            j.strand = strand;
            j.depth = depth;
            j.done = AtomicBool::new(false);
            j.latch.reset();
            return job;
        }
        Arc::new(Job {
            // Relaxed: only uniqueness is needed.
            id: fresh_job_id(),
            query,
            key,
            parent,
            strand,
            depth,
            done: AtomicBool::new(false),
            diagnostics: Mutex::new(Vec::new()),
            cycles: Mutex::new(Vec::new()),
            latch: Latch::new(),
        })
    }

    /// `query(key)` for reports.
    pub(crate) fn key_string(&self) -> String {
        self.key.format()
    }

    /// Whether the job's result is published.
    pub(crate) fn is_done(&self) -> bool {
        // Acquire: pairs with `finish`.
        self.done.load(Ordering::Acquire)
    }

    /// Marks the job finished (its result is published; the latch is set
    /// next) and, for the root job of a forked record, takes that record
    /// off its parent's list.
    pub(crate) fn finish(&self) {
        // Release: the published memo happens before `done` is seen.
        self.done.store(true, Ordering::Release);
        if self.depth == 0 {
            self.strand.end();
        }
    }

    /// This job and its ancestors, innermost first.
    pub(crate) fn chain(self: &Arc<Job>) -> impl Iterator<Item = &Arc<Job>> {
        std::iter::successors(Some(self), |j| j.parent.as_ref())
    }
}

/// Job records kept per thread for reuse: a miss then allocates only its
/// memo entry. A record (with its latch) is reused only once no one else
/// holds it.
const POOL_CAPACITY: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<Arc<Job>>> = const { RefCell::new(Vec::new()) };
    /// What a pooled record's `strand` points at: a record no code runs on.
    static IDLE_STRAND: Arc<StrandRec> = StrandRec::idle();
}

/// Gives a finished job's record back for reuse by the next job started
/// on this thread, if no one else holds it (a waiter that has not yet
/// looked at it, a child, a cycle report): its links to other records
/// are dropped now, so the pool keeps nothing else alive.
pub(crate) fn recycle(mut job: Arc<Job>) {
    let Some(j) = Arc::get_mut(&mut job) else {
        return;
    };
    debug_assert!(j.is_done(), "recycling a job that did not finish");
    j.key = JobKey::None;
    j.parent = None;
    j.strand = IDLE_STRAND.with(Arc::clone);
    j.cycles = Mutex::new(Vec::new());
    // `try_with`: a thread being torn down just frees the record.
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_CAPACITY {
            p.push(job);
        }
    });
}

/// The job the current code runs for, from the runtime's task context.
pub(crate) fn current_job() -> Option<Arc<Job>> {
    weft_runtime::current_context().and_then(|ctx| ctx.downcast::<Job>().ok())
}

/// Makes `job` current for the guard's lifetime.
pub(crate) fn enter(job: &Arc<Job>) -> weft_runtime::ContextGuard {
    weft_runtime::ContextGuard::enter(Some(job.clone() as Arc<dyn Any + Send + Sync>))
}
