//! `ensure_sufficient_stack` (issue 5): a recursion of depth 1,000,000 that
//! calls it at every level completes on a fiber, on a spawned OS thread and
//! on the main thread; segments nest, survive a fiber suspend, and unwind.
//!
//! `stack.rs` is `pub(crate)`, so the test compiles the module itself. The
//! main-thread case re-executes this test binary with `WEFT_STACK_CHILD` set;
//! a constructor in `.init_array` then runs the recursion on the process's
//! main thread before libtest starts (libtest runs tests on spawned threads).
#![cfg_attr(not(feature = "fibers"), allow(dead_code))]

#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/stack.rs"]
mod stack;

use std::time::Instant;

use stack::{ensure_sufficient_stack, remaining_stack};

const DEPTH: u64 = 1_000_000;
const CHILD_ENV: &str = "WEFT_STACK_CHILD";

/// A recursion that checks the stack at every level, as a query chain does.
#[inline(never)]
fn chain(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    ensure_sufficient_stack(|| chain(n - 1) + 1)
}

#[cfg(all(target_os = "linux", feature = "fibers"))]
#[used]
#[link_section = ".init_array"]
static CHILD_MAIN: extern "C" fn() = child_main;

/// Runs before `main` in a child started by `deep_recursion_on_main_thread`.
#[cfg(all(target_os = "linux", feature = "fibers"))]
extern "C" fn child_main() {
    if std::env::var_os(CHILD_ENV).as_deref() != Some("main-thread-chain".as_ref()) {
        return;
    }
    // SAFETY: getpid and gettid have no preconditions.
    let is_main = unsafe { libc::getpid() == libc::gettid() };
    let before = remaining_stack();
    let depth = chain(DEPTH);
    println!("main={is_main} depth={depth} remaining_before={before:?}");
    std::process::exit(if is_main && depth == DEPTH { 0 } else { 1 });
}

// Segments need the `fibers` feature (corosensei); without it
// `ensure_sufficient_stack` runs the closure in place.
#[cfg(all(target_os = "linux", feature = "fibers"))]
#[test]
fn deep_recursion_on_main_thread() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, "main-thread-chain")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("child: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{:?}", out.status);
    assert!(stdout.contains("main=true depth=1000000"), "{stdout}");
}

#[cfg(feature = "fibers")]
#[test]
fn deep_recursion_on_spawned_thread() {
    // std's default thread stack (2 MiB): without segments this overflows.
    let depth = std::thread::spawn(|| {
        let remaining = remaining_stack().expect("thread bounds are known");
        assert!(remaining <= 2 * 1024 * 1024 + 64 * 1024, "{remaining}");
        chain(DEPTH)
    })
    .join()
    .unwrap();
    assert_eq!(depth, DEPTH);
}

#[cfg(feature = "fibers")]
mod fibers {
    use corosensei::{Coroutine, CoroutineResult};

    use super::*;
    use stack::{FiberStack, FiberStackState, StackBoundsGuard, StackPool};

    /// A fiber the way `fiber.rs` runs one: bounds swapped around resume.
    struct TestFiber<Y, R> {
        coroutine: Coroutine<(), Y, R, FiberStack>,
        state: FiberStackState,
    }

    impl<Y: 'static, R: 'static> TestFiber<Y, R> {
        fn new(
            pool: &StackPool,
            f: impl FnOnce(&corosensei::Yielder<(), Y>, ()) -> R + 'static,
        ) -> Self {
            let stack = pool.take().unwrap();
            let state = FiberStackState::new(&stack);
            TestFiber {
                coroutine: Coroutine::with_stack(stack, f),
                state,
            }
        }

        fn resume(&mut self) -> CoroutineResult<Y, R> {
            let _bounds = StackBoundsGuard::enter_fiber(&mut self.state);
            self.coroutine.resume(())
        }
    }

    #[test]
    fn deep_recursion_on_fiber() {
        let pool = StackPool::new(256 * 1024);
        let mut fiber: TestFiber<(), u64> = TestFiber::new(&pool, |_, ()| {
            let remaining = remaining_stack().unwrap();
            assert!(remaining < 256 * 1024, "fiber bounds in force: {remaining}");
            chain(DEPTH)
        });
        let thread_remaining = remaining_stack();
        match fiber.resume() {
            CoroutineResult::Return(depth) => assert_eq!(depth, DEPTH),
            CoroutineResult::Yield(()) => unreachable!(),
        }
        assert_eq!(
            remaining_stack().map(|r| r / 4096),
            thread_remaining.map(|r| r / 4096)
        );
    }

    /// A fiber suspends deep inside a segment; another fiber runs on the
    /// same thread meanwhile; the first resumes with the segment's bounds
    /// (not its own stack's) and completes.
    #[test]
    fn fiber_suspends_inside_segment() {
        fn dive(n: u64, yielder: &corosensei::Yielder<(), usize>) -> u64 {
            if n == 0 {
                yielder.suspend(remaining_stack().unwrap());
                // Resumed: the bounds must be the segment's again.
                let remaining = remaining_stack().unwrap();
                assert!(remaining < stack::SEGMENT_SIZE, "{remaining}");
                return chain(DEPTH / 2);
            }
            ensure_sufficient_stack(|| dive(n - 1, yielder) + 1)
        }
        let pool = StackPool::new(128 * 1024);
        let mut a: TestFiber<usize, u64> = TestFiber::new(&pool, |y, ()| dive(DEPTH / 2, y));
        let at_suspend = match a.resume() {
            CoroutineResult::Yield(remaining) => remaining,
            CoroutineResult::Return(_) => unreachable!(),
        };
        assert!(at_suspend < stack::SEGMENT_SIZE);
        let mut b: TestFiber<usize, u64> = TestFiber::new(&pool, |_, ()| chain(DEPTH / 4));
        match b.resume() {
            CoroutineResult::Return(d) => assert_eq!(d, DEPTH / 4),
            CoroutineResult::Yield(_) => unreachable!(),
        }
        match a.resume() {
            CoroutineResult::Return(d) => assert_eq!(d, DEPTH),
            CoroutineResult::Yield(_) => unreachable!(),
        }
    }

    /// A panic deep in nested segments unwinds to the top, returns the
    /// segments and restores the bounds.
    #[test]
    fn panic_unwinds_through_segments() {
        fn boom(n: u64) -> u64 {
            if n == 0 {
                // resume_unwind: no panic hook, so no 900,000-frame backtrace.
                std::panic::resume_unwind(Box::new("bottom"));
            }
            ensure_sufficient_stack(|| boom(n - 1) + 1)
        }
        let before = remaining_stack().unwrap();
        let result = std::panic::catch_unwind(|| boom(300_000));
        assert!(result.is_err());
        let after = remaining_stack().unwrap();
        assert!(before.abs_diff(after) < 64 * 1024, "{before} vs {after}");
        // Segments went back to their pool and are reused.
        assert_eq!(chain(300_000), 300_000);
    }
}

#[cfg(not(feature = "fibers"))]
#[test]
fn without_fibers_the_closure_runs_in_place() {
    assert_eq!(chain(1000), 1000);
    assert!(remaining_stack().is_some());
}

/// The figure for the notes: cost of a call that needs no switch.
#[test]
fn fast_path_cost() {
    #[inline(never)]
    fn leaf(x: u64) -> u64 {
        ensure_sufficient_stack(|| std::hint::black_box(x) + 1)
    }
    #[inline(never)]
    fn bare(x: u64) -> u64 {
        std::hint::black_box(x) + 1
    }
    let _ = remaining_stack();
    let n = 20_000_000u64;
    let t = Instant::now();
    let mut acc = 0;
    for i in 0..n {
        acc += leaf(i);
    }
    let with = t.elapsed().as_nanos() as f64 / n as f64;
    let t = Instant::now();
    for i in 0..n {
        acc += bare(i);
    }
    let without = t.elapsed().as_nanos() as f64 / n as f64;
    std::hint::black_box(acc);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "ensure_sufficient_stack fast path: {with:.2} ns/call vs {without:.2} ns for the bare \
         call ({build} build)"
    );

    let label = "const_value(DefId(krate::module::CONSTANT))";
    let t = Instant::now();
    for _ in 0..n / 4 {
        let guard = stack::set_current_activity(std::hint::black_box(label));
        drop(std::hint::black_box(guard));
    }
    let per = t.elapsed().as_nanos() as f64 / (n / 4) as f64;
    eprintln!("set_current_activity + drop of its guard: {per:.2} ns ({build} build)");
}
