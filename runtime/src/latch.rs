//! Latches: one-shot completion signals whose waiters are suspended fibers
//! or blocked OS threads (as rayon's `LockLatch` and rustc's `QueryLatch`).
//!
//! # Protocol
//!
//! A [`Latch`] starts unset. [`Latch::set`] sets it once; every waiter,
//! present or future, then proceeds. A waiter is one of:
//!
//! - a **fiber** (fibers mode, on a worker, not unwinding): it suspends, and
//!   *after* the switch back to its worker has finished, the worker calls
//!   [`Latch::register_fiber`] (as Go's `gopark` runs its unlock function on
//!   the scheduler stack). So a waker can never resume a fiber that is still
//!   running: the fiber becomes visible to wakers only once it is parked.
//! - a **thread** (threads mode, serial mode, a non-worker thread, or a fiber
//!   whose thread is unwinding): it blocks on the latch's condvar.
//!
//! # Lost wake-ups
//!
//! `state` (a mutex) orders every registration against `set`:
//!
//! - `set` flips `set` to `true` *while holding the mutex*, takes the list of
//!   fiber waiters and notifies thread waiters before releasing it.
//! - `register_fiber` checks `set` *under the mutex*: if already set it
//!   returns `false` and the worker makes the fiber runnable itself; otherwise
//!   the fiber is in the list, and the later `set` (which must take the mutex
//!   after us) finds it.
//! - A blocked thread re-checks `set` under the mutex before each condvar
//!   wait, and `set` notifies under the same mutex, so the notification
//!   cannot fall between the check and the wait.
//!
//! Hence every waiter registered before `set` is woken by it, and every
//! registration after `set` sees it set. A fiber is pushed into its home
//! worker's mailbox exactly once per suspension.
//!
//! # Memory ordering
//!
//! `set` stores `true` with `Release` after the setter's writes (for example
//! a memo value); [`Latch::probe`] loads with `Acquire`, so a waiter that
//! sees the latch set also sees those writes. Paths through the mutex are
//! ordered by the mutex itself.
//!
//! # Lifetime
//!
//! The latch lives in an `Arc`: a setter may still be inside `set` (unlocking
//! the mutex, notifying) when the woken waiter returns and drops its handle.

use std::sync::Arc;

use crate::registry::{self, Registry};
use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, Ordering};

/// A one-shot latch. Cloning gives another handle to the same latch.
///
/// Waiting suspends the current fiber in fibers mode and blocks the thread
/// otherwise; see the module documentation for the protocol.
#[derive(Clone, Default)]
pub struct Latch {
    inner: Arc<LatchInner>,
}

#[derive(Default)]
struct LatchInner {
    set: AtomicBool,
    state: Mutex<Waiters>,
    cond: Condvar,
}

#[derive(Default)]
struct Waiters {
    /// Suspended fibers to make runnable on `set`.
    fibers: Vec<FiberWaiter>,
    /// Number of threads blocked on `cond`.
    threads: usize,
}

/// A parked fiber: its home worker and its slot in that worker's fiber set.
#[cfg_attr(not(feature = "fibers"), allow(dead_code))]
pub(crate) struct FiberWaiter {
    pub(crate) registry: Arc<Registry>,
    pub(crate) worker: usize,
    pub(crate) fiber: usize,
}

impl std::fmt::Debug for Latch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latch").field("set", &self.probe()).finish()
    }
}

impl Latch {
    /// A new, unset latch.
    pub fn new() -> Latch {
        Latch::default()
    }

    /// Makes the latch unset again, so that one allocation serves many
    /// waits (the query engine pools its job records, latch included).
    /// Only a latch whose handle this is alone is reset in place: then no
    /// waiter, waker or fiber registration can still reach it. Otherwise
    /// this handle gets a new latch and the others keep the old one.
    pub fn reset(&mut self) {
        match Arc::get_mut(&mut self.inner) {
            // `get_mut` saw the other handles gone (`Acquire`): their
            // accesses happen before ours. A set latch has no fiber
            // waiters left (`set` took them) and no blocked thread (each
            // holds a handle while it blocks).
            Some(inner) => inner.set = AtomicBool::new(false),
            None => *self = Latch::new(),
        }
    }

    /// Whether the latch is set. `Acquire`: after `true`, the setter's
    /// writes before [`set`](Latch::set) are visible.
    #[inline]
    pub fn probe(&self) -> bool {
        self.inner.set.load(Ordering::Acquire)
    }

    /// Sets the latch and wakes every waiter. Setting twice is harmless.
    pub fn set(&self) {
        if self.probe() {
            return;
        }
        let fibers = {
            let mut state = self.inner.state.lock();
            // Release: publishes the setter's writes to `probe` (see module doc).
            self.inner.set.store(true, Ordering::Release);
            if state.threads > 0 {
                self.inner.cond.notify_all();
            }
            std::mem::take(&mut state.fibers)
        };
        for w in fibers {
            w.registry.wake_fiber(w.worker, w.fiber);
        }
    }

    /// Waits until the latch is set: suspends the current fiber (fibers mode),
    /// or blocks the OS thread (threads and serial mode, non-worker threads,
    /// and a fiber whose thread is unwinding, since std's panic count is per
    /// thread and must not leak into another fiber).
    ///
    /// In threads mode a worker hands its jobserver token back while blocked.
    ///
    /// # Panics
    ///
    /// Never by itself. Waiting in serial mode on a latch that only the same
    /// thread could set blocks forever; the query engine never does that (an
    /// in-progress query in serial mode is a cycle, found before any wait).
    pub fn wait(&self) {
        if self.probe() {
            return;
        }
        if registry::suspend_current_fiber(self) {
            debug_assert!(self.probe(), "fiber resumed before its latch was set");
            return;
        }
        registry::block_current_thread(|| self.block_thread());
    }

    /// Blocks the calling OS thread until the latch is set.
    pub(crate) fn block_thread(&self) {
        let mut state = self.inner.state.lock();
        while !self.inner.set.load(Ordering::Acquire) {
            state.threads += 1;
            self.inner.cond.wait(&mut state);
            state.threads -= 1;
        }
    }

    /// Registers a fiber that has *already* switched away. Returns `false`
    /// when the latch is already set: the caller must make the fiber runnable
    /// itself. See the module doc for why this cannot lose a wake-up.
    #[cfg_attr(not(feature = "fibers"), allow(dead_code))]
    pub(crate) fn register_fiber(&self, waiter: FiberWaiter) -> bool {
        let mut state = self.inner.state.lock();
        if self.inner.set.load(Ordering::Relaxed) {
            return false;
        }
        state.fibers.push(waiter);
        true
    }
}

/// A counting latch: set when its count drops to zero, as rayon's
/// `CountLatch`. Used by [`scope`](crate::scope) to wait for every spawned
/// task.
#[derive(Debug)]
pub(crate) struct CountLatch {
    count: AtomicUsize,
    /// Made by whoever first needs it: the owner about to wait, or the
    /// decrement that reaches zero. Most counting latches (a `par_for_each`
    /// that offered no helper) never need one, and never allocate it.
    latch: std::sync::OnceLock<Latch>,
}

impl CountLatch {
    /// A counting latch with an initial count (the owner's own reference).
    pub(crate) fn new(count: usize) -> CountLatch {
        CountLatch {
            count: AtomicUsize::new(count),
            latch: std::sync::OnceLock::new(),
        }
    }

    /// One more thing to wait for.
    pub(crate) fn increment(&self) {
        // Relaxed: the owner holds a count while it increments, so the count
        // cannot reach zero concurrently.
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// One thing finished; sets the latch at zero.
    pub(crate) fn decrement(&self) {
        // AcqRel: the decrement that reaches zero must see every other
        // task's writes (Acquire) before setting the latch, and publish its
        // own (Release).
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A handle of our own: the owner may return (and drop this
            // counting latch) as soon as `set` has stored the flag, while
            // `set` still unlocks the latch's mutex.
            let latch = self.latch.get_or_init(Latch::new).clone();
            latch.set();
        }
    }

    /// The owner drops its own count and waits until the count is zero.
    /// When the owner's decrement is the last, nobody else is left to wait
    /// for and the latch is not touched (no lock, no wake-up): the common
    /// case of a `par_for_each` that offered no helper.
    pub(crate) fn release_and_wait(&self) {
        // AcqRel: as in `decrement`; the Acquire also orders every other
        // decrement (and the writes before it) before the owner goes on.
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            return;
        }
        self.latch.get_or_init(Latch::new).wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_before_wait_does_not_block() {
        let l = Latch::new();
        l.set();
        l.wait();
        assert!(l.probe());
    }

    #[test]
    fn reset_unsets_a_lone_latch_and_replaces_a_shared_one() {
        let mut l = Latch::new();
        l.set();
        l.reset();
        assert!(!l.probe(), "a lone latch is reset in place");
        let other = l.clone();
        l.set();
        l.reset();
        assert!(!l.probe(), "this handle gets a new latch");
        assert!(other.probe(), "the other handle keeps the set one");
    }

    #[test]
    fn wakes_a_blocked_thread() {
        let l = Latch::new();
        let l2 = l.clone();
        let t = std::thread::spawn(move || l2.wait());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!t.is_finished());
        l.set();
        t.join().unwrap();
    }

    #[test]
    fn count_latch_sets_at_zero() {
        let c = Arc::new(CountLatch::new(1));
        for _ in 0..4 {
            c.increment();
        }
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || c.decrement())
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(c.latch.get().is_none_or(|l| !l.probe()));
        c.release_and_wait();
        assert_eq!(c.count.load(Ordering::Relaxed), 0);
    }
}
