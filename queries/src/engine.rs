//! The engine: [`Engine`] owns the memo tables and the wait-for graph;
//! [`Cx`] is what providers use to ask for other queries.
//!
//! # `Cx::get` (claim, compute, publish, wait)
//!
//! - **hit**: the memo is cloned out of its shard;
//! - **miss**: the caller claims the key (`memo.rs`), runs the provider on
//!   its own stack inside a new job, publishes the result, then sets the
//!   slot's latch;
//! - **in progress elsewhere**: the caller publishes its wait and searches
//!   the wait-for graph for a cycle (`wait_graph.rs`); if there is none, it
//!   waits on the slot's latch (the fiber suspends, the thread blocks), then
//!   reads the memo. A cycle is broken as `cycle.rs` says: every member's
//!   outcome is the one serial mode's in-order run gives it.
//!
//! # Errors travel as unwinding
//!
//! A provider returns a plain value. When a query it asks for failed (a
//! panic, or a cycle without recovery), [`Cx::get`] unwinds with a private
//! payload carrying the [`QueryError`]; the engine catches it where the
//! calling query's job began and stores the *same* error as that query's
//! result. So the error reaches the top unchanged and deterministic, and a
//! provider that wants to handle it uses [`Cx::try_get`]. A provider's own
//! panic becomes `QueryError::Panicked` naming that query and key. Every
//! job publishes exactly once, whatever happens, so no waiter hangs.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use weft_runtime::{Mode, Runtime};

use crate::cycle::{self, CycleUnwind};
use crate::job::{self, Job};
use crate::memo::{Claim, ClaimGuard, Diagnostics, Entry, Memo, MemoTable, Place};
use crate::profile::{Profile, Recorder, WaitToken};
use crate::storage::{QueryMemory, Storage};
use crate::wait_graph::{self, Published};
use crate::{Diagnostic, Query, QueryError};

/// A panic payload, as `catch_unwind` returns it.
type Payload = Box<dyn Any + Send>;

/// The unwind payload of a failed `Cx::get` (see the module doc).
struct ErrorUnwind(QueryError);

/// The unwind payload of a cycle being broken (see `cycle.rs`): the cycle
/// it breaks, shared with the member jobs' records.
struct CycleUnwindPayload(Arc<CycleUnwind>);

struct EngineInner<D> {
    db: D,
    runtime: Runtime,
    /// One memo table per query type (`storage.rs`, `memo.rs`).
    storage: Storage,
    /// Diagnostics emitted outside any query (from `Engine::run`).
    top_diagnostics: Mutex<Vec<Diagnostic>>,
    /// Profiling (`profile.rs`): off unless `enable_recording` was called.
    recorder: Recorder,
    /// Reads that found their query in progress elsewhere (`Engine::waits`).
    waits: AtomicU64,
}

/// A query engine: memo tables for every query type used with it, the
/// wait-for graph, the user data `D` (reached as [`Cx::db`]) and the
/// runtime that runs it.
///
/// ```
/// use weft_queries::{Cx, Engine, Query};
/// use weft_runtime::{Mode, Runtime};
///
/// struct Fib;
/// impl Query for Fib {
///     type Db = ();
///     type Key = u64;
///     type Value = u64;
///     const NAME: &'static str = "fib";
///     fn compute(cx: &Cx<'_, ()>, n: &u64) -> u64 {
///         if *n < 2 { *n } else { cx.get::<Fib>(n - 1) + cx.get::<Fib>(n - 2) }
///     }
/// }
///
/// for mode in [Mode::Threads, Mode::Serial] {
///     let rt = Runtime::builder().mode(mode).threads(2).build().unwrap();
///     let engine = Engine::new(rt, ());
///     assert_eq!(engine.get::<Fib>(80), Ok(23_416_728_348_467_685));
/// }
/// ```
pub struct Engine<D> {
    inner: Arc<EngineInner<D>>,
}

impl<D> Clone for Engine<D> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

impl<D: Send + Sync + 'static> Engine<D> {
    /// An engine with empty memo tables, running on `runtime`.
    pub fn new(runtime: Runtime, db: D) -> Engine<D> {
        Engine {
            inner: Arc::new(EngineInner {
                db,
                runtime,
                storage: Storage::new(),
                top_diagnostics: Mutex::new(Vec::new()),
                recorder: Recorder::new(),
                waits: AtomicU64::new(0),
            }),
        }
    }

    /// The user data.
    pub fn db(&self) -> &D {
        &self.inner.db
    }

    /// The memo tables (for `input.rs`).
    pub(crate) fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// Number of reads so far that found their query in progress in
    /// another job and waited for it (suspended their fiber, or blocked
    /// their thread): a measure of contention, free to keep (one relaxed
    /// increment per wait, nothing per hit or miss).
    pub fn waits(&self) -> u64 {
        self.inner.waits.load(Ordering::Relaxed)
    }

    /// The runtime this engine runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Runs `Q(key)` on the runtime and returns its result (blocking the
    /// calling thread). Memoized: a second call is a cache hit.
    ///
    /// # Errors
    ///
    /// [`QueryError::Cycle`] for a cycle without recovery,
    /// [`QueryError::Panicked`] if `Q` or a query it needed panicked.
    pub fn get<Q: Query<Db = D>>(&self, key: Q::Key) -> Result<Q::Value, QueryError> {
        self.run(move |cx| cx.try_get::<Q>(key))
    }

    /// Runs `f` with a context on the runtime (`block_on`) and returns its
    /// result. Inside, use [`Cx::try_get`] (or `get`, whose error unwinds
    /// out of `run` as a panic).
    pub fn run<R: Send>(&self, f: impl FnOnce(&Cx<'_, D>) -> R + Send) -> R {
        let cx = Cx {
            engine: &*self.inner,
            _not_send_static: PhantomData,
        };
        self.inner.runtime.block_on(move || f(&cx))
    }

    /// Starts recording every query execution, hit and wait from now on
    /// (and the runtime's worker events, process-wide), for
    /// [`Engine::profile`]. Without the `recording` feature this does nothing.
    pub fn enable_recording(&self) {
        self.inner.recorder.enable();
    }

    /// What was recorded since [`Engine::enable_recording`]; `None` when
    /// recording is off.
    pub fn profile(&self) -> Option<Profile> {
        let rt = &self.inner.runtime;
        self.inner
            .recorder
            .profile(&rt.mode().to_string(), rt.num_threads())
    }

    /// Every diagnostic emitted by every executed query, in a deterministic
    /// order: by query name, then the `Debug` form of the key, then the
    /// diagnostic's own order (file, line, column, severity, message).
    /// Diagnostics emitted outside any query come first, sorted.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut all = Vec::new();
        self.inner
            .storage
            .for_each(|table| table.collect_diagnostics(&mut all));
        all.sort();
        let mut out = self.inner.top_diagnostics.lock().clone();
        out.sort();
        out.extend(all.into_iter().map(|(_, _, d)| d));
        out
    }

    /// What the memo tables hold, per query type, in the order the types
    /// were first read: memos and bytes per memo (header, key, value,
    /// index). Dependency edges take no memory: the engine keeps none
    /// (profiles keep theirs in the recorder, only while recording).
    pub fn memory(&self) -> Vec<QueryMemory> {
        let mut out = Vec::new();
        self.inner
            .storage
            .for_each(|table| out.push(table.memory()));
        out
    }
}

/// The user data type of a query context type, so that `#[query]` finds a
/// query's `Db` from its `cx: &Cx<Db>` parameter whatever alias names the
/// context (`type Cx<'a> = weft_queries::Cx<'a, MyDb>`).
pub trait Context {
    /// The `D` of `Cx<'_, D>`.
    type Db;
}

impl<D> Context for Cx<'_, D> {
    type Db = D;
}

/// The query context: what a provider uses to read other queries, emit
/// diagnostics and reach the user data. `Copy`; it can be moved into tasks
/// forked with `join`/`par_for_each`/`scope` inside a provider.
pub struct Cx<'a, D> {
    engine: &'a EngineInner<D>,
    _not_send_static: PhantomData<&'a ()>,
}

impl<D> Clone for Cx<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for Cx<'_, D> {}

impl<'a, D: Send + Sync + 'static> Cx<'a, D> {
    /// The user data.
    pub fn db(&self) -> &'a D {
        &self.engine.db
    }

    /// The runtime's mode.
    pub fn mode(&self) -> Mode {
        self.engine.runtime.mode()
    }

    /// The value of `Q(key)`: a cache hit, a computation on this stack, or a
    /// wait for another worker's computation (see the module doc).
    ///
    /// # Panics
    ///
    /// Unwinds when `Q(key)` failed (a cycle without recovery, or a panic);
    /// the engine turns that into the same error for the calling query. Use
    /// [`Cx::try_get`] to handle the error instead.
    pub fn get<Q: Query<Db = D>>(&self, key: Q::Key) -> Q::Value {
        match self.try_get::<Q>(key) {
            Ok(v) => v,
            Err(e) => unwind_error(e),
        }
    }

    /// The memo tables (for `input.rs`).
    pub(crate) fn storage(&self) -> &'a Storage {
        &self.engine.storage
    }

    /// The result of `Q(key)`, errors included (see [`Cx::get`]).
    ///
    /// When the calling query is itself on the cycle that this read closes
    /// (or on one being broken), the call does not return: the cycle's
    /// unwinding passes through it to the calling query, whose result
    /// becomes its `recover` value. Errors of queries *outside* the caller's
    /// own cycle are returned.
    ///
    /// # Errors
    ///
    /// [`QueryError::Cycle`] when `Q(key)` is part of, or depends on, a
    /// cycle without recovery; [`QueryError::Panicked`] when its provider or
    /// one it depends on panicked.
    pub fn try_get<Q: Query<Db = D>>(&self, key: Q::Key) -> Result<Q::Value, QueryError> {
        self.try_get_with::<Q, false>(key)
    }

    /// [`Cx::try_get`] with recording on; out of line and cold so that the
    /// instance without recording stays as small as it can be.
    #[cold]
    #[inline(never)]
    fn try_get_recorded<Q: Query<Db = D>>(&self, key: Q::Key) -> Result<Q::Value, QueryError> {
        self.try_get_with::<Q, true>(key)
    }

    /// The body of [`Cx::try_get`]; `RECORD` selects, at compile time,
    /// whether the recording hooks are there. Recording that is off costs
    /// the one load and branch on top: the rest of the `RECORD = false`
    /// instance is the code of a build without the `recording` feature. A
    /// read that started before `enable_recording` stays unrecorded; the
    /// reads it makes are recorded (as top-level reads).
    fn try_get_with<Q: Query<Db = D>, const RECORD: bool>(
        &self,
        key: Q::Key,
    ) -> Result<Q::Value, QueryError> {
        if !RECORD && self.engine.recorder.is_on() {
            return self.try_get_recorded::<Q>(key);
        }
        let table = self.engine.storage.query::<Q>();
        let place = MemoTable::<Q::Key, Q::Value>::place(&key, Q::dense_index(&key));
        if let Some(memo) = table.find(place, &key).and_then(Entry::memo) {
            if RECORD {
                // RECORD: cache hit of `Q(key)`, computed by job `memo.job`.
                record_hit(&self.engine.recorder, Q::NAME, memo.job);
            }
            return memo.result();
        }
        self.claim::<Q, RECORD>(table, place, key)
    }

    /// The rest of [`Cx::try_get`] after a lock-free miss: claim the key
    /// (or find it finished or running), then compute or wait.
    #[inline(never)]
    fn claim<Q: Query<Db = D>, const RECORD: bool>(
        &self,
        table: &MemoTable<Q::Key, Q::Value>,
        place: Place,
        key: Q::Key,
    ) -> Result<Q::Value, QueryError> {
        match table.claim(place, key, Q::NAME, |key| Job::start(Q::NAME, key)) {
            Claim::Done(memo) => {
                if RECORD {
                    // RECORD: cache hit of `Q(key)`, computed by job `memo.job`.
                    record_hit(&self.engine.recorder, Q::NAME, memo.job);
                }
                memo.result()
            }
            Claim::Claimed(guard) => {
                let (result, rethrow) = self.execute::<Q, RECORD>(guard);
                match rethrow {
                    // Never unwind while the thread is already unwinding
                    // (a read from a `Drop`): that would abort the process.
                    Some(payload) if !std::thread::panicking() => panic::resume_unwind(payload),
                    _ => result,
                }
            }
            Claim::Running(entry, owner) => self.wait::<Q, RECORD>(entry, &owner),
        }
    }

    /// Runs the provider of a claimed key in `job` and publishes the result.
    /// Returns the result, and the payload to keep unwinding with when a
    /// cycle is being broken and this job is not its entry.
    fn execute<Q: Query<Db = D>, const RECORD: bool>(
        &self,
        guard: ClaimGuard<'_, Q::Key, Q::Value>,
    ) -> (Result<Q::Value, QueryError>, Option<Payload>) {
        let key = guard.key();
        let job = guard.job();
        let outcome = if RECORD {
            self.run_recorded::<Q>(key, job)
        } else {
            self.run_provider::<Q>(key, job)
        };
        // The outcome rule of `cycle.rs`: the payload that reached the
        // provider decides; membership decides only when nothing did.
        let cycles = job.cycles.lock().clone();
        let recover = |unwind: &CycleUnwind| {
            let recovered =
                panic::catch_unwind(AssertUnwindSafe(|| Q::recover(self, &unwind.cycle, key)));
            match recovered {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(QueryError::Cycle(unwind.cycle.clone())),
                Err(p) => Err(panicked::<Q>(key, &*p)),
            }
        };
        let result = match outcome {
            Ok(v) => match cycles.iter().min_by(|a, b| a.cycle.cmp(&b.cycle)) {
                Some(unwind) => recover(unwind),
                None => Ok(v),
            },
            Err(payload) => match payload.downcast::<CycleUnwindPayload>() {
                Ok(unwind) => recover(&unwind.0),
                Err(payload) => match payload.downcast::<ErrorUnwind>() {
                    Ok(e) => Err(e.0),
                    Err(payload) => Err(panicked::<Q>(key, &*payload)),
                },
            },
        };
        // A member that is not an entry of one of its cycles keeps
        // unwinding with it: its caller is on that cycle too.
        let rethrow = cycles
            .iter()
            .filter(|unwind| !unwind.is_entry(job.id))
            .min_by(|a, b| a.cycle.cmp(&b.cycle))
            .map(|unwind| Box::new(CycleUnwindPayload(unwind.clone())) as Payload);
        let diagnostics = Diagnostics::from_vec(std::mem::take(&mut *job.diagnostics.lock()));
        let memo = Memo {
            result: result.clone().map_err(Box::new),
            diagnostics,
            job: job.id,
        };
        job::recycle(guard.publish(memo));
        (result, rethrow)
    }

    /// Runs the provider of `Q(key)` in `job` on this stack, catching its
    /// unwinding.
    #[inline(always)]
    fn run_provider<Q: Query<Db = D>>(
        &self,
        key: &Q::Key,
        job: &Arc<Job>,
    ) -> std::thread::Result<Q::Value> {
        let _ctx = job::enter(job);
        let _activity = weft_runtime::set_current_activity_name(Q::NAME);
        panic::catch_unwind(AssertUnwindSafe(|| {
            weft_runtime::ensure_sufficient_stack(|| Q::compute(self, key))
        }))
    }

    /// [`Cx::run_provider`] with the execution recorded (profiling is on).
    #[cold]
    #[inline(never)]
    fn run_recorded<Q: Query<Db = D>>(
        &self,
        key: &Q::Key,
        job: &Arc<Job>,
    ) -> std::thread::Result<Q::Value> {
        let recorder = &self.engine.recorder;
        // RECORD: execution of `Q(key)` starts (job.id, parent job).
        let parent = || job.parent.as_ref().map(|p| p.id);
        let describe = || Q::describe(self.db(), key);
        let record = recorder.exec_start(job.id, Q::NAME, describe, parent);
        let outcome = self.run_provider::<Q>(key, job);
        // RECORD: execution of `Q(key)` ends.
        recorder.exec_end(record);
        outcome
    }

    /// Waits for `Q(key)`, in progress in `owner`, after the cycle check.
    fn wait<Q: Query<Db = D>, const RECORD: bool>(
        &self,
        entry: &Entry<Q::Key, Q::Value>,
        owner: &Arc<Job>,
    ) -> Result<Q::Value, QueryError> {
        self.engine.waits.fetch_add(1, Ordering::Relaxed);
        if std::thread::panicking() && !weft_runtime::can_block_while_unwinding() {
            return Err(QueryError::WaitWhileUnwinding {
                query: Q::NAME,
                key: format!("{entry:?}"),
            });
        }
        let waiter = match job::current_job() {
            Some(leaf) => match wait_graph::publish(weft_runtime::current_strand(), &leaf, owner) {
                Published::Cycle(path) => return unwind_cycle(cycle::break_cycle(path)),
                Published::Waiting(w) => Some(w),
            },
            // Top level: nobody can be waiting on us, so no cycle.
            None => None,
        };
        // In serial mode a key in progress on this thread is an ancestor,
        // hence a cycle, found above; one in progress here is another OS
        // thread's (several threads may share a serial engine): block for
        // it, as threads mode does.
        let recorder = &self.engine.recorder;
        // RECORD: wait on job `owner.id` starts.
        let record = RECORD.then(|| record_wait_start(recorder, owner.id));
        owner.latch.wait();
        if let Some(record) = record {
            // RECORD: wait ends.
            recorder.wait_end(record);
        }
        if let Some(unwind) = waiter.and_then(wait_graph::Wait::end) {
            return unwind_cycle(unwind);
        }
        match entry.memo() {
            Some(memo) => memo.result(),
            None => internal_error(&format!("{}({entry:?}) woke without a result", Q::NAME)),
        }
    }

    /// Buffers a diagnostic with the current query; it is handed back by
    /// [`Engine::diagnostics`] once, however often the query is read.
    pub fn emit(&self, diagnostic: Diagnostic) {
        match job::current_job() {
            Some(job) => job.diagnostics.lock().push(diagnostic),
            None => self.engine.top_diagnostics.lock().push(diagnostic),
        }
    }
}

/// Records a cache hit by the current job (recording is on). Out of line
/// and cold: the recorded instance of `try_get` stays small too.
#[cold]
#[inline(never)]
fn record_hit(recorder: &Recorder, query: &'static str, by: u64) {
    recorder.cache_hit(query, || job::current_job().map(|j| j.id), by);
}

/// Records the start of a wait of the current job on job `on` (recording
/// is on); out of line, as [`record_hit`].
#[cold]
#[inline(never)]
fn record_wait_start(recorder: &Recorder, on: u64) -> WaitToken {
    recorder.wait_start(|| job::current_job().map(|j| j.id), on)
}

/// Unwinds out of a provider with a failed read's error (module doc): the
/// engine makes it the calling query's result.
pub(crate) fn unwind_error(e: QueryError) -> ! {
    panic::resume_unwind(Box::new(ErrorUnwind(e)))
}

/// Breaks a cycle from the code that closed it (or a waiter on it): unwinds
/// to the cycle's jobs (see `cycle.rs`). While the thread is already
/// unwinding (a read from a `Drop` during a panic) a second unwind would
/// abort the process, so the read returns `QueryError::Cycle` instead; the
/// cycle's jobs are marked and still publish their recover values.
fn unwind_cycle<V>(unwind: Arc<CycleUnwind>) -> Result<V, QueryError> {
    if std::thread::panicking() {
        return Err(QueryError::Cycle(unwind.cycle.clone()));
    }
    panic::resume_unwind(Box::new(CycleUnwindPayload(unwind)))
}

/// An engine invariant is broken (a bug in Weft, not in a provider):
/// unwinding through the engine could leave waiters hanging or memos
/// half-made, so the process stops here with the message.
#[cold]
#[inline(never)]
pub(crate) fn internal_error(what: &str) -> ! {
    eprintln!("weft: internal error: {what}; aborting");
    std::process::abort()
}

fn panicked<Q: Query>(key: &Q::Key, payload: &(dyn Any + Send)) -> QueryError {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    QueryError::Panicked {
        query: Q::NAME,
        key: format!("{key:?}"),
        message,
    }
}
