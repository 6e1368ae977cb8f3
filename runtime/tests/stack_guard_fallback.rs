//! The guard fallback for kernels without `MADV_GUARD_INSTALL` (< 6.13):
//! `mprotect(PROT_NONE)` per guard. Forced here (the choice is per process,
//! so this binary holds this one scenario): stacks still work, overflows are
//! still reported, and each stack costs two mappings, which is the limit the
//! notes document (about `vm.max_map_count / 2` live stacks).
#![cfg_attr(not(feature = "fibers"), allow(dead_code))]

#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/stack.rs"]
mod stack;

mod common;

use stack::StackPool;

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn mprotect_fallback_guards_and_reports() {
    stack::force_mprotect_guards();
    if std::env::var_os("WEFT_FALLBACK_CHILD").is_some() {
        #[cfg(feature = "fibers")]
        {
            stack::install_overflow_handler();
            stack::set_worker_index_for_signal(0);
            let pool = StackPool::new(64 * 1024);
            let stack = pool.take().unwrap();
            let mut state = stack::FiberStackState::new(&stack);
            let mut fiber =
                corosensei::Coroutine::with_stack(stack, |_: &corosensei::Yielder<(), ()>, ()| {
                    let _label = stack::set_current_activity("def_map(core)");
                    common::recurse_forever(0)
                });
            let _bounds = stack::StackBoundsGuard::enter_fiber(&mut state);
            let _ = fiber.resume(());
        }
        return;
    }

    let before = map_count();
    let pool = StackPool::new(64 * 1024);
    let stacks: Vec<_> = (0..1000).map(|_| pool.take().unwrap()).collect();
    let after = map_count();
    assert_eq!(stack::guard_method(), Some(stack::GuardMethod::Mprotect));
    eprintln!("mprotect fallback: 1000 stacks, maps {before} -> {after}");
    assert!(after - before >= 1000, "{before} -> {after}");
    drop(stacks);

    #[cfg(feature = "fibers")]
    {
        let out = common::run_child(
            "mprotect_fallback_guards_and_reports",
            "WEFT_FALLBACK_CHILD",
            "1",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(134), "{stderr}");
        assert!(
            stderr.contains("weft: fiber stack overflow on worker 0 while computing def_map(core)"),
            "{stderr}"
        );
    }
}
