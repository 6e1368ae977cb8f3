//! `WorkerLocal<T>`: each worker sees its own slot, and every slot is
//! reachable at the end (`iter`, `into_vec`), in every mode and worker count
//! (serial mode: one slot).
//!
//! Note: the contract sketched `WorkerLocal::new(|index| T)`; the runtime's
//! constructor takes the runtime whose workers it serves,
//! `WorkerLocal::new(&runtime, |index| T)`, which these tests use.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use weft_queries::{query, Cx, Engine};
use weft_runtime::{current_worker_index, par_for_each, Latch, Mode, WorkerLocal};
use weft_tests::{configs, for_configs, for_each_config, runtime, Config};

const ITEMS: usize = 2000;

/// ```text
///  worker 0: slot 0 ◀─ items it runs      worker 1: slot 1 ◀─ items it runs
///  ...                                     (serial: one worker, slot 0)
///  each item: wl.get() is the slot of current_worker_index(); the slot's
///  mutex is never contended (only its own worker touches it)
///  end: into_vec() = [slot 0, slot 1, ...]; their items = 0..2000, each once
/// ```
#[test]
fn each_worker_sees_its_own_slot() {
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let wl = WorkerLocal::new(&rt, |i| (i, Mutex::new(Vec::<usize>::new())));
        assert_eq!(wl.len(), threads);
        let items: Vec<usize> = (0..ITEMS).collect();
        rt.block_on(|| {
            par_for_each(&items, |_, &item| {
                let (index, slot) = wl.get();
                let worker = current_worker_index().expect("items run on a worker");
                assert_eq!(*index, worker, "item {item} got another worker's slot");
                let mut slot = slot
                    .try_lock()
                    .expect("two tasks used one worker's slot at the same time");
                slot.push(item);
            })
        });
        let total: usize = wl.iter().map(|(_, v)| v.lock().len()).sum();
        assert_eq!(total, ITEMS);
        let slots = wl.into_vec();
        assert_eq!(slots.len(), threads);
        let mut all = Vec::new();
        for (i, (index, items)) in slots.into_iter().enumerate() {
            assert_eq!(index, i);
            all.extend(items.into_inner());
        }
        all.sort_unstable();
        assert_eq!(all, items);
    });
}

struct Db {
    /// Executions counted per worker, as rustc's per-worker arenas.
    per_worker: WorkerLocal<AtomicUsize>,
}

/// A query that counts itself in its worker's slot.
#[query]
fn leaf(cx: &Cx<Db>, key: u32) -> u32 {
    cx.db().per_worker.get().fetch_add(1, Ordering::Relaxed);
    key + 1
}

/// Queries in a `Db` use a `WorkerLocal`: the per-worker counts add up to
/// the executions.
///
/// ```text
///  par_for_each 0..500 → get(leaf(i % 200)) → per_worker[worker] += 1
///  end: Σ per_worker = 200 (each key executed once)
/// ```
#[test]
fn worker_local_in_a_db() {
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let db = Db {
            per_worker: WorkerLocal::new(&rt, |_| AtomicUsize::new(0)),
        };
        let engine = Engine::new(rt, db);
        let keys: Vec<u32> = (0..500).collect();
        engine.run(|cx| par_for_each(&keys, |_, &k| assert_eq!(cx.leaf(k % 200), k % 200 + 1)));
        let counts: Vec<usize> = engine
            .db()
            .per_worker
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts.len(), threads);
        assert_eq!(counts.iter().sum::<usize>(), 200, "{counts:?}");
    });
}

/// Fibers are pinned: a fiber that suspends resumes on the worker that
/// started it, so its `WorkerLocal` slot and `current_worker_index` stay the
/// same across a wait.
///
/// ```text
///  item i < 8:  w = worker; slot = wl.get(); latch[i].wait() (suspends)
///               ... resumed: worker == w, wl.get() == slot
///  item i ≥ 8:  latch[i - 8].set()
/// ```
///
/// Fibers mode only (a blocked thread cannot move anyway; serial mode would
/// wait for an item that runs later).
#[test]
fn a_suspended_fiber_resumes_on_its_worker() {
    let list: Vec<Config> = configs()
        .into_iter()
        .filter(|c| c.mode == Mode::Fibers)
        .collect();
    for_configs(list, |mode, threads| {
        let rt = runtime(mode, threads);
        let wl = WorkerLocal::new(&rt, |i| i);
        let items: Vec<usize> = (0..16).collect();
        let moved = AtomicUsize::new(0);
        for _round in 0..20 {
            let latches: Vec<Latch> = (0..8).map(|_| Latch::new()).collect();
            rt.block_on(|| {
                par_for_each(&items, |i, _| {
                    if i < 8 {
                        let before = current_worker_index();
                        let slot = wl.get() as *const usize;
                        latches[i].wait();
                        if current_worker_index() != before || !std::ptr::eq(wl.get(), slot) {
                            moved.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        latches[i - 8].set();
                    }
                })
            });
        }
        assert_eq!(moved.load(Ordering::SeqCst), 0, "fibers migrated");
    });
}

/// Outside a runtime's workers there is no slot to hand out.
#[test]
#[should_panic(expected = "outside")]
fn get_outside_a_worker_panics() {
    let rt = runtime(Mode::Threads, 2);
    let wl = WorkerLocal::new(&rt, |i| i);
    let _ = wl.get();
}

/// Regression (issue 12): two threads, each in a serial `block_on` of one
/// runtime at the same time, increment one `WorkerLocal<Cell<u64>>`
/// 50,000,000 times each. Both used to be "worker 0" and share the slot:
/// the count ended at 74,757,711, a data race in safe code. Now the thread
/// that entered first holds the runtime's worker identity and the other's
/// first `get` panics, so the count is exactly one thread's.
///
/// ```text
///  T1: block_on ─ barrier ─ 50M × wl.get().set(+1) ─▶ Ok(50M)
///  T2: block_on ─ barrier ─ wl.get() panics ─────────▶ Err
/// ```
#[test]
fn two_serial_block_ons_never_share_a_slot() {
    const N: u64 = 50_000_000;
    weft_tests::with_timeout(weft_tests::timeout_secs(), || {
        let rt = runtime(Mode::Serial, 1);
        let wl = WorkerLocal::new(&rt, |_| std::cell::Cell::new(0u64));
        let both_in = std::sync::Barrier::new(2);
        let results: Vec<Result<u64, ()>> = std::thread::scope(|s| {
            let run = || {
                rt.block_on(|| {
                    both_in.wait();
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        for _ in 0..N {
                            let c = wl.get();
                            c.set(c.get() + 1);
                        }
                        N
                    }))
                    .map_err(|_| ())
                })
            };
            let handles = [s.spawn(run), s.spawn(run)];
            handles.map(|h| h.join().expect("thread")).into()
        });
        let ok: Vec<u64> = results.iter().filter_map(|r| r.ok()).collect();
        assert_eq!(
            ok,
            vec![N],
            "exactly one thread holds worker 0: {results:?}"
        );
        assert_eq!(
            wl.into_vec()[0].get(),
            N,
            "the slot saw one thread's increments"
        );
        // The identity is free again once its holder returned.
        let wl = WorkerLocal::new(&rt, |i| i);
        assert_eq!(rt.block_on(|| *wl.get()), 0);
    });
}

/// `WorkerLocal::get` panics off its runtime's workers: outside any
/// runtime, and on a worker of another runtime.
#[test]
fn worker_local_panics_off_its_runtime() {
    for_configs(configs(), |mode, threads| {
        let rt = runtime(mode, threads);
        let other = runtime(mode, threads);
        let wl = WorkerLocal::new(&rt, |i| i);
        let outside = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| *wl.get()));
        assert!(outside.is_err(), "get outside any runtime");
        let elsewhere = other.block_on(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| *wl.get())).is_err()
        });
        assert!(elsewhere, "get on another runtime's worker");
        assert!(rt.block_on(|| *wl.get() < threads));
    });
}
