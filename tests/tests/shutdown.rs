//! Issue 5 ("never crash, never hang"): dropping the last [`Runtime`] handle
//! joins every worker thread and frees every fiber stack, in every mode and
//! worker count, also after a query panicked, after a cycle, and after
//! hundreds of fibers were suspended at once.
//!
//! ```text
//!  before: worker threads (entries of /proc/self/task named weft-worker-*),
//!          exited-worker count, VmSize
//!  build ─▶ touch every worker ─▶ use (plain / panic / cycle / 300 parked) ─▶ drop
//!  after (as soon as drop returns):
//!    every worker's thread-local destructor has run  (its thread ended: joined)
//!    no weft-worker-* entry left in /proc/self/task  (polled for up to 1 s:
//!                                                     the kernel reaps a joined
//!                                                     thread a moment later)
//!    VmSize back within 256 MiB of before            (fiber stacks are 64 MiB
//!                                                     each here, carved 8+ per
//!                                                     mapping: one leaked
//!                                                     mapping is >= 512 MiB)
//! ```
//!
//! [`Runtime::live_stacks`] counts stacks carved and not freed; the pool frees
//! them all at once, with the runtime, so the accessor can only be read while
//! a handle exists: the tests read it before the drop (it must show the
//! stacks that were carved) and measure the release through `VmSize`.
//!
//! The counts are process-wide, so the tests of this file take a lock and
//! never overlap; threads are counted by name so that the test harness's
//! own threads, which come and go as tests start and end, do not count.
//!
//! # Suspended fibers at drop
//!
//! `FiberSet::shutdown` force-unwinds fibers still suspended when a worker
//! exits. With the public API there are none by the time the last handle
//! drops: every fiber runs a task of some `block_on` (directly, or forked by
//! `join`/`scope`/`par_for_each`, which all wait for their children before
//! returning), `block_on(&self)` borrows a handle for its whole call, and it
//! returns only after its task and every task forked inside it finished. A
//! suspended fiber therefore always has a live handle above it (a thread
//! stuck in `block_on` keeps its handle, and a handle moved into a task is
//! dropped when the task's closure returns, before `block_on` does).
//! `parked_fibers_then_drop_leaks_nothing` shows the closest legitimate
//! case: 300 fibers suspended at once, released, then the drop.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weft_queries::{query, Cx, Engine, QueryError};
use weft_runtime::{
    current_worker_index, par_for_each, par_map, scope, Jobserver, Latch, Mode, Runtime,
};
use weft_tests::{
    concurrent_items, for_each_config, inject_panic, quiet_injected_panics, Arrivals, INJECTED,
};

/// Fiber stack size in these tests: large, so that a leaked stack mapping
/// shows in `VmSize` far above allocator noise.
const STACK: usize = 64 << 20;

/// How far `VmSize` may stay above its value before the runtime was built
/// (new malloc arenas reserve 64 MiB each).
const SLACK_KIB: u64 = 256 << 10;

/// Fibers suspended at once in `parked_fibers_then_drop_leaks_nothing`.
const PARKED: usize = 300;

/// Serializes the tests of this file: they measure the whole process.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Worker threads that ended (their thread-local [`ExitProbe`] dropped).
static EXITED: AtomicUsize = AtomicUsize::new(0);

/// Counts its thread's exit into [`EXITED`].
struct ExitProbe(Cell<bool>);

impl Drop for ExitProbe {
    fn drop(&mut self) {
        if self.0.get() {
            EXITED.fetch_add(1, Ordering::SeqCst);
        }
    }
}

thread_local! {
    static PROBE: ExitProbe = const { ExitProbe(Cell::new(false)) };
}

/// Arms this thread's exit probe (once per thread).
fn arm_probe() {
    PROBE.with(|p| p.0.set(true));
}

/// Entries of `/proc/self/task` whose thread name starts with `weft-worker`.
fn worker_threads() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|name| name.starts_with("weft-worker"))
        })
        .count()
}

/// Waits (at most 1 s) until no more than `n` `weft-worker` threads are
/// listed: a joined thread's `/proc/self/task` entry can outlive the join by
/// a moment.
fn wait_for_worker_threads_at_most(n: usize) {
    let started = Instant::now();
    while worker_threads() > n && started.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `VmSize` of this process in KiB.
fn vm_size_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status")
}

fn build(mode: Mode, threads: usize) -> Runtime {
    Runtime::builder()
        .mode(mode)
        .threads(threads)
        .stack_size(if mode == Mode::Fibers { STACK } else { 1 << 20 })
        .jobserver(Jobserver::Disabled)
        .build()
        .unwrap_or_else(|e| panic!("[{mode}/{threads}] build: {e}"))
}

/// Runs one task on every worker at once (each spins, never suspending,
/// until all have arrived, so no worker can hold two), arming each worker
/// thread's exit probe. Returns the distinct worker indices seen.
fn touch_every_worker(rt: &Runtime) -> Vec<usize> {
    let n = rt.num_threads();
    let arrived = AtomicUsize::new(0);
    let seen = Mutex::new(Vec::new());
    let task = || {
        if rt.mode() != Mode::Serial {
            arm_probe();
        }
        seen.lock().unwrap().push(current_worker_index());
        arrived.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        while arrived.load(Ordering::SeqCst) < n && started.elapsed() < Duration::from_secs(20) {
            std::thread::yield_now();
        }
    };
    rt.block_on(|| {
        scope(|s| {
            for _ in 1..n {
                s.spawn(|_| task());
            }
            task();
        })
    });
    let mut seen: Vec<usize> = seen.into_inner().unwrap().into_iter().flatten().collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// What is measured before a runtime is built.
struct Before {
    workers: usize,
    exited: usize,
    vm_kib: u64,
}

fn before() -> Before {
    Before {
        workers: worker_threads(),
        exited: EXITED.load(Ordering::SeqCst),
        vm_kib: vm_size_kib(),
    }
}

/// Builds a runtime, arms every worker's probe, runs `work`, reads
/// `live_stacks` (which `work` may check), drops the runtime and checks the
/// drop released everything (see the module doc). Returns `live_stacks()`
/// read just before the drop.
fn build_use_drop(mode: Mode, threads: usize, work: impl FnOnce(&Runtime)) -> usize {
    let _lock = exclusive();
    // Warm up: thread stacks, malloc arenas, the overflow handler's alt
    // stacks, so that what stays mapped afterwards is not counted.
    let workers_before_warm_up = worker_threads();
    drop(build(mode, threads).block_on(|| par_map(&[1, 2, 3], |_, x| x * 2)));
    wait_for_worker_threads_at_most(workers_before_warm_up);
    let b = before();
    let rt = build(mode, threads);
    let expected_workers = if mode == Mode::Serial { 0 } else { threads };
    assert_eq!(rt.live_stacks(), 0, "stacks carved before any task ran");
    let seen = touch_every_worker(&rt);
    if mode == Mode::Serial {
        assert_eq!(seen, [0], "serial mode runs on the caller");
    } else {
        assert_eq!(
            seen,
            (0..threads).collect::<Vec<_>>(),
            "every worker ran a task"
        );
    }
    // Every worker ran a task, so every worker thread has named itself.
    assert_eq!(
        worker_threads(),
        b.workers + expected_workers,
        "workers running"
    );
    work(&rt);
    let live = rt.live_stacks();
    if mode == Mode::Fibers {
        assert!(
            live >= threads,
            "{threads} tasks ran at once on fibers, but live_stacks() = {live}"
        );
    } else {
        assert_eq!(live, 0, "no fiber stacks outside fibers mode");
    }

    drop(rt);

    let exited = EXITED.load(Ordering::SeqCst) - b.exited;
    assert_eq!(
        exited, expected_workers,
        "worker threads that ended by the time drop returned"
    );
    wait_for_worker_threads_at_most(b.workers);
    assert_eq!(
        worker_threads(),
        b.workers,
        "weft-worker threads left in /proc/self/task"
    );
    let vm = vm_size_kib();
    eprintln!(
        "{mode}/{threads}: live_stacks {live} before the drop; VmSize {} -> {} MiB",
        b.vm_kib >> 10,
        vm >> 10
    );
    assert!(
        vm <= b.vm_kib + SLACK_KIB,
        "VmSize {} MiB after the drop, {} MiB before: fiber stacks not freed?",
        vm >> 10,
        b.vm_kib >> 10
    );
    live
}

/// ```text
///  build ─▶ every worker runs a task ─▶ join / par_map ─▶ drop ─▶ all released
/// ```
#[test]
fn drop_joins_workers_and_frees_stacks() {
    for_each_config(|mode, threads| {
        build_use_drop(mode, threads, |rt| {
            let (a, b) =
                rt.block_on(|| weft_runtime::join(|| 1, || par_map(&[1, 2, 3], |_, x| x + 1)));
            assert_eq!((a, b), (1, vec![2, 3, 4]));
        });
    });
}

struct Db {
    boom_requests: Arrivals,
}

/// Panics once enough requesters asked for it.
#[query]
fn boom(cx: &Cx<Db>, key: u32) -> u32 {
    cx.db().boom_requests.wait_all();
    inject_panic(format_args!("boom {key}"))
}

/// `ping(k)` asks for `pong(k)`, which asks for `ping(k)`.
#[query]
fn ping(cx: &Cx<Db>, key: u32) -> u32 {
    cx.pong(key) + 1
}

/// `pong(k)` asks for `ping(k)`.
#[query]
fn pong(cx: &Cx<Db>, key: u32) -> u32 {
    cx.ping(key) + 1
}

/// ```text
///  8 requesters ─▶ boom(1) (panics once they all asked) ─▶ 8 × Panicked
///  block_on(|| panic!) ─▶ resumed on the caller ─▶ drop ─▶ all released
/// ```
#[test]
fn drop_after_a_query_panicked() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        build_use_drop(mode, threads, |rt| {
            let requesters = 8;
            let engine = Engine::new(
                rt.clone(),
                Db {
                    boom_requests: Arrivals::new(concurrent_items(mode, threads, requesters)),
                },
            );
            let results = engine.run(|cx| {
                par_map(&vec![(); requesters], |_, ()| {
                    cx.db().boom_requests.arrive();
                    cx.try_boom(1)
                })
            });
            for r in &results {
                assert!(
                    matches!(r, Err(QueryError::Panicked { query: "boom", message, .. }) if message.starts_with(INJECTED)),
                    "{r:?}"
                );
            }
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(|| inject_panic("block_on"))
            }));
            assert!(caught.is_err(), "block_on resumes the task's panic");
        });
    });
}

/// ```text
///  par_map [ping(1), pong(1)] ─▶ a cycle across tasks ─▶ Cycle errors ─▶ drop
/// ```
#[test]
fn drop_after_a_cycle() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        build_use_drop(mode, threads, |rt| {
            let engine = Engine::new(
                rt.clone(),
                Db {
                    boom_requests: Arrivals::new(0),
                },
            );
            let results = engine.run(|cx| {
                par_map(&[0, 1], |i, _| {
                    if i == 0 {
                        cx.try_ping(1)
                    } else {
                        cx.try_pong(1)
                    }
                })
            });
            for r in &results {
                match r {
                    Err(QueryError::Cycle(cycle)) => {
                        assert_eq!(cycle.to_string(), "`ping(1)` -> `pong(1)` -> `ping(1)`")
                    }
                    other => panic!("expected the cycle, got {other:?}"),
                }
            }
        });
    });
}

/// ```text
///  par_for_each(300 items): each arrives, waits on `release` (fiber parks)
///  outside: wait until all that can wait at once arrived; read live_stacks
///           and VmSize (300 × 64 MiB stacks carved); set `release`
///  every item returns ─▶ drop ─▶ all released
/// ```
///
/// Fibers mode parks all 300 at once; threads mode as many as it has
/// spare workers; serial mode one at a time (`release` is set from the
/// start there: nobody else could set it).
#[test]
fn parked_fibers_then_drop_leaks_nothing() {
    for_each_config(|mode, threads| {
        let live = build_use_drop(mode, threads, |rt| {
            let vm_before = vm_size_kib();
            let at_once = concurrent_items(mode, threads, PARKED);
            let arrivals = Arrivals::new(at_once);
            let release = Latch::new();
            if mode == Mode::Serial {
                release.set();
            }
            let ran = AtomicUsize::new(0);
            let (suspended, vm_parked) = std::thread::scope(|s| {
                let parker = s.spawn(|| {
                    rt.block_on(|| {
                        par_for_each(&[(); PARKED], |_, ()| {
                            arrivals.arrive();
                            release.wait();
                            ran.fetch_add(1, Ordering::SeqCst);
                        })
                    })
                });
                arrivals.wait_all();
                let parked = (rt.live_stacks(), vm_size_kib());
                release.set();
                parker.join().expect("the par_for_each thread");
                parked
            });
            assert_eq!(ran.load(Ordering::SeqCst), PARKED);
            if mode == Mode::Fibers {
                assert!(
                    suspended >= PARKED,
                    "{PARKED} parked fibers, live_stacks() = {suspended}"
                );
                // The measurement that the drop check relies on does see
                // carved stacks: 300 of 64 MiB each.
                let grown = vm_parked.saturating_sub(vm_before);
                assert!(
                    grown >= (PARKED * (STACK >> 10) / 2) as u64,
                    "VmSize grew by only {} MiB with {PARKED} parked fibers",
                    grown >> 10
                );
            }
        });
        if mode == Mode::Fibers {
            assert!(live >= PARKED);
        }
    });
}
