//! Loom models of the wait/wake, sleep/unpark and slot-claim protocols.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p weft-runtime --lib loom`.
//! Loom runs each model under every interleaving of its threads (bounded by
//! its preemption limit) and fails on a deadlock (every thread blocked) or a
//! failed assertion. The fiber path cannot run under loom (corosensei
//! switches stacks); the thread path uses the same mutex, flag and
//! condvar, and the fiber registration is the same critical section as a
//! thread's check.

use std::panic::{self, AssertUnwindSafe};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::latch::Latch;
use crate::sleep::Sleep;
use crate::sync::Mutex;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

#[test]
fn loom_latch_wake_before_wait() {
    model(|| {
        let latch = Latch::new();
        let data = Arc::new(AtomicUsize::new(0));
        let (l, d) = (latch.clone(), data.clone());
        let setter = thread::spawn(move || {
            d.store(7, Ordering::Relaxed);
            l.set();
        });
        setter.join().unwrap();
        latch.wait();
        assert_eq!(data.load(Ordering::Relaxed), 7);
    });
}

#[test]
fn loom_latch_wake_during_wait() {
    model(|| {
        let latch = Latch::new();
        let data = Arc::new(AtomicUsize::new(0));
        let (l, d) = (latch.clone(), data.clone());
        let setter = thread::spawn(move || {
            d.store(7, Ordering::Relaxed);
            l.set();
        });
        latch.wait();
        // Release/Acquire through the latch: the write is visible.
        assert_eq!(data.load(Ordering::Relaxed), 7);
        setter.join().unwrap();
    });
}

#[test]
fn loom_latch_two_waiters() {
    model(|| {
        let latch = Latch::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (l, w) = (latch.clone(), woken.clone());
                thread::spawn(move || {
                    l.wait();
                    w.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        latch.set();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::Relaxed), 2);
    });
}

/// A memo slot as `weft-queries`' `memo.rs` claims it: empty, in progress
/// (with the latch waiters wait on), or done (a value or a poisoned error).
enum SlotState {
    Empty,
    InProgress(Latch),
    Done(Result<u32, &'static str>),
}

enum Claim {
    Claimed(Latch),
    Running(Latch),
    Done(Result<u32, &'static str>),
}

fn claim(slot: &Mutex<SlotState>) -> Claim {
    let mut s = slot.lock();
    match &*s {
        SlotState::Done(r) => Claim::Done(*r),
        SlotState::InProgress(l) => Claim::Running(l.clone()),
        SlotState::Empty => {
            let l = Latch::new();
            *s = SlotState::InProgress(l.clone());
            Claim::Claimed(l)
        }
    }
}

/// Claims, computes (a provider that panics), publishes, sets the latch;
/// or waits and reads, as `Cx::try_get` does.
fn get(slot: &Mutex<SlotState>, runs: &AtomicUsize) -> Result<u32, &'static str> {
    match claim(slot) {
        Claim::Done(r) => r,
        Claim::Claimed(latch) => {
            runs.fetch_add(1, Ordering::Relaxed);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| -> u32 {
                panic::resume_unwind(Box::new("provider panicked"))
            }));
            let r = outcome.map_err(|_| "poisoned");
            *slot.lock() = SlotState::Done(r);
            latch.set();
            r
        }
        Claim::Running(latch) => {
            latch.wait();
            match &*slot.lock() {
                SlotState::Done(r) => *r,
                _ => panic!("woken before the slot was published"),
            }
        }
    }
}

#[test]
fn loom_owner_panics_while_waited_on() {
    model(|| {
        let slot = Arc::new(Mutex::new(SlotState::Empty));
        let runs = Arc::new(AtomicUsize::new(0));
        let others: Vec<_> = (0..2)
            .map(|_| {
                let (s, r) = (slot.clone(), runs.clone());
                thread::spawn(move || get(&s, &r))
            })
            .collect();
        let mine = get(&slot, &runs);
        assert_eq!(mine, Err("poisoned"));
        for t in others {
            assert_eq!(t.join().unwrap(), Err("poisoned"));
        }
        // Exactly one provider run, whoever claimed first.
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        // A later caller sees the poisoned slot too.
        assert_eq!(get(&slot, &runs), Err("poisoned"));
    });
}

/// Worker `index` of `workers` parks until a counter is non-zero; the main
/// thread increments it and then calls `wake`. Every interleaving must end
/// with the worker out of `park` (no lost wake-up).
fn park_wake_race(workers: usize, index: usize, wake: fn(&Sleep)) {
    model(move || {
        let sleep = Arc::new(Sleep::new(workers));
        let work = Arc::new(AtomicUsize::new(0));
        let (s, w) = (sleep.clone(), work.clone());
        let worker = thread::spawn(move || loop {
            if w.load(Ordering::SeqCst) > 0 {
                return;
            }
            s.park(index, || w.load(Ordering::SeqCst) > 0);
        });
        work.fetch_add(1, Ordering::SeqCst);
        wake(&sleep);
        worker.join().unwrap();
    });
}

#[test]
fn loom_sleep_new_work_race() {
    park_wake_race(1, 0, Sleep::notify_new_work);
}

#[test]
fn loom_sleep_targeted_wake_race() {
    park_wake_race(2, 1, |sleep| sleep.notify_worker(1));
}
