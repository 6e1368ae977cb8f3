//! The fiber stack pool: carving from large mappings, guard regions, reuse,
//! page release beyond the warm limit, and 100,000 suspended fibers under
//! 1 GiB RSS (issue 5).
//!
//! `stack.rs` is `pub(crate)`, so the test compiles the module itself.
#![cfg_attr(not(feature = "fibers"), allow(dead_code))]

#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/stack.rs"]
mod stack;

use std::time::Instant;

use stack::StackPool;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

/// Kernel memory for page tables (`VmPTE`), which RSS does not include.
fn page_table_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmPTE:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn smoke() {
    let pool = StackPool::new(64 * 1024);
    let a = pool.take().unwrap();
    let b = pool.take().unwrap();
    assert_ne!(a.usable_base(), b.usable_base());
    assert!(
        a.size() >= 64 * 1024 - 144,
        "the label buffer takes 144 bytes"
    );
    assert_eq!(pool.live_stacks(), 2);
    assert_eq!(pool.in_use_stacks(), 2);
    pool.give_back(a);
    drop(b);
    assert_eq!(pool.in_use_stacks(), 0);
    assert_eq!(pool.pooled_stacks(), 2);
    assert_eq!(pool.live_stacks(), 2);
}

#[test]
fn returned_stack_is_reused_lifo() {
    let pool = StackPool::new(64 * 1024);
    let a = pool.take().unwrap();
    let base = a.usable_base();
    pool.give_back(a);
    for _ in 0..1000 {
        let again = pool.take().unwrap();
        assert_eq!(again.usable_base(), base);
        pool.give_back(again);
    }
    assert_eq!(pool.live_stacks(), 1);
}

/// Many stacks are few mappings: with MADV_GUARD_INSTALL a chunk of up to
/// 256 stacks is one VMA.
#[test]
fn chunks_do_not_split_into_one_mapping_per_stack() {
    let before = map_count();
    let pool = StackPool::new(64 * 1024);
    let stacks: Vec<_> = (0..2000).map(|_| pool.take().unwrap()).collect();
    let after = map_count();
    let method = stack::guard_method();
    eprintln!(
        "2000 stacks: {} chunks, maps {before} -> {after}, guard method {method:?}",
        pool.chunks()
    );
    match method {
        Some(stack::GuardMethod::GuardInstall) => {
            assert!(after - before <= pool.chunks() + 4, "{before} -> {after}")
        }
        _ => assert!(after - before <= 2 * 2000 + pool.chunks() + 4),
    }
    drop(stacks);
}

/// Stacks in the pool beyond its warm limit get their pages released: they
/// read back as zeros. Warm ones keep their contents.
#[test]
fn pages_released_beyond_warm_limit() {
    let pool = StackPool::new(64 * 1024).with_warm_limit(2);
    let stacks: Vec<_> = (0..4).map(|_| pool.take().unwrap()).collect();
    for s in &stacks {
        // SAFETY: the stack is ours and unused; its first usable page is mapped.
        unsafe { (s.usable_limit() as *mut u64).write(0xfeed) };
    }
    let limits: Vec<usize> = stacks.iter().map(|s| s.usable_limit()).collect();
    drop(stacks); // the first two returned stay warm, the last two are released
    let read = |addr: usize| {
        // SAFETY: pooled stacks stay mapped while the pool lives.
        unsafe { (addr as *const u64).read_volatile() }
    };
    assert_eq!(read(limits[0]), 0xfeed);
    assert_eq!(read(limits[1]), 0xfeed);
    assert_eq!(read(limits[2]), 0);
    assert_eq!(read(limits[3]), 0);
}

#[test]
fn take_and_give_back_cost() {
    let pool = StackPool::new(256 * 1024);
    pool.give_back(pool.take().unwrap());
    let n = 200_000;
    let start = Instant::now();
    for _ in 0..n {
        let s = pool.take().unwrap();
        pool.give_back(std::hint::black_box(s));
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!("take + give_back of a pooled stack: {per:.1} ns ({build} build)");

    // The same with every returned stack beyond the warm limit: its pages
    // are released, and the next use faults the touched page in again.
    let cold = StackPool::new(256 * 1024).with_warm_limit(0);
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        let s = cold.take().unwrap();
        // SAFETY: our stack; touch 4 KiB below the top as a fiber would.
        unsafe { ((s.usable_base() - 4096) as *mut u8).write_bytes(1, 4096) };
        cold.give_back(s);
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    eprintln!(
        "take + touch 2 pages + release (MADV_DONTNEED) + give_back: {per:.0} ns ({build} build)"
    );
}

/// 100,000 fibers suspended at once, each having touched a bit of its
/// stack: no ENOMEM, RSS under 1 GiB, few mappings; then all complete.
#[cfg(feature = "fibers")]
#[test]
fn hundred_thousand_suspended_fibers() {
    use corosensei::{Coroutine, CoroutineResult};
    const FIBERS: usize = 100_000;

    // WEFT_TEST_STACK_SIZE: measure other stack sizes for the notes.
    let stack_size = std::env::var("WEFT_TEST_STACK_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256 * 1024);
    let rss_before = resident_bytes();
    let pte_before = page_table_bytes();
    let maps_before = map_count();
    let pool = StackPool::new(stack_size);
    let start = Instant::now();
    let mut fibers = Vec::with_capacity(FIBERS);
    for i in 0..FIBERS {
        let stack = pool.take().expect("carving a fiber stack failed");
        let mut fiber = Coroutine::with_stack(stack, move |yielder, ()| {
            // Touch about 1 KiB of stack, keep it live across the suspend.
            let mut scratch = [0u8; 1024];
            scratch[0] = i as u8;
            scratch[1023] = (i >> 8) as u8;
            std::hint::black_box(&mut scratch);
            yielder.suspend(());
            std::hint::black_box(&scratch);
            usize::from(scratch[0]) + usize::from(scratch[1023])
        });
        assert!(matches!(fiber.resume(()), CoroutineResult::Yield(())));
        fibers.push(fiber);
    }
    let suspended = start.elapsed();
    let rss = resident_bytes();
    let maps = map_count();
    let grown = rss.saturating_sub(rss_before);
    let pte = page_table_bytes().saturating_sub(pte_before);
    eprintln!(
        "{FIBERS} suspended fibers ({} KiB stacks): RSS {} MiB (+{} MiB, {:.1} KiB per fiber), \
         page tables +{} MiB, maps {maps_before} -> {maps} ({} chunks, {:?}), created in {:?}",
        stack_size >> 10,
        rss >> 20,
        grown >> 20,
        grown as f64 / FIBERS as f64 / 1024.0,
        pte >> 20,
        pool.chunks(),
        stack::guard_method(),
        suspended,
    );
    assert!(
        rss < 1 << 30,
        "RSS {rss} bytes with {FIBERS} suspended fibers"
    );
    assert_eq!(pool.in_use_stacks(), FIBERS);

    let mut sum = 0usize;
    for mut fiber in fibers {
        match fiber.resume(()) {
            CoroutineResult::Return(v) => sum += v,
            CoroutineResult::Yield(()) => panic!("fiber yielded twice"),
        }
        pool.give_back(fiber.into_stack());
    }
    let expected: usize = (0..FIBERS).map(|i| (i & 0xff) + ((i >> 8) & 0xff)).sum();
    assert_eq!(sum, expected);
    assert_eq!(pool.in_use_stacks(), 0);
    assert_eq!(pool.live_stacks(), FIBERS);
    eprintln!(
        "after all completed and returned: RSS {} MiB (pages of stacks beyond the warm limit released)",
        resident_bytes() >> 20
    );
}
