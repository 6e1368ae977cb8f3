//! The stack layer through the runtime's public API (issue 5): in every
//! mode a recursion of depth 1,000,000 that calls `ensure_sufficient_stack`
//! at every level completes, also from many tasks at once and across fiber
//! suspends; and an unbounded recursion in a task ends the process with a
//! message naming the worker and the activity label.
//!
//! Deep recursion needs the `fibers` feature (segments are corosensei
//! stacks); without it only the overflow scenarios run.
#![cfg_attr(not(feature = "fibers"), allow(dead_code, unused_imports))]

mod common;

use std::process::Output;

use common::recurse_forever;

use weft_runtime::{
    ensure_sufficient_stack, join, par_map, remaining_stack, set_current_activity, Jobserver,
    Latch, Mode, Runtime,
};

const DEPTH: u64 = 1_000_000;
const CHILD_ENV: &str = "WEFT_STACK_RUNTIME_CHILD";

fn modes() -> Vec<Mode> {
    Mode::ALL
        .into_iter()
        .filter(|&m| m != Mode::Fibers || cfg!(feature = "fibers"))
        .collect()
}

fn runtime(mode: Mode, threads: usize) -> Runtime {
    Runtime::builder()
        .mode(mode)
        .threads(threads)
        .jobserver(Jobserver::Disabled)
        .build()
        .unwrap()
}

#[inline(never)]
fn chain(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    ensure_sufficient_stack(|| chain(n - 1) + 1)
}

#[cfg(feature = "fibers")]
#[test]
fn depth_one_million_in_every_mode() {
    for mode in modes() {
        let rt = runtime(mode, 2);
        let (depth, remaining) = rt.block_on(|| (chain(DEPTH), remaining_stack()));
        assert_eq!(depth, DEPTH, "{mode}");
        assert!(remaining.is_some(), "{mode}: bounds unknown on the worker");
    }
}

/// Several deep tasks at once, each suspending at the bottom of its
/// recursion, deep inside segments, while the other tasks run on the same
/// workers; resumed, each goes deeper still. Fibers mode only: in threads
/// mode four blocked waiters on two workers would starve the setter, and
/// serial mode runs the setter after the waiters.
#[cfg(feature = "fibers")]
#[test]
fn deep_tasks_wait_inside_segments() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TASKS: usize = 4;
    struct Gate {
        arrived: AtomicUsize,
        all_arrived: Latch,
        go: Latch,
    }
    #[inline(never)]
    fn dive(n: u64, gate: &Gate) -> u64 {
        if n == 0 {
            let before = remaining_stack().unwrap();
            assert!(before < 2 << 20, "not on a segment: {before}");
            if gate.arrived.fetch_add(1, Ordering::SeqCst) + 1 == TASKS {
                gate.all_arrived.set();
            }
            gate.go.wait(); // the fiber suspends here, on a segment
            let after = remaining_stack().unwrap();
            assert!(
                before.abs_diff(after) < 4096,
                "bounds moved: {before} -> {after}"
            );
            return chain(DEPTH / 10);
        }
        ensure_sufficient_stack(|| dive(n - 1, gate) + 1)
    }
    let rt = runtime(Mode::Fibers, 2);
    let gate = Gate {
        arrived: AtomicUsize::new(0),
        all_arrived: Latch::new(),
        go: Latch::new(),
    };
    let depths = rt.block_on(|| {
        let (depths, ()) = join(
            || par_map(&[0u8; TASKS], |_, _| dive(DEPTH / 5, &gate)),
            || {
                gate.all_arrived.wait();
                gate.go.set();
            },
        );
        depths
    });
    assert_eq!(depths, vec![DEPTH / 5 + DEPTH / 10; TASKS]);
}

/// The child side; does nothing unless started by a test below.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = Runtime::builder()
        .mode(mode.parse().unwrap())
        .threads(2)
        .stack_size(256 * 1024)
        .jobserver(Jobserver::Disabled)
        .build()
        .unwrap();
    rt.block_on(|| {
        let _label = set_current_activity("const_value(a::A)");
        assert!(remaining_stack().is_some());
        recurse_forever(0)
    });
    unreachable!("the task should have overflowed its stack");
}

fn run_child(mode: Mode) -> Output {
    common::run_child("child_entry", CHILD_ENV, &mode.to_string())
}

#[cfg(feature = "fibers")]
#[test]
fn fiber_overflow_in_a_task_is_reported() {
    let out = run_child(Mode::Fibers);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(134), "{stderr}");
    assert!(
        stderr.contains("weft: fiber stack overflow on worker "),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            " while computing const_value(a::A); stack size 262144 bytes \
             (Runtime::builder().stack_size() sets it)"
        ),
        "{stderr}"
    );
}

#[test]
fn thread_overflow_in_a_task_is_reported() {
    let out = run_child(Mode::Threads);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    if cfg!(feature = "fibers") {
        assert!(
            stderr.contains("weft: thread stack overflow on worker "),
            "{stderr}"
        );
        assert!(
            stderr.contains("while computing const_value(a::A)"),
            "{stderr}"
        );
    }
}
