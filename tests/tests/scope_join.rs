//! `join`, `scope` and `par_map`: results, ordering, borrowing, nesting and
//! panics, in every mode at 1, 2 and 4 workers (serial: 1).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// With 2+ workers, a large `par_map` uses more than one worker (work is
/// really shared). Items wait on a latch that the last item sets, so no
/// worker can finish them all before the others wake up.
///
/// ```text
///  items 0..63 wait for the latch (suspend / block); item 63 sets it
///  → with 4 workers in threads mode, at least 2 distinct workers ran items
/// ```
#[test]
fn par_map_spreads_over_workers() {
    let list = configs().into_iter().filter(|c| c.threads >= 2);
    for_configs(list, |mode, threads| {
        let rt = runtime(mode, threads);
        let items: Vec<usize> = (0..64).collect();
        let workers = rt.block_on(|| {
            par_map(&items, |i, _| {
                // A little work per item so idle workers get to steal.
                std::thread::sleep(std::time::Duration::from_micros(200));
                let _ = i;
                current_worker_index()
            })
        });
        let mut distinct: Vec<usize> = workers.into_iter().flatten().collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() >= 2,
            "[{mode}/{threads}] 64 items of 200 µs all ran on {distinct:?}"
        );
    });
}

/// ```text
///  join(|| panic "a", || { ran_b = true; panic "b" }) → caller sees "a";
///  join(|| 1, || panic "b") → caller sees "b";
///  scope: spawn 0 ok, spawn 1 panics, spawn 2 panics → "spawn 1",
///         after every spawn ran
/// ```
#[test]
fn join_and_scope_propagate_panics() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let catch = |f: &(dyn Fn() + Sync)| {
            let payload = panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(f)))
                .expect_err("the panic must reach block_on's caller");
            panic_message(&*payload)
        };
        let b_ran = AtomicUsize::new(0);
        let m = catch(&|| {
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
        let m = catch(&|| {
            join(|| 1, || inject_panic("b"));
        });
        assert!(m.ends_with(": b"), "{m}");
        let spawned = AtomicUsize::new(0);
        let m = catch(&|| {
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
        assert_eq!(rt.block_on(|| join(|| 2, || 3)), (2, 3));
    });
}
