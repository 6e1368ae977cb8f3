//! The fixed worker set: worker threads, their deques, the injector, the
//! worker main loop and [`Runtime::block_on`].
//!
//! # Structure (as rayon-core's `registry.rs`)
//!
//! A [`Registry`] owns one `crossbeam_deque::Worker` per worker thread (held
//! by that thread), the matching `Stealer`s, a global `Injector` for tasks
//! from outside the pool, one mailbox per worker for fibers made runnable by
//! a latch, the sleep state and the jobserver tokens.
//!
//! # The main loop
//!
//! A worker repeats, in this order:
//! 1. (fibers) resume a fiber from its mailbox: finishing started work first
//!    frees stacks and unblocks waiters;
//! 2. pop its own deque (LIFO), then the injector, then steal (FIFO) from the
//!    other workers, starting at a pseudo-random victim;
//! 3. otherwise hand its jobserver token back and park (see `sleep.rs`).
//!
//! Stealing happens only here, in the main loop of a worker with nothing to
//! run. A task that waits never steals: in fibers mode it suspends and the
//! worker comes back here; in threads mode it blocks its thread (rust#118205
//! and rayon#592 show what running stolen work on a waiter's stack costs).
//!
//! A suspended fiber is resumed only by the worker that started it (its
//! *home* worker): `corosensei::Coroutine` is `!Send`, and LLVM may cache a
//! thread-local's address across a suspend (llvm#98479).

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_queue::SegQueue;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::context::{current_context, ContextGuard, TaskContext};
use crate::jobserver::{Jobserver, Tokens};
use crate::latch::Latch;
use crate::sleep::Sleep;
use crate::Mode;

/// A unit of work: a closure and the context of the code that spawned it.
pub(crate) struct Task {
    func: Box<dyn FnOnce() + Send + 'static>,
    ctx: TaskContext,
    /// For a task that its owner may run inline instead (`join`'s `b`, a
    /// scope's spawn): the claim flag, `true` once someone took the work.
    /// Points into an `Arc` owned by `func`, so it lives as long as the task.
    claimed: *const AtomicBool,
}

// SAFETY: `func` is `Send`; `claimed` points into an `Arc` (of a `Sync`
// job) kept alive by `func`, and is only read atomically.
unsafe impl Send for Task {}

impl Task {
    /// Wraps a closure that must not unwind (callers catch panics inside it).
    pub(crate) fn new(func: Box<dyn FnOnce() + Send + 'static>) -> Task {
        Task {
            func,
            ctx: current_context(),
            claimed: std::ptr::null(),
        }
    }

    /// Makes the task run in `ctx` rather than its spawner's context.
    pub(crate) fn set_context(&mut self, ctx: TaskContext) {
        self.ctx = ctx;
    }

    /// A task whose work may be claimed by its owner first.
    ///
    /// # Safety
    ///
    /// `claimed` must stay valid as long as the task lives: it must point
    /// into an `Arc` (of a `Sync` value) that `func` owns, so that the flag
    /// is dropped only with `func`, after every `is_claimed` check.
    pub(crate) unsafe fn with_claim(
        func: Box<dyn FnOnce() + Send + 'static>,
        claimed: *const AtomicBool,
    ) -> Task {
        Task {
            claimed,
            ..Task::new(func)
        }
    }

    /// Whether the owner already took this task's work: then running it
    /// would do nothing, and the worker drops it without starting a fiber.
    pub(crate) fn is_claimed(&self) -> bool {
        // SAFETY: non-null `claimed` points into an `Arc` owned by `func`
        // (the contract of `with_claim`), which lives as long as `self`.
        // Relaxed: a stale `false` only costs running the (no-op) task.
        !self.claimed.is_null() && unsafe { (*self.claimed).load(Ordering::Relaxed) }
    }

    /// Runs the task with its spawner's context. A panic escaping the task
    /// is an internal invariant violation: it aborts instead of unwinding
    /// through the scheduler (as rayon's `AbortIfPanic`).
    pub(crate) fn run(self) {
        let _ctx = ContextGuard::enter(self.ctx);
        let _strand_id = crate::context::StrandGuard::fresh();
        let _strand = crate::trace::enter_task();
        let guard = AbortOnUnwind("a task unwound into the scheduler");
        (self.func)();
        std::mem::forget(guard);
    }
}

/// Aborts the process if dropped during unwinding.
pub(crate) struct AbortOnUnwind(pub(crate) &'static str);

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        eprintln!("weft: internal error: {}; aborting", self.0);
        std::process::abort();
    }
}

/// Erases the lifetime of a boxed task closure.
///
/// # Safety
///
/// The caller must not return (or unwind) past `'a` before the closure has
/// run to completion and been dropped, e.g. by waiting on a latch that the
/// closure sets as its last action.
pub(crate) unsafe fn erase_lifetime<'a>(
    f: Box<dyn FnOnce() + Send + 'a>,
) -> Box<dyn FnOnce() + Send + 'static> {
    // SAFETY: same layout (only the lifetime differs); the caller keeps every
    // borrow alive until the closure is done, per this function's contract.
    unsafe { std::mem::transmute(f) }
}

/// Runtime ids: process-wide, never reused (0 means none).
static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// The shared state of a worker pool.
pub(crate) struct Registry {
    /// The id of the runtime that owns this pool ([`current_worker`]).
    id: u64,
    mode: Mode,
    injector: Injector<Task>,
    stealers: Box<[Stealer<Task>]>,
    mailboxes: Box<[CachePadded<SegQueue<usize>>]>,
    pub(crate) sleep: Sleep,
    pub(crate) tokens: Tokens,
    #[cfg(feature = "fibers")]
    pub(crate) stacks: crate::stack::StackPool,
    #[cfg(feature = "fibers")]
    pub(crate) stalls: crate::stall::Stalls,
}

impl Registry {
    pub(crate) fn num_threads(&self) -> usize {
        self.stealers.len()
    }

    /// Pushes a task from outside the pool (or from another pool).
    pub(crate) fn inject(&self, task: Task) {
        self.injector.push(task);
        self.sleep.notify_new_work();
    }

    /// Makes a parked fiber runnable on its home worker.
    pub(crate) fn wake_fiber(&self, worker: usize, fiber: usize) {
        self.mailboxes[worker].push(fiber);
        self.sleep.notify_worker(worker);
    }

    /// Whether worker `w`'s mailbox (runnable fibers) is empty.
    #[cfg_attr(not(feature = "fibers"), allow(dead_code))]
    pub(crate) fn mailbox_is_empty(&self, w: usize) -> bool {
        self.mailboxes[w].is_empty()
    }

    /// Whether worker `w` could find something to do (for `Sleep::park`).
    fn has_work(&self, w: usize, local: &Worker<Task>) -> bool {
        !self.mailboxes[w].is_empty()
            || !local.is_empty()
            || !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
    }
}

/// The state a worker thread keeps for itself. Lives on the worker's own
/// stack for the whole life of the thread; reached through `WORKER`.
pub(crate) struct WorkerThread {
    pub(crate) registry: Arc<Registry>,
    pub(crate) index: usize,
    deque: Worker<Task>,
    rng: Cell<u64>,
    #[cfg(feature = "fibers")]
    pub(crate) fibers: crate::fiber::FiberSet,
    #[cfg(feature = "fibers")]
    pub(crate) stall: crate::stall::StallState,
}

thread_local! {
    static WORKER: Cell<*const WorkerThread> = const { Cell::new(std::ptr::null()) };
    /// The serial-mode `block_on` running on this thread, innermost: its
    /// runtime's id (0: none) and whether it is that runtime's worker 0.
    static SERIAL: Cell<(u64, bool)> = const { Cell::new((0, false)) };
}

/// The worker running the current code, as `(runtime id, worker index)`:
/// worker `i` of a pool, or worker 0 of a serial runtime inside the one
/// serial `block_on` that holds its identity (see [`Runtime::block_on`]).
/// `WorkerLocal` indexes its slots with it.
pub(crate) fn current_worker() -> Option<(u64, usize)> {
    WorkerThread::with_current(|w| w.map(|w| (w.registry.id, w.index))).or_else(|| {
        let (id, worker) = SERIAL.with(Cell::get);
        worker.then_some((id, 0))
    })
}

impl WorkerThread {
    /// The worker running on this thread, if any.
    #[inline]
    pub(crate) fn with_current<R>(f: impl FnOnce(Option<&WorkerThread>) -> R) -> R {
        let ptr = WORKER.with(Cell::get);
        // SAFETY: `WORKER` is set only by `worker_main` to a `WorkerThread`
        // that lives on this thread's stack until `worker_main` returns, and
        // is reset to null before that; every fiber of this worker runs on
        // this thread strictly inside that interval.
        f(unsafe { ptr.as_ref() })
    }

    /// Pushes a task on this worker's deque and wakes an idle worker.
    pub(crate) fn push(&self, task: Task) {
        self.deque.push(task);
        self.registry.sleep.notify_new_work();
    }

    fn find_task(&self) -> Option<Task> {
        if let Some(t) = self.deque.pop() {
            return Some(t);
        }
        loop {
            match self.registry.injector.steal_batch_and_pop(&self.deque) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
        let n = self.registry.stealers.len();
        if n <= 1 {
            return None;
        }
        // xorshift: a cheap pseudo-random first victim spreads the steals.
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        let start = (x as usize) % n;
        loop {
            let mut retry = false;
            for k in 0..n {
                let victim = (start + k) % n;
                if victim == self.index {
                    continue;
                }
                match self.registry.stealers[victim].steal() {
                    Steal::Success(t) => {
                        crate::trace::record(crate::trace::Event::Steal { victim });
                        return Some(t);
                    }
                    Steal::Empty => {}
                    Steal::Retry => retry = true,
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn main_loop(&self) {
        let reg = &*self.registry;
        loop {
            #[cfg(feature = "fibers")]
            if self.while_stalled() {
                continue;
            }
            // Take a token before taking work, so that no task sits with a
            // worker that waits for a token (`acquire` is a no-op for a
            // worker that holds one).
            if !reg.tokens.is_busy(self.index) && reg.has_work(self.index, &self.deque) {
                reg.tokens.acquire(self.index);
            }
            #[cfg(feature = "fibers")]
            if let Some(fiber) = reg.mailboxes[self.index].pop() {
                reg.tokens.acquire(self.index);
                self.fibers.resume(self, fiber);
                continue;
            }
            if let Some(task) = self.find_task() {
                reg.tokens.acquire(self.index);
                self.run_task(task);
                continue;
            }
            if reg.sleep.terminating() {
                break;
            }
            // Search a little before sleeping, as rayon's workers do: work
            // that arrives within a few yields (the next `block_on`, the other
            // half of a `join`) then costs no futex wake-up. Bounded, so an
            // idle pool still sleeps (~0% CPU).
            if self.search_briefly() {
                continue;
            }
            reg.tokens.release(self.index);
            crate::trace::record(crate::trace::Event::Park);
            reg.sleep
                .park(self.index, || reg.has_work(self.index, &self.deque));
            crate::trace::record(crate::trace::Event::Unpark);
        }
        reg.tokens.release(self.index);
    }

    /// One step of a stalled worker (`stall.rs`): sleeps until one of its
    /// fibers is runnable, a worker blocks or the stall times out, then
    /// ends the stall. Returns `false` when the worker is not stalled.
    #[cfg(feature = "fibers")]
    fn while_stalled(&self) -> bool {
        let reg = &*self.registry;
        let Some(deadline) = self.stall.check(&reg.stalls) else {
            return false;
        };
        let mailbox = &reg.mailboxes[self.index];
        if mailbox.is_empty() && !reg.sleep.terminating() {
            reg.tokens.release(self.index);
            crate::trace::record(crate::trace::Event::Park);
            reg.sleep.park_targeted(self.index, deadline, || {
                !mailbox.is_empty() || reg.stalls.any_blocked()
            });
            crate::trace::record(crate::trace::Event::Unpark);
        }
        self.stall.end(&reg.stalls);
        true
    }

    /// Yields up to [`SEARCH_ROUNDS`] times, checking for work after each.
    fn search_briefly(&self) -> bool {
        for _ in 0..SEARCH_ROUNDS {
            std::thread::yield_now();
            if self.registry.has_work(self.index, &self.deque) || self.registry.sleep.terminating()
            {
                return true;
            }
        }
        false
    }

    fn run_task(&self, task: Task) {
        if task.is_claimed() {
            return;
        }
        match self.registry.mode {
            #[cfg(feature = "fibers")]
            Mode::Fibers => self.fibers.start(self, task),
            _ => task.run(),
        }
    }
}

fn worker_main(registry: Arc<Registry>, index: usize, deque: Worker<Task>) {
    let _alt = crate::stack::install_alt_stack_for_thread();
    crate::stack::set_worker_index_for_signal(index);
    let worker = WorkerThread {
        registry,
        index,
        deque,
        rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1)),
        #[cfg(feature = "fibers")]
        fibers: crate::fiber::FiberSet::new(),
        #[cfg(feature = "fibers")]
        stall: crate::stall::StallState::new(),
    };
    WORKER.with(|w| w.set(&worker));
    worker.main_loop();
    #[cfg(feature = "fibers")]
    worker.fibers.shutdown(&worker);
    WORKER.with(|w| w.set(std::ptr::null()));
}

/// Suspends the current fiber until `latch` is set. Returns `false` (and
/// does nothing) when not on a fiber, or while the thread is unwinding.
pub(crate) fn suspend_current_fiber(latch: &Latch) -> bool {
    #[cfg(feature = "fibers")]
    {
        crate::fiber::suspend_current(latch)
    }
    #[cfg(not(feature = "fibers"))]
    {
        let _ = latch;
        false
    }
}

/// Runs `block` (a blocking wait) on this thread. A worker hands its
/// jobserver token back while blocked and takes one again afterwards.
pub(crate) fn block_current_thread(block: impl FnOnce()) {
    let worker = WorkerThread::with_current(|w| w.map(|w| (w.registry.clone(), w.index)));
    match worker {
        Some((reg, index)) => {
            // A `par_for_each` leaf being drained here offers its remaining
            // items to other workers before this thread blocks (`join.rs`).
            crate::join::offer_pending();
            reg.tokens.release(index);
            // Fibers mode: stalled workers must not wait for work that
            // this blocked worker would otherwise take (`stall.rs`).
            #[cfg(feature = "fibers")]
            let fibers = reg.mode == Mode::Fibers;
            #[cfg(feature = "fibers")]
            if fibers {
                reg.stalls.block_start();
                reg.sleep.notify_all();
            }
            let blocked = crate::trace::block_start();
            block();
            crate::trace::block_end(blocked);
            #[cfg(feature = "fibers")]
            if fibers {
                reg.stalls.block_end();
            }
            reg.tokens.acquire(index);
        }
        None => {
            let blocked = crate::trace::block_start();
            block();
            crate::trace::block_end(blocked);
        }
    }
}

/// Whether the code running now may block its thread in a wait while the
/// thread unwinds (a read from a `Drop` during a panic), without risking
/// a hang: `false` only on a fiber whose worker has other fibers, parked or
/// runnable. Such a fiber cannot suspend (std's panic count is per thread,
/// see `fiber.rs`), and what it waits for may need one of those fibers,
/// which only this blocked thread could resume. The query engine then
/// returns an error instead of waiting.
pub fn can_block_while_unwinding() -> bool {
    #[cfg(feature = "fibers")]
    {
        WorkerThread::with_current(|w| {
            w.is_none_or(|w| {
                w.registry.mode != Mode::Fibers
                    || (w.fibers.parked() == 0 && w.registry.mailbox_is_empty(w.index))
            })
        })
    }
    #[cfg(not(feature = "fibers"))]
    {
        true
    }
}

/// The index of the worker running the current code: `Some(i)` on worker `i`
/// of a pool, `Some(0)` inside the serial-mode [`Runtime::block_on`] that
/// holds its runtime's worker identity, `None` elsewhere (also in a serial
/// `block_on` that runs while another thread holds that identity).
pub fn current_worker_index() -> Option<usize> {
    current_worker().map(|(_, index)| index)
}

/// The mode of the runtime running the current code, if any.
pub fn current_mode() -> Option<Mode> {
    WorkerThread::with_current(|w| w.map(|w| w.registry.mode))
        .or_else(|| (SERIAL.with(Cell::get).0 != 0).then_some(Mode::Serial))
}

/// The error of [`Builder::build`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Fibers mode was asked for, but this build has no `fibers` feature.
    #[error("fibers mode is not available: weft-runtime was built without the `fibers` feature (use --mode threads or serial)")]
    FibersUnavailable,
    /// Zero worker threads were asked for.
    #[error("a runtime needs at least one worker thread")]
    NoThreads,
    /// The OS refused to start a worker thread.
    #[error("could not start worker thread {index}: {source}")]
    Spawn {
        /// Which worker.
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Configures a [`Runtime`]: `Runtime::builder().mode(..).threads(n).build()?`.
#[derive(Debug)]
pub struct Builder {
    mode: Mode,
    threads: Option<usize>,
    stack_size: usize,
    jobserver: Jobserver,
}

/// Default fiber stack size: 1 MiB, reserved and committed lazily by the
/// OS; deeper recursion continues on fresh segments through
/// [`ensure_sufficient_stack`](crate::ensure_sufficient_stack).
pub const DEFAULT_STACK_SIZE: usize = 1 << 20;

/// How many times an idle worker yields and looks for work before it parks
/// (rayon's `ROUNDS_UNTIL_SLEEPY` is 32): a few microseconds of searching.
const SEARCH_ROUNDS: usize = 32;

/// Stack size of worker OS threads in threads mode, where tasks run on the
/// worker's own stack: 16 MiB reserved (committed lazily).
const THREAD_STACK_SIZE: usize = 16 << 20;

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            mode: Mode::default_for_platform(),
            threads: None,
            stack_size: DEFAULT_STACK_SIZE,
            jobserver: Jobserver::default(),
        }
    }
}

impl Builder {
    /// The execution mode (default [`Mode::default_for_platform`]).
    pub fn mode(mut self, mode: Mode) -> Builder {
        self.mode = mode;
        self
    }

    /// Number of worker threads (default `std::thread::available_parallelism()`).
    /// Ignored in serial mode, which runs on the caller's thread.
    pub fn threads(mut self, n: usize) -> Builder {
        self.threads = Some(n);
        self
    }

    /// Size of each fiber stack in bytes (default [`DEFAULT_STACK_SIZE`]),
    /// rounded up to whole pages by the stack pool.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Where jobserver tokens come from (default [`Jobserver::FromEnv`]).
    pub fn jobserver(mut self, jobserver: Jobserver) -> Builder {
        self.jobserver = jobserver;
        self
    }

    /// Starts the worker threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::FibersUnavailable`] for fibers mode without the `fibers`
    /// feature, [`BuildError::NoThreads`] for `threads(0)`, and
    /// [`BuildError::Spawn`] when the OS refuses a thread.
    pub fn build(self) -> Result<Runtime, BuildError> {
        let threads = match self.threads {
            Some(0) => return Err(BuildError::NoThreads),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        if self.mode == Mode::Fibers && !Mode::fibers_available() {
            return Err(BuildError::FibersUnavailable);
        }
        // Also in serial mode: an overflow of the caller's stack (or of a
        // segment) is then reported with the query being computed.
        crate::stack::install_overflow_handler();
        // Relaxed: only uniqueness is needed.
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        if self.mode == Mode::Serial {
            return Ok(Runtime {
                inner: Arc::new(RuntimeInner {
                    id,
                    mode: Mode::Serial,
                    registry: None,
                    serial_worker: AtomicBool::new(false),
                    handles: Mutex::new(Vec::new()),
                }),
            });
        }
        let deques: Vec<Worker<Task>> = (0..threads).map(|_| Worker::new_lifo()).collect();
        let registry = Arc::new(Registry {
            id,
            mode: self.mode,
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            mailboxes: (0..threads).map(|_| CachePadded::default()).collect(),
            sleep: Sleep::new(threads),
            tokens: Tokens::new(self.jobserver, threads),
            #[cfg(feature = "fibers")]
            stacks: crate::stack::StackPool::new(self.stack_size),
            #[cfg(feature = "fibers")]
            stalls: crate::stall::Stalls::new(threads),
        });
        let thread_stack = match self.mode {
            Mode::Threads => THREAD_STACK_SIZE.max(self.stack_size),
            _ => 2 << 20,
        };
        let mut handles = Vec::with_capacity(threads);
        for (index, deque) in deques.into_iter().enumerate() {
            let reg = registry.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("weft-worker-{index}"))
                .stack_size(thread_stack)
                .spawn(move || worker_main(reg, index, deque));
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    registry.sleep.terminate();
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(BuildError::Spawn { index, source });
                }
            }
        }
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                id,
                mode: self.mode,
                registry: Some(registry),
                serial_worker: AtomicBool::new(false),
                handles: Mutex::new(handles),
            }),
        })
    }
}

/// A fixed set of worker threads running tasks in one [`Mode`].
///
/// Cheap to clone (an `Arc`); the workers stop and are joined when the last
/// clone is dropped. Build one with [`Runtime::builder`].
///
/// ```
/// use weft_runtime::{Mode, Runtime};
/// let rt = Runtime::builder().mode(Mode::Threads).threads(2).build().unwrap();
/// let (a, b) = rt.block_on(|| weft_runtime::join(|| 1 + 1, || 2 + 2));
/// assert_eq!((a, b), (2, 4));
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    /// Process-wide unique ([`current_worker`]).
    id: u64,
    mode: Mode,
    registry: Option<Arc<Registry>>,
    /// Serial mode: whether a `block_on` holds the identity of worker 0.
    serial_worker: AtomicBool,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        if let Some(reg) = &self.registry {
            reg.sleep.terminate();
            // Wakes a worker blocked waiting for a token held elsewhere.
            reg.tokens.shutdown();
        }
        let current = std::thread::current().id();
        for h in self.handles.get_mut().drain(..) {
            // A runtime dropped from one of its own workers cannot join that
            // worker; it exits on its own once it sees `terminate`.
            if h.thread().id() != current {
                let _ = h.join();
            }
        }
    }
}

impl Runtime {
    /// [`Runtime::block_on`] in serial mode: `f` runs here, as worker 0 of
    /// this runtime if no other thread holds that identity.
    fn serial_block_on<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = SERIAL.with(Cell::get);
        // A serial `block_on` is a strand of its own, unless it is nested in
        // one on this thread (then it runs on the caller's stack).
        let _strand = (previous.0 == 0).then(crate::context::StrandGuard::fresh);
        let worker = if previous.0 == self.inner.id {
            previous.1
        } else {
            // Acquire/Release: the previous holder's uses of worker 0's
            // slots happen before ours.
            !self.inner.serial_worker.swap(true, Ordering::Acquire)
        };
        struct Leave<'a> {
            previous: (u64, bool),
            release: Option<&'a AtomicBool>,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                SERIAL.with(|s| s.set(self.previous));
                if let Some(flag) = self.release {
                    flag.store(false, Ordering::Release);
                }
            }
        }
        let _leave = Leave {
            previous,
            release: (worker && previous.0 != self.inner.id).then_some(&self.inner.serial_worker),
        };
        SERIAL.with(|s| s.set((self.inner.id, worker)));
        f()
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("mode", &self.inner.mode)
            .field("threads", &self.num_threads())
            .finish()
    }
}

impl Runtime {
    /// A builder with the defaults: platform mode, one worker per core,
    /// 1 MiB fiber stacks, jobserver from the environment.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The mode this runtime runs in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The runtime's identity, unique in the process; what `WorkerLocal`
    /// checks its callers against.
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// Number of worker threads; 1 in serial mode (the caller's thread).
    pub fn num_threads(&self) -> usize {
        self.inner.registry.as_ref().map_or(1, |r| r.num_threads())
    }

    /// Busy intervals recorded by the jobserver gate as
    /// `(worker, start_ns, end_ns)` on the process-wide monotonic clock, when
    /// enabled with [`Runtime::enable_busy_log`]; empty otherwise and in
    /// serial mode.
    pub fn busy_log(&self) -> Vec<(usize, u64, u64)> {
        self.inner
            .registry
            .as_ref()
            .map_or_else(Vec::new, |r| r.tokens.busy_intervals())
    }

    /// Fiber stacks currently carved and not freed, in use or pooled: a
    /// leak check for tests (0 in threads and serial mode).
    pub fn live_stacks(&self) -> usize {
        #[cfg(feature = "fibers")]
        if let Some(r) = &self.inner.registry {
            return r.stacks.live_stacks();
        }
        0
    }

    /// Starts recording busy intervals (see [`Runtime::busy_log`]).
    pub fn enable_busy_log(&self) {
        if let Some(r) = &self.inner.registry {
            r.tokens.enable_busy_log();
        }
    }

    /// Runs `f` on a worker (fibers, threads) or inline (serial) and blocks
    /// the calling thread until it returns. Called from a worker of this same
    /// runtime, `f` runs inline.
    ///
    /// In serial mode `f` runs on the calling thread, and several threads
    /// may be in `block_on` at once (sharing a serial engine). The first of
    /// them to enter holds the runtime's one worker identity (worker 0,
    /// what [`current_worker_index`] and `WorkerLocal` see) until it
    /// returns; the others run without one, so no two threads ever share a
    /// worker's slot.
    ///
    /// # Panics
    ///
    /// A panic in `f` is resumed on the caller.
    pub fn block_on<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let Some(reg) = &self.inner.registry else {
            return self.serial_block_on(f);
        };
        let on_this_pool =
            WorkerThread::with_current(|w| w.is_some_and(|w| Arc::ptr_eq(&w.registry, reg)));
        if on_this_pool {
            return f();
        }
        let latch = Latch::new();
        let result: Arc<Mutex<Option<std::thread::Result<R>>>> = Arc::new(Mutex::new(None));
        let task = {
            let latch = latch.clone();
            let result = result.clone();
            let func: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
                let r = panic::catch_unwind(AssertUnwindSafe(f));
                *result.lock() = Some(r);
                latch.set();
            });
            // SAFETY: we wait on `latch` below before returning, and the
            // closure sets it as its very last action; unwinding is caught
            // inside the closure, so it always reaches `set`.
            Task::new(unsafe { erase_lifetime(func) })
        };
        reg.inject(task);
        latch.wait();
        let r = result
            .lock()
            .take()
            .expect("block_on: task finished without a result");
        match r {
            Ok(v) => v,
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}
