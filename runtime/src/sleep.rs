//! Idle workers park; new work or a wake-up unparks exactly the worker that
//! needs it (no thundering herd, no spinning at idle: rayon#642 is the
//! cautionary tale).
//!
//! # Protocol
//!
//! Each worker has a slot `{ sleeping, notified }` under its own mutex, with
//! a condvar. An idle worker `w` runs [`Sleep::park`]:
//!
//! 1. adds itself to the idle list (a mutex-protected stack) and increments
//!    `num_idle`;
//! 2. `fence(SeqCst)`;
//! 3. locks its slot; if `notified`, consumes it and returns;
//! 4. re-checks every source of work (`has_work`: mailbox, deques, injector);
//!    if any, returns;
//! 5. waits on its condvar until `notified` (or termination).
//!
//! Two kinds of wakers:
//!
//! - **New task** ([`Sleep::notify_new_work`]), after pushing to a deque or
//!   the injector: `fence(SeqCst)`, then if `num_idle > 0` pops one idle
//!   worker and notifies it.
//! - **Fiber made runnable** ([`Sleep::notify_worker`]), after pushing into
//!   worker `w`'s mailbox: notifies `w` itself, since only `w` may resume it.
//!
//! # Lost wake-ups
//!
//! *New task.* The waker writes the task then reads `num_idle`; the idler
//! writes `num_idle` then reads the queues (step 4). Both pairs are separated
//! by `SeqCst` fences, so (Dekker) at least one side sees the other: either
//! the idler finds the task in step 4, or the waker sees `num_idle > 0` and
//! notifies some idle worker. The idle list may hand the wake-up to a
//! different idle worker than the one that raced; that one will also find
//! the task, because the task was pushed before the fence.
//!
//! *Targeted.* The waker pushes to the mailbox, then sets `notified` under
//! `w`'s slot mutex. If the waker takes the mutex first, `w` sees `notified`
//! in step 3. Otherwise `w` holds the mutex through steps 3-5, and the waker
//! can take it only once `w` waits (the condvar releases it); then it sets
//! `notified` and signals. Either way `w` does not sleep through it.
//!
//! A stale `notified` costs one extra loop of the worker, nothing more.

use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicBool, AtomicUsize, Condvar, Mutex, Ordering};

/// The sleep state of a worker pool.
pub(crate) struct Sleep {
    idle: Mutex<Vec<usize>>,
    num_idle: AtomicUsize,
    slots: Box<[CachePadded<Slot>]>,
    terminate: AtomicBool,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    cond: Condvar,
}

#[derive(Default)]
struct SlotState {
    sleeping: bool,
    notified: bool,
}

impl Sleep {
    pub(crate) fn new(workers: usize) -> Sleep {
        Sleep {
            idle: Mutex::new(Vec::with_capacity(workers)),
            num_idle: AtomicUsize::new(0),
            slots: (0..workers).map(|_| CachePadded::default()).collect(),
            terminate: AtomicBool::new(false),
        }
    }

    /// Whether the pool is shutting down.
    pub(crate) fn terminating(&self) -> bool {
        // Acquire: pairs with the Release in `terminate`.
        self.terminate.load(Ordering::Acquire)
    }

    /// Asks every worker to stop and wakes them all.
    pub(crate) fn terminate(&self) {
        // Release: a worker that sees the flag sees everything before it.
        self.terminate.store(true, Ordering::Release);
        self.notify_all();
    }

    /// Wakes every worker (or makes its next park return at once).
    pub(crate) fn notify_all(&self) {
        for w in 0..self.slots.len() {
            self.notify_worker(w);
        }
    }

    /// Parks worker `w` until it is notified, unless `has_work` finds
    /// something after `w` announced itself idle. See the module doc.
    pub(crate) fn park(&self, w: usize, has_work: impl Fn() -> bool) {
        {
            let mut idle = self.idle.lock();
            idle.push(w);
            self.num_idle.fetch_add(1, Ordering::Relaxed);
        }
        // SeqCst: Dekker pairing with the fence in `notify_new_work`.
        fence(Ordering::SeqCst);
        let slot = &self.slots[w];
        let mut state = slot.state.lock();
        if !state.notified && !has_work() && !self.terminating() {
            state.sleeping = true;
            while !state.notified && !self.terminating() {
                slot.cond.wait(&mut state);
            }
            state.sleeping = false;
        }
        state.notified = false;
        drop(state);
        self.leave_idle(w);
    }

    /// Parks worker `w` until it is notified ([`Sleep::notify_worker`]),
    /// unless `has_work` is true, *without* joining the idle list: a
    /// stalled worker (`stall.rs`) must not take the wake-up of new work
    /// from a worker that would run it. Lost wake-ups: the waker pushes
    /// into `w`'s mailbox before it takes `w`'s slot mutex to notify, and
    /// `w` holds that mutex from its check to its wait (as for a targeted
    /// wake-up in `park`).
    /// Returns at `deadline` at the latest.
    #[cfg_attr(not(feature = "fibers"), allow(dead_code))]
    pub(crate) fn park_targeted(
        &self,
        w: usize,
        deadline: std::time::Instant,
        has_work: impl Fn() -> bool,
    ) {
        let slot = &self.slots[w];
        let mut state = slot.state.lock();
        if !state.notified && !has_work() && !self.terminating() {
            state.sleeping = true;
            while !state.notified && !self.terminating() && std::time::Instant::now() < deadline {
                let _ = slot.cond.wait_until(&mut state, deadline);
            }
            state.sleeping = false;
        }
        state.notified = false;
    }

    fn leave_idle(&self, w: usize) {
        let mut idle = self.idle.lock();
        if let Some(pos) = idle.iter().position(|&x| x == w) {
            idle.swap_remove(pos);
            self.num_idle.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A task was pushed: wake one idle worker, if any.
    pub(crate) fn notify_new_work(&self) {
        // SeqCst: Dekker pairing with the fence in `park`.
        fence(Ordering::SeqCst);
        if self.num_idle.load(Ordering::Relaxed) == 0 {
            return;
        }
        let w = {
            let mut idle = self.idle.lock();
            let w = idle.pop();
            if w.is_some() {
                self.num_idle.fetch_sub(1, Ordering::Relaxed);
            }
            w
        };
        if let Some(w) = w {
            self.notify_worker(w);
        }
    }

    /// Wakes worker `w` (its mailbox has a runnable fiber), or makes its next
    /// `park` return at once.
    pub(crate) fn notify_worker(&self, w: usize) {
        let slot = &self.slots[w];
        let mut state = slot.state.lock();
        state.notified = true;
        if state.sleeping {
            slot.cond.notify_one();
        }
    }
}
