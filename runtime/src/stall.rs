//! Pile-up control (fibers mode): a worker whose freshly started fibers
//! keep parking stops starting new tasks for a while, as a blocked thread
//! would, so that ready fibers never wait behind their home worker while
//! another worker idles, and so that waiters give their CPU to the jobs
//! they wait for.
//!
//! # The pile-up
//!
//! A suspended fiber resumes only on the worker that started it (its home
//! worker; see `registry.rs` for why fibers never migrate). Take 400 tasks
//! that each read one slow shared query `Q` *before* their own 2 ms of work
//! (`weft synth --shape fan-in-first`). While worker A computes `Q`, worker
//! B would start task after task, each parking on `Q`'s latch at once: B
//! ends up owning every waiter, and when `Q` is done B runs them all while A
//! idles (1.41× the bound at 2 workers). Blocking threads do not pile up:
//! B blocks on its first waiter and A takes the rest.
//!
//! The same churn hurts on a loaded machine (more runnable threads than
//! cores, as under `cargo build -jN`): when the OS deschedules the owner
//! of a query, every worker that reads it parks a fiber, starts the next
//! task, parks again, and keeps its core busy with waits while the owner
//! waits for a core. A blocked thread sleeps and gives its core away.
//!
//! # The policy
//!
//! A fiber that parks within [`FRESH_NS`] of its start (it did almost no
//! work before waiting) is a *fresh park*. After [`STALL_PARKS`] fresh
//! parks in a row among the fibers one worker started, the worker is
//! *stalled*: it takes no new task (not from its deque, the injector or a
//! victim) and sleeps until one of its fibers is made runnable, as a
//! thread blocked on its first waiter would. Its queued tasks stay
//! stealable, so an idle worker takes them. A task that finishes, or a
//! fiber that parks after doing real work, ends the streak: a task that
//! works and *then* waits (`--shape fan-in`) is what fibers are for, and
//! never stalls its worker. At most `STALL_PARKS` waiters pile up per
//! worker and stall.
//!
//! A stall also ends after a timeout: [`FIRST_STALL`] for the first stall of
//! a streak, twice as long for each further one (a worker that times out
//! starts new tasks again, and two more fresh parks stall it again). So a
//! latch that stays unset for `T` gathers `O(log T)` waiters per worker, far
//! below a worker's share of the work that follows, and a queued task
//! starts within the stall's timeout even when what its worker's fibers
//! wait for needs it and every worker that is not stalled runs a long task.
//!
//! # Progress
//!
//! Besides the timeout, a stalled worker never waits for work that only it
//! could run: at most `workers - 1` workers are stalled at once
//! ([`Stalls::try_enter`] refuses the last one; at one worker nothing ever
//! stalls). A worker that is not stalled never sleeps while any deque is
//! non-empty (`Sleep::park` checks every stealer after announcing itself
//! idle) and is woken by every push, because a stalled worker does not join
//! the idle list (it sleeps with
//! [`Sleep::park_targeted`](crate::sleep::Sleep::park_targeted)). So every
//! queued task is run by a worker that is not stalled, as in threads mode,
//! where a blocked worker runs nothing either.
//!
//! A worker whose thread blocks (a fiber that waits while its thread
//! unwinds, `fiber.rs`) runs nothing until the wait ends, so while one
//! does, every stall ends and none starts ([`Stalls::block_start`] and a
//! wake-up of every worker).
//!
//! A stalled worker sleeps until its mailbox is non-empty, a worker blocks,
//! or the deadline passes. A latch that makes one of its fibers runnable
//! pushes it into the mailbox and then notifies the worker
//! (`Sleep::notify_worker`), after the worker's check or while it waits:
//! the slot mutex orders the two (see `sleep.rs`).

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::sync::{AtomicUsize, Ordering};

/// A fiber that parks within this many nanoseconds of its start did
/// little work before waiting: 200 µs. Chosen by measurement
/// (`bench/fibers_vs_threads.py`, issue 12's note): at 20 µs the
/// `overhead` example's fibers, which compute 20–100 µs of queries before
/// they meet one in progress, never stalled their worker and ran 2–8×
/// slower than threads; at 1 ms fibers lose their edge on `fan-in` with
/// 100 µs tasks.
pub(crate) const FRESH_NS: u64 = 200_000;

/// Fresh parks in a row that stall a worker. One would turn every early
/// wait into a blocked worker (threads mode); two is the first evidence
/// of a pile-up.
pub(crate) const STALL_PARKS: u32 = 2;

/// The longest first stall of a streak: 1 ms, a few hundred fiber starts.
pub(crate) const FIRST_STALL: Duration = Duration::from_millis(1);

/// The longest stall: 16 ms. Beyond it a streak stalls its worker for
/// 16 ms per two fresh parks.
pub(crate) const MAX_STALL: Duration = Duration::from_millis(16);

/// The pool-wide count of stalled workers.
pub(crate) struct Stalls {
    stalled: AtomicUsize,
    /// Workers whose thread blocks in a wait (a fiber waiting while its
    /// thread unwinds): while any does, nobody stalls, so that a task only
    /// the blocked worker would otherwise take is still run.
    blocked: AtomicUsize,
    workers: usize,
}

impl Stalls {
    pub(crate) fn new(workers: usize) -> Stalls {
        Stalls {
            stalled: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            workers,
        }
    }

    /// Counts one more stalled worker, unless every other worker is
    /// stalled already (see the module doc: one worker always stays free).
    fn try_enter(&self) -> bool {
        // Relaxed: the count is the only shared state; a stalled worker's
        // tasks are published by the deque, not by this counter.
        let mut n = self.stalled.load(Ordering::Relaxed);
        loop {
            if n + 1 >= self.workers || self.any_blocked() {
                return false;
            }
            match self
                .stalled
                .compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    fn leave(&self) {
        // Relaxed: as in `try_enter`.
        self.stalled.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether a worker's thread blocks now (also the stalled worker's wake
    /// check beside its mailbox; the deadline bounds its sleep).
    pub(crate) fn any_blocked(&self) -> bool {
        // Relaxed: a stale `false` is corrected by the wake-up that
        // `block_start`'s caller sends every worker.
        self.blocked.load(Ordering::Relaxed) > 0
    }

    /// A worker's thread is about to block; the caller then wakes every
    /// worker (`Sleep::notify_worker`), whose slot mutex orders this store
    /// before the woken worker's check.
    pub(crate) fn block_start(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }

    /// The blocked thread continues.
    pub(crate) fn block_end(&self) {
        self.blocked.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker's streak of fresh parks and its stall, if any. Touched only
/// by the worker's main loop, on the worker's own stack.
pub(crate) struct StallState {
    /// Fresh parks in a row since the streak's last stall.
    count: Cell<u32>,
    /// How long the streak's next stall lasts at most.
    backoff: Cell<Duration>,
    /// The deadline of the stall in progress.
    until: Cell<Option<Instant>>,
}

impl StallState {
    pub(crate) fn new() -> StallState {
        StallState {
            count: Cell::new(0),
            backoff: Cell::new(FIRST_STALL),
            until: Cell::new(None),
        }
    }

    /// A fiber this worker just started parked within [`FRESH_NS`] of its
    /// start.
    pub(crate) fn fresh_park(&self, stalls: &Stalls) {
        let count = self.count.get() + 1;
        self.count.set(count);
        if count >= STALL_PARKS && self.until.get().is_none() && stalls.try_enter() {
            let backoff = self.backoff.get();
            self.backoff.set((backoff * 2).min(MAX_STALL));
            self.count.set(0);
            self.until.set(Some(Instant::now() + backoff));
        }
    }

    /// A started task finished, or parked after real work: the streak ends.
    pub(crate) fn end_streak(&self) {
        self.count.set(0);
        self.backoff.set(FIRST_STALL);
    }

    /// The deadline while the worker is stalled; `None` when it is not.
    /// The deadline, or a blocked worker, ends the stall.
    pub(crate) fn check(&self, stalls: &Stalls) -> Option<Instant> {
        let until = self.until.get()?;
        if !stalls.any_blocked() && Instant::now() < until {
            return Some(until);
        }
        self.end(stalls);
        None
    }

    /// Ends the stall in progress, if any (one of the worker's fibers is
    /// runnable, or the pool shuts down); the streak goes on.
    pub(crate) fn end(&self, stalls: &Stalls) {
        if self.until.take().is_some() {
            stalls.leave();
        }
    }
}
