//! Stack overflow outside `ensure_sufficient_stack` (issue 5, "never crash
//! silently"): an overflow of a fiber stack or of a segment ends the process
//! with a message naming the worker and the query, and exit status 134; an
//! overflow of an OS thread's own stack still gets std's message.
//!
//! Each scenario runs in a child: this test binary re-executed with
//! `WEFT_OVERFLOW_CHILD=<scenario>` and a filter selecting `child_entry`.
//! `stack.rs` is `pub(crate)`, so the test compiles the module itself.

#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/stack.rs"]
mod stack;

mod common;

use std::process::Output;

use common::recurse_forever;

const CHILD_ENV: &str = "WEFT_OVERFLOW_CHILD";

fn run_child(scenario: &str) -> Output {
    common::run_child("child_entry", CHILD_ENV, scenario)
}

/// The child side; does nothing unless started by one of the tests below.
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else {
        return;
    };
    stack::install_overflow_handler();
    let _alt = stack::install_alt_stack_for_thread();
    stack::set_worker_index_for_signal(3);
    match scenario.as_str() {
        #[cfg(feature = "fibers")]
        "fiber" => {
            use stack::{FiberStackState, StackBoundsGuard, StackPool};
            let pool = StackPool::new(64 * 1024);
            let stack = pool.take().unwrap();
            let mut state = FiberStackState::new(&stack);
            let mut fiber =
                corosensei::Coroutine::with_stack(stack, |_: &corosensei::Yielder<(), ()>, ()| {
                    let _outer = stack::set_current_activity("crate_report(a)");
                    let _inner = stack::set_current_activity("const_value(a::A)");
                    recurse_forever(0)
                });
            let _bounds = StackBoundsGuard::enter_fiber(&mut state);
            let _ = fiber.resume(());
        }
        #[cfg(feature = "fibers")]
        "segment" => {
            // Recurse with checks until the closure runs on a fresh
            // segment (more room than one level earlier), then overflow it.
            fn descend(previous: usize) -> u64 {
                let remaining = stack::remaining_stack().unwrap();
                if remaining > previous {
                    let _label = stack::set_current_activity("may_panic(f)");
                    return recurse_forever(0);
                }
                stack::ensure_sufficient_stack(|| descend(remaining) + 1)
            }
            descend(usize::MAX);
        }
        "thread" => {
            assert!(stack::remaining_stack().is_some()); // bounds known, as after any query entry
            let _label = stack::set_current_activity("parse(lib.rs)");
            recurse_forever(0);
        }
        other => panic!("unknown scenario {other}"),
    }
    unreachable!("the scenario should have overflowed");
}

#[cfg(feature = "fibers")]
#[test]
fn fiber_overflow_names_worker_and_query() {
    let out = run_child("fiber");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(134), "{stderr}");
    assert!(
        stderr.contains(
            "weft: fiber stack overflow on worker 3 while computing const_value(a::A); \
             stack size 65536 bytes (Runtime::builder().stack_size() sets it)"
        ),
        "{stderr}"
    );
}

#[cfg(feature = "fibers")]
#[test]
fn segment_overflow_names_worker_and_query() {
    let out = run_child("segment");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(134), "{stderr}");
    assert!(
        stderr.contains("weft: stack overflow on an ensure_sufficient_stack segment on worker 3 while computing may_panic(f)"),
        "{stderr}"
    );
}

/// Not our guard: the handler steps aside and std reports the overflow.
#[cfg(unix)]
#[test]
fn thread_overflow_still_reported_by_std() {
    use std::os::unix::process::ExitStatusExt;
    let out = run_child("thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    assert!(
        stderr.contains("weft: thread stack overflow on worker 3 while computing parse(lib.rs)"),
        "{stderr}"
    );
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
}

/// Each fiber has its own label; the worker's swap keeps them apart.
#[cfg(feature = "fibers")]
#[test]
fn activity_label_follows_fiber() {
    use corosensei::{Coroutine, CoroutineResult, Yielder};
    use stack::{current_activity, FiberStackState, StackBoundsGuard, StackPool};

    let _thread_label = stack::set_current_activity("worker loop");
    let pool = StackPool::new(64 * 1024);
    let stack_a = pool.take().unwrap();
    let mut state_a = FiberStackState::new(&stack_a);
    let mut a = Coroutine::with_stack(stack_a, |y: &Yielder<(), String>, ()| {
        let _g = stack::set_current_activity("q(a)");
        y.suspend(current_activity());
        let inner = {
            let _g2 = stack::set_current_activity("r(a2)");
            current_activity()
        };
        y.suspend(inner);
        current_activity()
    });
    let mut resume_a = |expect: &str| {
        let _b = StackBoundsGuard::enter_fiber(&mut state_a);
        match a.resume(()) {
            CoroutineResult::Yield(s) | CoroutineResult::Return(s) => assert_eq!(s, expect),
        }
    };
    resume_a("q(a)");
    assert_eq!(current_activity(), "worker loop");
    {
        let stack_b = pool.take().unwrap();
        let mut state_b = FiberStackState::new(&stack_b);
        let mut b = Coroutine::with_stack(stack_b, |_: &Yielder<(), ()>, ()| {
            assert_eq!(current_activity(), "");
            let _g = stack::set_current_activity("q(b)");
            current_activity()
        });
        let _bb = StackBoundsGuard::enter_fiber(&mut state_b);
        match b.resume(()) {
            CoroutineResult::Return(s) => assert_eq!(s, "q(b)"),
            CoroutineResult::Yield(()) => unreachable!(),
        }
    }
    assert_eq!(current_activity(), "worker loop");
    resume_a("r(a2)");
    resume_a("q(a)");
    assert_eq!(current_activity(), "worker loop");
    let long = "x".repeat(500);
    let g = stack::set_current_activity(&long);
    assert_eq!(current_activity().len(), 112);
    drop(g);
    // A static name shows over a copied label and gives it back.
    let _copied = stack::set_current_activity("copied(a)");
    {
        let _named = stack::set_current_activity_name("named");
        assert_eq!(current_activity(), "named");
        let _inner = stack::set_current_activity("copied(b)");
        assert_eq!(current_activity(), "copied(b)");
    }
    assert_eq!(current_activity(), "copied(a)");
}
