//! `join`, `scope` and `par_map`: results, ordering, borrowing, nesting and
//! panics, in every mode at 1, 2 and 4 workers (serial: 1).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use weft_runtime::{current_worker_index, join, par_map, scope, Latch};
use weft_tests::{
    can_wait_concurrently, configs, for_configs, for_each_config, inject_panic, panic_message,
    quiet_injected_panics, runtime,
};

fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = join(|| fib(n - 1), || fib(n - 2));
    a + b
}

/// ```text
///  join(|| 1, || "two")           → (1, "two")
///  fib(20) by nested joins        → 6765   (~20,000 forks)
///  join(a, b) with a borrowing &mut x, b borrowing &y
/// ```
#[test]
fn join_returns_both_results() {
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        assert_eq!(rt.block_on(|| join(|| 1, || "two")), (1, "two"));
        assert_eq!(rt.block_on(|| fib(20)), 6765);
        let mut x = vec![1, 2, 3];
        let y = [10, 20];
        let (len, sum) = rt.block_on(|| {
            join(
                || {
                    x.push(4);
                    x.len()
                },
                || y.iter().sum::<i32>(),
            )
        });
        assert_eq!((len, sum), (4, 30));
        assert_eq!(x, vec![1, 2, 3, 4]);
    });
}

/// ```text
///  worker X                      worker Y (or X, once A's fiber suspends)
///  join: a: latch.wait() ⏳ ───▶ b: latch.set()
///        a resumes  → ("a", "b")
/// ```
///
/// `b` must be runnable while `a` waits: fibers mode at any worker count,
/// threads mode from 2 workers; not serial (a runs to completion first).
#[test]
fn join_b_runs_while_a_waits() {
    let list = configs()
        .into_iter()
        .filter(|c| can_wait_concurrently(c.mode, c.threads, 2));
    for_configs(list, |mode, threads| {
        let rt = runtime(mode, threads);
        for _ in 0..50 {
            let latch = Latch::new();
            let r = rt.block_on(|| {
                join(
                    || {
                        latch.wait();
                        "a"
                    },
                    || {
                        latch.set();
                        "b"
                    },
                )
            });
            assert_eq!(r, ("a", "b"));
        }
    });
}

/// ```text
///  scope: spawn 10 tasks, each spawns 1 more, all borrow `counter` and
///  `log` from the stack; scope returns f's value after all 20 finished
/// ```
#[test]
fn scope_waits_for_every_spawn() {
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let counter = AtomicUsize::new(0);
        let log = Mutex::new(Vec::new());
        let r = rt.block_on(|| {
            scope(|s| {
                for i in 0..10 {
                    let (counter, log) = (&counter, &log);
                    s.spawn(move |s| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        log.lock().push(i);
                        s.spawn(move |_| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            log.lock().push(100 + i);
                        });
                    });
                }
                "scope value"
            })
        });
        assert_eq!(r, "scope value");
        assert_eq!(counter.load(Ordering::SeqCst), 20);
        let mut log = log.into_inner();
        log.sort_unstable();
        assert_eq!(log, (0..10).chain(100..110).collect::<Vec<_>>());
    });
}

/// ```text
///  par_map over 0, 1, 7 and 10,000 items → f(i, x) in item order
///  (items take uneven time: later items may finish first)
/// ```
#[test]
fn par_map_keeps_item_order() {
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        for n in [0usize, 1, 7, 10_000] {
            let items: Vec<usize> = (0..n).collect();
            let out = rt.block_on(|| {
                par_map(&items, |i, &x| {
                    if x % 997 == 0 {
                        // Uneven work: some items take longer.
                        std::hint::black_box((0..10_000u64).sum::<u64>());
                    }
                    (i, x * 3)
                })
            });
            let expected: Vec<(usize, usize)> = (0..n).map(|x| (x, x * 3)).collect();
            assert_eq!(out, expected, "{n} items");
        }
    });
}

/// With 2+ workers, `par_map` shares its items between workers: each item
/// records its worker and then holds its worker (spinning, not a runtime
/// wait) until items have run on two distinct workers, so a runtime that
/// never lets another worker steal fails after [`SPREAD_SECS`] instead of
/// passing by luck of timing.
///
/// ```text
///  worker X: item 0 ─ seen = {X} ─ spin ·········· seen = {X, Y} → done
///  worker Y: (steals items 32..64) item 32 ─ seen = {X, Y} → done ...
/// ```
#[test]
fn par_map_spreads_over_workers() {
    let list = configs().into_iter().filter(|c| c.threads >= 2);
    for_configs(list, |mode, threads| {
        let rt = runtime(mode, threads);
        let items: Vec<usize> = (0..64).collect();
        let seen = Mutex::new(Vec::<usize>::new());
        let distinct = || {
            let mut v = seen.lock().clone();
            v.sort_unstable();
            v.dedup();
            v
        };
        let workers = rt.block_on(|| {
            par_map(&items, |i, _| {
                let w = current_worker_index().expect("items run on workers");
                seen.lock().push(w);
                let deadline = Instant::now() + Duration::from_secs(SPREAD_SECS);
                while distinct().len() < 2 {
                    assert!(
                        Instant::now() < deadline,
                        "item {i}: no second worker took items within {SPREAD_SECS} s"
                    );
                    std::thread::yield_now();
                }
                w
            })
        });
        assert_eq!(workers.len(), 64);
        let d = distinct();
        assert!(
            d.len() >= 2 && d.iter().all(|&w| w < threads),
            "[{mode}/{threads}] {d:?}"
        );
    });
}

/// How long [`par_map_spreads_over_workers`] waits for a second worker.
const SPREAD_SECS: u64 = 20;

/// ```text
///  join(|| panic "a", || { b_ran += 1; panic "b" }) → caller sees "a",
///                                                     after b ran;
///  join(|| 1, || panic "b")                         → caller sees "b"
/// ```
#[test]
fn join_propagates_panics() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let b_ran = AtomicUsize::new(0);
        let m = catch_message(&rt, &|| {
            join(
                || inject_panic("a"),
                || {
                    b_ran.fetch_add(1, Ordering::SeqCst);
                    inject_panic("b")
                },
            );
        });
        assert!(m.ends_with(": a"), "{m}");
        assert_eq!(b_ran.load(Ordering::SeqCst), 1, "join waits for b");
        let m = catch_message(&rt, &|| {
            join(|| 1, || inject_panic("b"));
        });
        assert!(m.ends_with(": b"), "{m}");
        assert_eq!(rt.block_on(|| join(|| 2, || 3)), (2, 3));
    });
}

/// ```text
///  scope: spawn 0 ok, spawn 1 panics, spawn 2 panics
///  → caller sees "spawn 1", after all three spawns ran
/// ```
#[test]
fn scope_propagates_panics() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let spawned = AtomicUsize::new(0);
        let m = catch_message(&rt, &|| {
            scope(|s| {
                for i in 0..3 {
                    let spawned = &spawned;
                    s.spawn(move |_| {
                        spawned.fetch_add(1, Ordering::SeqCst);
                        if i > 0 {
                            inject_panic(format_args!("spawn {i}"));
                        }
                    });
                }
            })
        });
        assert!(m.ends_with("spawn 1"), "{m}");
        assert_eq!(spawned.load(Ordering::SeqCst), 3);
        assert_eq!(rt.block_on(|| scope(|_| 5)), 5);
    });
}

/// Runs `f` on `rt`, expects it to panic, and returns the panic's message.
fn catch_message(rt: &weft_runtime::Runtime, f: &(dyn Fn() + Sync)) -> String {
    let payload = panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(f)))
        .expect_err("the panic must reach block_on's caller");
    panic_message(&*payload)
}
