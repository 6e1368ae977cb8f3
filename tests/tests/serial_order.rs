//! Acceptance test 6 of issue 2: `par_for_each` order and panics.
//!
//! - Serial mode visits items in order (and `join`, `scope`, `par_map` run
//!   in program order), inside a runtime and outside any runtime.
//! - Every mode visits every item exactly once.
//! - With panics in items 3 and 7, all items run and the panic of item 3 is
//!   rethrown — the same in every mode and worker count. Where the
//!   configuration allows it, item 3 is held back until item 7 has panicked,
//!   so "the first panic in time" and "the lowest index" differ.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use weft_runtime::{join, par_for_each, par_map, scope, Latch, Mode};
use weft_tests::{
    can_wait_concurrently, for_configs, for_each_config, inject_panic, panic_message,
    quiet_injected_panics, runtime, Config,
};

fn serial() -> Vec<Config> {
    vec![Config {
        mode: Mode::Serial,
        threads: 1,
    }]
}

/// ```text
///  serial: one thread, program order
///  par_for_each 0..20 → 0, 1, 2, ..., 19
///  join(a, b)         → a, b
///  scope: spawn x, spawn y (y spawns z) → x, y, z
///  par_map 0..5       → results and calls in order
/// ```
#[test]
fn serial_mode_runs_in_program_order() {
    for_configs(serial(), |mode, threads| {
        let rt = runtime(mode, threads);
        let log = Mutex::new(Vec::<String>::new());
        let push = |s: String| log.lock().push(s);
        rt.block_on(|| {
            let items: Vec<usize> = (0..20).collect();
            par_for_each(&items, |i, &item| {
                assert_eq!(i, item);
                push(format!("item {i}"));
            });
            join(|| push("a".into()), || push("b".into()));
            scope(|s| {
                s.spawn(|_| push("x".into()));
                s.spawn(|s| {
                    push("y".into());
                    s.spawn(|_| push("z".into()));
                });
            });
            let squares = par_map(&items[..5], |i, x| {
                push(format!("map {i}"));
                x * x
            });
            assert_eq!(squares, vec![0, 1, 4, 9, 16]);
        });
        let mut expected: Vec<String> = (0..20).map(|i| format!("item {i}")).collect();
        expected.extend(["a", "b", "x", "y", "z"].map(String::from));
        expected.extend((0..5).map(|i| format!("map {i}")));
        assert_eq!(*log.lock(), expected);
    });
}

/// Outside any runtime the free functions also run inline, in order.
///
/// ```text
///  test thread (no runtime): par_for_each 0..10 → 0, 1, ..., 9 on this thread
///                            join(push 100, push 101) → 100, 101
/// ```
#[test]
fn outside_a_runtime_everything_runs_inline_in_order() {
    let log = Mutex::new(Vec::new());
    let items: Vec<usize> = (0..10).collect();
    let here = std::thread::current().id();
    par_for_each(&items, |i, _| {
        assert_eq!(std::thread::current().id(), here);
        log.lock().push(i);
    });
    join(|| log.lock().push(100), || log.lock().push(101));
    assert_eq!(
        *log.lock(),
        (0..10).chain([100, 101]).collect::<Vec<usize>>()
    );
    assert_eq!(weft_runtime::current_worker_index(), None);
    assert_eq!(weft_runtime::current_mode(), None);
}

/// ```text
///  par_for_each 0..1000 in every configuration: each item exactly once
/// ```
#[test]
fn every_item_runs_exactly_once() {
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let counts: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        rt.block_on(|| {
            par_for_each(&counts, |_, c| {
                c.fetch_add(1, Ordering::SeqCst);
            })
        });
        for (i, c) in counts.iter().enumerate() {
            assert_eq!(c.load(Ordering::SeqCst), 1, "item {i}");
        }
    });
}

struct PanicRun {
    message: String,
    ran: Vec<usize>,
}

/// Runs items 0..10 with panics in 3 and 7; returns the rethrown message and
/// the items that ran. When `hold_back` is set, item 3 waits (latch) until
/// item 7 is about to panic.
fn panicking_items(hold_back: bool, use_map: bool) -> PanicRun {
    let ran = Mutex::new(Vec::new());
    let seven_panics = Latch::new();
    let body = |i: usize| {
        ran.lock().push(i);
        if i == 3 {
            if hold_back {
                seven_panics.wait();
            }
            inject_panic("item 3");
        }
        if i == 7 {
            seven_panics.set();
            inject_panic("item 7");
        }
        i
    };
    let items: Vec<usize> = (0..10).collect();
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        if use_map {
            drop(par_map(&items, |i, _| body(i)));
        } else {
            par_for_each(&items, |i, _| {
                body(i);
            });
        }
    }));
    let payload = caught.expect_err("items 3 and 7 panicked: par_for_each must rethrow");
    let mut ran = ran.into_inner();
    ran.sort_unstable();
    PanicRun {
        message: panic_message(&*payload),
        ran,
    }
}

/// ```text
///  item:   0  1  2  3  4  5  6  7  8  9
///                   │           └─ panic "item 7" (first in time where forced)
///                   └─ waits for 7, then panic "item 3"
///  all ten run; par_for_each / par_map rethrow "item 3" in every mode;
///  block_on hands the same panic to its caller
/// ```
#[test]
fn lowest_index_panic_is_rethrown_after_all_items() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        // Item 3 may block its worker (threads mode), the caller of
        // par_for_each another: item 7 needs a third worker.
        let hold_back = can_wait_concurrently(mode, threads, 3);
        let rt = runtime(mode, threads);
        for use_map in [false, true] {
            let run = rt.block_on(|| panicking_items(hold_back, use_map));
            assert!(
                run.message.contains("item 3"),
                "par_map={use_map}: rethrown {:?}",
                run.message
            );
            assert_eq!(run.ran, (0..10).collect::<Vec<_>>(), "par_map={use_map}");
        }
        // The panic also crosses block_on to the caller.
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(|| {
                let items: Vec<usize> = (0..10).collect();
                par_for_each(&items, |i, _| {
                    if i == 3 || i == 7 {
                        inject_panic(format_args!("item {i}"));
                    }
                })
            })
        }));
        let payload = caught.expect_err("block_on must resume the panic");
        assert!(panic_message(&*payload).contains("item 3"));
        // And the runtime still works.
        assert_eq!(rt.block_on(|| par_map(&[5, 6], |_, x| x + 1)), vec![6, 7]);
    });
}

/// Nested `par_for_each` with a panic deep inside: the outer one rethrows the
/// panic of its lowest item that panicked, which carries the inner lowest.
///
/// ```text
///  outer 0..4 ─ item 1: inner 0..4, items 2 and 3 panic → rethrows "1.2"
///             └ item 2: inner 0..4, item 0 panics      → rethrows "2.0"
///  outer rethrows "1.2"
/// ```
#[test]
fn nested_panics_keep_the_lowest_index() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let ran = AtomicUsize::new(0);
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(|| {
                let outer: Vec<usize> = (0..4).collect();
                par_for_each(&outer, |o, _| {
                    let inner: Vec<usize> = (0..4).collect();
                    par_for_each(&inner, |i, _| {
                        ran.fetch_add(1, Ordering::SeqCst);
                        if (o, i) == (1, 2) || (o, i) == (1, 3) || (o, i) == (2, 0) {
                            inject_panic(format_args!("{o}.{i}"));
                        }
                    })
                })
            })
        }));
        let payload = caught.expect_err("nested panics must reach the caller");
        assert_eq!(
            panic_message(&*payload),
            format!("{}: 1.2", weft_tests::INJECTED)
        );
        assert_eq!(ran.load(Ordering::SeqCst), 16);
    });
}
