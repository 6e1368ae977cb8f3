//! Tasks on `corosensei` coroutines (fibers mode).
//!
//! Every task a worker starts gets its own fiber, on a stack from the pool
//! (`stack.rs`), so that a task that waits can suspend and free its worker.
//! A fiber that finishes gives its stack back for reuse (~20 ns instead of a
//! fresh `mmap` of ~10 µs).
//!
//! # Suspend and resume
//!
//! A fiber that must wait first waits briefly on its own thread
//! (`wait_briefly`: up to 20 µs, yielding, while no other fiber of its
//! worker is runnable): most waits end that soon, and a wait that ends
//! without parking costs no switch and starts no task that would collide
//! with the same queries in progress. Then it parks: it stores the
//! [`Latch`] in the worker-local `PENDING` cell and switching back to its worker ([`suspend_current`]).
//! The worker, now on its own stack, files the fiber in its [`FiberSet`]
//! and only then registers it with the latch (`Latch::register_fiber`). So
//! a waker never sees a fiber that is still running (see `latch.rs`). A set
//! latch pushes the fiber's slot index into the home worker's mailbox; only
//! the home worker pops it and resumes the fiber: fibers never migrate.
//!
//! The task context and the strand id (`context.rs`) and the
//! current-yielder pointer are thread-locals; a fiber saves them before it
//! switches away and restores them when it is resumed, so other fibers on
//! the same worker see their own.
//!
//! # Panics
//!
//! Task closures catch their own panics, so nothing unwinds across a switch.
//! A fiber never suspends while its thread is unwinding: std's panic count
//! is per thread, and another fiber resumed on the thread would observe
//! `std::thread::panicking()`. Such a wait blocks the thread instead.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::context::replace_context;
use crate::latch::{FiberWaiter, Latch};
use crate::registry::{AbortOnUnwind, Task, WorkerThread};
use crate::stack::{FiberStack, FiberStackState, StackBoundsGuard};
use crate::stall::FRESH_NS;

type Fiber = Coroutine<(), (), (), FiberStack>;

thread_local! {
    /// The yielder of the fiber running on this thread; null on the worker's
    /// own stack.
    static YIELDER: Cell<*const Yielder<(), ()>> = const { Cell::new(std::ptr::null()) };
    /// The latch a fiber is about to wait on, handed to the worker across the
    /// switch.
    static PENDING: RefCell<Option<Latch>> = const { RefCell::new(None) };
}

/// A suspended fiber and the bounds (and activity label) of its stack.
struct Parked {
    fiber: Fiber,
    state: FiberStackState,
}

/// The suspended fibers of one worker, by slot index. Touched only by the
/// worker's main loop (never from inside a fiber), so the `RefCell` borrows
/// never overlap a switch.
pub(crate) struct FiberSet {
    slots: RefCell<Vec<Option<Parked>>>,
    free: RefCell<Vec<usize>>,
    /// Number of parked fibers (filled slots).
    parked: Cell<usize>,
}

impl FiberSet {
    pub(crate) fn new() -> FiberSet {
        FiberSet {
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            parked: Cell::new(0),
        }
    }

    /// Number of parked fibers of this worker (runnable ones included).
    pub(crate) fn parked(&self) -> usize {
        self.parked.get()
    }

    /// Starts `task` on a new fiber and runs it until it finishes or waits.
    pub(crate) fn start(&self, worker: &WorkerThread, task: Task) {
        let stack = match worker.registry.stacks.take() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("weft: cannot allocate a fiber stack: {e}");
                std::process::abort();
            }
        };
        let state = FiberStackState::new(&stack);
        let fiber = Coroutine::with_stack(stack, move |yielder: &Yielder<(), ()>, ()| {
            YIELDER.with(|y| y.set(yielder));
            task.run();
            YIELDER.with(|y| y.set(std::ptr::null()));
        });
        // Pile-up control (`stall.rs`): did the new fiber park early?
        let started = Instant::now();
        let parked = self.run(worker, Parked { fiber, state });
        if parked && started.elapsed() < Duration::from_nanos(FRESH_NS) {
            worker.stall.fresh_park(&worker.registry.stalls);
        } else {
            worker.stall.end_streak();
        }
    }

    /// Resumes the parked fiber in `slot` (popped from the mailbox).
    pub(crate) fn resume(&self, worker: &WorkerThread, slot: usize) {
        let parked = self.slots.borrow_mut()[slot]
            .take()
            .expect("weft: mailbox named an empty fiber slot");
        self.free.borrow_mut().push(slot);
        self.parked.set(self.parked.get() - 1);
        self.run(worker, parked);
    }

    /// Runs `parked` until it finishes (`false`) or parks on a latch
    /// (`true`).
    fn run(&self, worker: &WorkerThread, mut parked: Parked) -> bool {
        let result = {
            let _bounds = StackBoundsGuard::enter_fiber(&mut parked.state);
            parked.fiber.resume(())
        };
        match result {
            CoroutineResult::Yield(()) => {
                let latch = PENDING
                    .with(|p| p.borrow_mut().take())
                    .expect("weft: fiber suspended without a latch");
                let slot = self.insert(parked);
                let waiter = FiberWaiter {
                    registry: worker.registry.clone(),
                    worker: worker.index,
                    fiber: slot,
                };
                if !latch.register_fiber(waiter) {
                    // Set between the fiber's check and now: runnable at once.
                    worker.registry.wake_fiber(worker.index, slot);
                }
                true
            }
            CoroutineResult::Return(()) => {
                worker.registry.stacks.give_back(parked.fiber.into_stack());
                false
            }
        }
    }

    fn insert(&self, parked: Parked) -> usize {
        self.parked.set(self.parked.get() + 1);
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = Some(parked);
                i
            }
            None => {
                slots.push(Some(parked));
                slots.len() - 1
            }
        }
    }

    /// At worker exit: drops fibers that are still suspended. Dropping a
    /// suspended coroutine unwinds its stack (running destructors), then the
    /// stacks go back to the pool.
    pub(crate) fn shutdown(&self, worker: &WorkerThread) {
        let parked: Vec<Parked> = self.slots.borrow_mut().drain(..).flatten().collect();
        self.free.borrow_mut().clear();
        for mut p in parked {
            let _bounds = StackBoundsGuard::enter_fiber(&mut p.state);
            p.fiber.force_unwind();
            worker.registry.stacks.give_back(p.fiber.into_stack());
        }
    }
}

/// Before a fiber parks: waits up to [`BRIEF_WAIT`] for `latch`, yielding
/// the thread between checks, unless another fiber of this worker becomes
/// runnable. Returns whether the latch was set (then the fiber goes on
/// without parking). Two-phase waiting, as in Karlin et al.'s competitive
/// spinning and as rayon's workers search before they sleep: most waits
/// in a query graph end within microseconds, and a wait that ends without
/// parking costs no switch, frees no worker to start a task that collides
/// with the same in-progress queries, and (by yielding) lends its core to
/// the owner when the machine is loaded.
fn wait_briefly(latch: &Latch) -> bool {
    WorkerThread::with_current(|w| {
        let Some(w) = w else {
            return false;
        };
        let until = Instant::now() + BRIEF_WAIT;
        loop {
            std::thread::yield_now();
            if latch.probe() {
                return true;
            }
            if !w.registry.mailbox_is_empty(w.index) || Instant::now() >= until {
                return false;
            }
        }
    })
}

/// How long a fiber waits for its latch before it parks: 20 µs, chosen by
/// measurement (`bench/fibers_vs_threads.py`, issue 12's note): without
/// it, `layered --work-us 0` and the `overhead` example at 4 workers on 2
/// cores ran 2.1–2.4× slower than threads, with 6–40× their waits.
const BRIEF_WAIT: Duration = Duration::from_micros(20);

/// Suspends the running fiber until `latch` is set. Returns `false` without
/// doing anything when not on a fiber or while the thread is unwinding.
pub(crate) fn suspend_current(latch: &Latch) -> bool {
    let yielder = YIELDER.with(Cell::get);
    if yielder.is_null() || std::thread::panicking() {
        return false;
    }
    // A `par_for_each` leaf being drained here offers its remaining items
    // to the worker before this fiber parks (`join.rs`).
    crate::join::offer_pending();
    if wait_briefly(latch) {
        return true;
    }
    PENDING.with(|p| *p.borrow_mut() = Some(latch.clone()));
    YIELDER.with(|y| y.set(std::ptr::null()));
    let ctx = replace_context(None);
    let strand_id = crate::context::replace_strand(0);
    let leaves = crate::join::take_leaves();
    let strand = crate::trace::switch_out();
    let guard = AbortOnUnwind("a fiber switch unwound");
    // SAFETY: `yielder` was set by this fiber's own coroutine body (in
    // `FiberSet::start`) from the `&Yielder` corosensei passed it, and this
    // code runs inside that same coroutine (YIELDER is reset to null
    // whenever control is on the worker's stack), so the yielder is alive.
    unsafe { &*yielder }.suspend(());
    std::mem::forget(guard);
    crate::trace::switch_in(strand);
    crate::join::restore_leaves(leaves);
    crate::context::replace_strand(strand_id);
    replace_context(ctx);
    YIELDER.with(|y| y.set(yielder));
    true
}
