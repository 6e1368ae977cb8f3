//! Issue 5 ("never crash, never hang"): a query waits on another query while
//! its thread is unwinding.
//!
//! std keeps its panic count per OS thread. A fiber whose thread is
//! unwinding must therefore not suspend: another fiber resumed on that
//! worker would see `std::thread::panicking() == true` (and a second panic
//! there would abort the process). `fiber.rs` makes such a wait block the
//! worker thread instead. These tests put a `cx.get` inside the `Drop` of a
//! provider's local value and make the provider panic.
//!
//! # `drop_waits_during_a_panic_without_leaking_the_panic_count`
//!
//! ```text
//!  W1: slow(0) ── spins (never suspends) until the guard waits, + 200 ms ──▶ 7
//!  W2..: blocker ── spins until the end (keeps W0 the only free worker)
//!  W0: top ─▶ unwinder(0) ─▶ par_for_each(0..=16)
//!        items 1..=16: arrive, wait on `wake` ── parked on W0 ─┐
//!        item 0: wait until all 16 parked; guard; panic!       │
//!          Guard::drop (panicking): set `wake` ───────────────▶│ (into W0's mailbox)
//!          cx.try_get::<slow>(0): W0 has fibers: WaitWhileUnwinding │
//!        unwinding ends in par_for_each's catch_unwind          ▼
//!        siblings resume on W0: record panicking(), guard done? (must be false, true)
//!  top: unwinder(0) = Err(Panicked { "unwinder", "0", "injected panic: ..." })
//! ```
//!
//! Fibers mode at 2 and 4 workers: the siblings are pinned to W0 (fibers
//! never migrate), so if the unwinding wait suspended the guard's fiber,
//! W0 would resume them *during* the wait, with W0's panic count: they
//! would record `panicking() == true` and "guard not done yet". Threads mode
//! at 2 and 4 workers runs the same scenario without siblings (a blocked
//! thread runs nothing else) and checks the wait ends with the right value;
//! serial mode computes `slow(0)` inside the `Drop`, during the unwinding.
//! One worker cannot have `slow(0)` in progress elsewhere: see the next test.
//!
//! Fibers mode runs it twice: with no other fiber on W0, where the wait
//! blocks W0 and gets 7, and with the sixteen siblings, where it returns
//! `QueryError::WaitWhileUnwinding` at once (what it waits for could need
//! one of them, see the next test).
//!
//! # `unwinding_wait_on_a_fiber_parked_on_the_same_worker`
//!
//! A regression test of a hang (issue 5's report, fixed in issue 12): the
//! read used to block W0 for good; it now returns
//! `QueryError::WaitWhileUnwinding` at once, because W0 has a parked fiber.
//!
//! ```text
//!  W1: leaf(0) ── spins until the guard waits ──▶ done: wakes parked(0) on W0
//!  W0: top ─▶ par_map [parked(0), unwinder2(0)]
//!        item 0: parked(0) ─▶ cx.get::<leaf>(0): in progress on W1 ─▶ fiber parks on W0
//!        item 1: unwinder2(0) panics; Guard::drop: cx.get::<parked>(0)
//!                ══ blocks W0's thread (unwinding) until parked(0) is done,
//!                   but parked(0) can only resume on W0: deadlock
//! ```
//!
//! # `cycle_read_from_a_drop_during_unwinding`
//!
//! A regression test of an abort found alongside: a `Drop` that runs during
//! unwinding reads a query on its own stack's chain (a cycle) with
//! `try_get`; the engine used to start the cycle's unwinding inside a
//! destructor during cleanup, and the process aborted, in every mode. Now
//! the read returns `QueryError::Cycle` while the thread is unwinding.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use weft_queries::{query, Cx, Engine, QueryError};
use weft_runtime::{current_worker_index, par_for_each, par_map, Latch, Mode, Runtime};
use weft_tests::{
    configs, for_configs, inject_panic, quiet_injected_panics, runtime, with_timeout, Arrivals,
    Config, INJECTED,
};

/// Fibers parked on the unwinding worker while its guard waits.
const SIBLINGS: usize = 16;

/// How long `slow(0)` keeps running after the guard announced its wait,
/// unless a sibling already ran (then the bug is shown, no need to wait).
const GRACE: Duration = Duration::from_millis(200);

/// An upper bound on any spin, so that a broken scenario fails its
/// assertions instead of spinning until the test timeout.
const CAP: Duration = Duration::from_secs(20);

/// What a sibling saw when it resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sibling {
    parked_on: Option<usize>,
    resumed_on: Option<usize>,
    panicking: bool,
    guard_done: bool,
}

#[derive(Default)]
struct Db {
    siblings: usize,
    slow_started: Latch,
    slow_executions: AtomicUsize,
    slow_done: AtomicBool,
    slow_worker: Mutex<Option<usize>>,
    unwinder_worker: Mutex<Option<usize>>,
    /// Set by the guard right before its `cx.get`.
    guard_waiting: Latch,
    guard_waiting_since: Mutex<Option<Instant>>,
    guard_saw_panicking: AtomicBool,
    slow_done_before_get: Mutex<Option<bool>>,
    guard_got: Mutex<Option<Result<u64, QueryError>>>,
    guard_done: AtomicBool,
    parked: Option<Arrivals>,
    wake: Latch,
    resumed: Mutex<Vec<Sibling>>,
    resumed_early: AtomicUsize,
}

/// Spins (without suspending) until the guard has announced its wait and
/// then [`GRACE`] has passed or a sibling resumed; returns 7.
#[query]
fn slow(cx: &Cx<Db>, _key: u32) -> u64 {
    let db = cx.db();
    db.slow_executions.fetch_add(1, Ordering::SeqCst);
    *db.slow_worker.lock().unwrap() = current_worker_index();
    db.slow_started.set();
    let started = Instant::now();
    while started.elapsed() < CAP {
        if db.guard_waiting.probe() {
            let since = db.guard_waiting_since.lock().unwrap().expect("set first");
            if since.elapsed() >= GRACE || db.resumed_early.load(Ordering::SeqCst) > 0 {
                break;
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
    db.slow_done.store(true, Ordering::SeqCst);
    7
}

/// A provider-local value whose `Drop` asks for `slow(0)`.
struct Guard<'a> {
    cx: Cx<'a, Db>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let db = self.cx.db();
        db.guard_saw_panicking
            .store(thread::panicking(), Ordering::SeqCst);
        *db.slow_done_before_get.lock().unwrap() = Some(db.slow_done.load(Ordering::SeqCst));
        *db.guard_waiting_since.lock().unwrap() = Some(Instant::now());
        db.guard_waiting.set();
        db.wake.set();
        let v = self.cx.try_slow(0);
        *db.guard_got.lock().unwrap() = Some(v);
        db.guard_done.store(true, Ordering::SeqCst);
    }
}

/// Item 0 panics with a [`Guard`] alive, once every sibling is parked;
/// items `1..=siblings` park on `wake` and record what they see on resume.
#[query]
fn unwinder(cx: &Cx<Db>, key: u32) -> u64 {
    let db = cx.db();
    let items: Vec<usize> = (0..=db.siblings).collect();
    par_for_each(&items, |_, &i| {
        if i == 0 {
            if let Some(parked) = &db.parked {
                parked.wait_all();
            }
            *db.unwinder_worker.lock().unwrap() = current_worker_index();
            let _guard = Guard { cx: *cx };
            inject_panic(format_args!("unwinder {key}"));
        }
        let parked_on = current_worker_index();
        if let Some(parked) = &db.parked {
            parked.arrive();
        }
        db.wake.wait();
        let guard_done = db.guard_done.load(Ordering::SeqCst);
        let panicking = thread::panicking();
        if !guard_done || panicking {
            db.resumed_early.fetch_add(1, Ordering::SeqCst);
        }
        db.resumed.lock().unwrap().push(Sibling {
            parked_on,
            resumed_on: current_worker_index(),
            panicking,
            guard_done,
        });
    });
    0
}

/// Occupies one worker (without suspending) until `end` is set.
fn block_a_worker(
    rt: &Runtime,
    spinning: &Arc<Arrivals>,
    end: &Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let (rt, spinning, end) = (rt.clone(), Arc::clone(spinning), Arc::clone(end));
    thread::spawn(move || {
        rt.block_on(|| {
            spinning.arrive();
            let started = Instant::now();
            while !end.load(Ordering::SeqCst) && started.elapsed() < CAP {
                thread::sleep(Duration::from_micros(200));
            }
        })
    })
}

fn drop_waits_during_a_panic(mode: Mode, threads: usize) {
    drop_waits_with_siblings(mode, threads, 0);
    if mode == Mode::Fibers {
        drop_waits_with_siblings(mode, threads, SIBLINGS);
    }
}

fn drop_waits_with_siblings(mode: Mode, threads: usize, siblings: usize) {
    let rt = runtime(mode, threads);
    let engine = Engine::new(
        rt.clone(),
        Db {
            siblings,
            parked: (siblings > 0).then(|| Arrivals::new(siblings)),
            ..Db::default()
        },
    );
    let end = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    if mode != Mode::Serial {
        // slow(0) first, on a worker of its own ...
        let e = engine.clone();
        helpers.push(thread::spawn(move || {
            assert_eq!(e.get::<slow>(0), Ok(7));
        }));
        engine.db().slow_started.wait();
        // ... then every other worker but one busy, so the top task (and
        // every sibling it forks) runs on the one left: W0.
        let spinning = Arc::new(Arrivals::new(threads - 2));
        for _ in 2..threads {
            helpers.push(block_a_worker(&rt, &spinning, &end));
        }
        spinning.wait_all();
    }
    let result = engine.get::<unwinder>(0);
    end.store(true, Ordering::SeqCst);
    for h in helpers {
        h.join().expect("helper thread");
    }
    let db = engine.db();

    match &result {
        Err(QueryError::Panicked {
            query,
            key,
            message,
        }) => {
            assert_eq!((*query, key.as_str()), ("unwinder", "0"));
            assert!(message.starts_with(INJECTED), "message: {message}");
        }
        other => panic!("unwinder(0) should have panicked, got {other:?}"),
    }
    assert!(
        db.guard_saw_panicking.load(Ordering::SeqCst),
        "the guard ran outside a panic"
    );
    assert_eq!(
        *db.slow_done_before_get.lock().unwrap(),
        Some(false),
        "slow(0) was done before the guard asked"
    );
    let got = db.guard_got.lock().unwrap().clone();
    if siblings == 0 {
        // Nothing else on the unwinding worker: its thread blocks and the
        // read completes.
        assert_eq!(got, Some(Ok(7)), "the guard's read");
    } else {
        // Sixteen fibers on the unwinding worker (runnable: the guard set
        // `wake`): the read neither suspends nor blocks.
        assert_eq!(
            got,
            Some(Err(QueryError::WaitWhileUnwinding {
                query: "slow",
                key: "0".to_owned()
            })),
            "the guard's read"
        );
    }
    assert_eq!(db.slow_executions.load(Ordering::SeqCst), 1);
    if mode != Mode::Serial {
        let (slow, unwinder) = (
            *db.slow_worker.lock().unwrap(),
            *db.unwinder_worker.lock().unwrap(),
        );
        assert!(
            slow.is_some() && unwinder.is_some() && slow != unwinder,
            "slow on {slow:?}, unwinder on {unwinder:?}"
        );
    }
    let resumed = db.resumed.lock().unwrap().clone();
    assert_eq!(
        resumed.len(),
        siblings,
        "siblings that resumed: {resumed:?}"
    );
    let w0 = *db.unwinder_worker.lock().unwrap();
    for s in &resumed {
        assert_eq!(
            s.parked_on, w0,
            "a sibling parked off the unwinding worker: {resumed:?}"
        );
        assert_eq!(s.resumed_on, s.parked_on, "a fiber migrated: {resumed:?}");
        assert!(
            !s.panicking,
            "a sibling fiber observed the unwinding worker's panic: {resumed:?}"
        );
        assert!(
            s.guard_done,
            "a sibling ran on the unwinding worker while its guard waited: {resumed:?}"
        );
    }
    // The runtime is still usable.
    assert_eq!(rt.block_on(|| 40 + 2), 42);
}

#[test]
fn drop_waits_during_a_panic_without_leaking_the_panic_count() {
    quiet_injected_panics();
    let list: Vec<Config> = configs()
        .into_iter()
        .filter(|c| c.mode == Mode::Serial || c.threads >= 2)
        .collect();
    assert!(list.iter().any(|c| c.mode == Mode::Threads));
    for_configs(list, drop_waits_during_a_panic);
}

// ---------------------------------------------------------------------------
// The reproducer of the same-worker hang.

#[derive(Default)]
struct HangDb {
    leaf_started: Latch,
    guard_waiting: Latch,
    guard_got: Mutex<Option<Result<u64, QueryError>>>,
}

/// Spins on its own worker until the guard announces its wait.
#[query]
fn leaf(cx: &Cx<HangDb>, _key: u32) -> u64 {
    cx.db().leaf_started.set();
    let started = Instant::now();
    while !cx.db().guard_waiting.probe() && started.elapsed() < CAP {
        thread::sleep(Duration::from_micros(200));
    }
    1
}

/// Waits on `leaf(0)`, in progress on another worker: its fiber parks.
#[query]
fn parked(cx: &Cx<HangDb>, key: u32) -> u64 {
    cx.leaf(key) + 1
}

struct ParkedGuard<'a>(Cx<'a, HangDb>);

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        let got = self.0.try_parked(0);
        *self.0.db().guard_got.lock().unwrap() = Some(got);
        self.0.db().guard_waiting.set();
    }
}

/// Panics with a guard that asks for `parked(0)`.
#[query]
fn unwinder2(cx: &Cx<HangDb>, key: u32) -> u64 {
    let _guard = ParkedGuard(*cx);
    inject_panic(format_args!("unwinder2 {key}"))
}

/// Regression (issue 12): the read returns `WaitWhileUnwinding` at once
/// instead of blocking the worker that must resume `parked(0)`.
#[test]
fn unwinding_wait_on_a_fiber_parked_on_the_same_worker() {
    if !cfg!(feature = "fibers") {
        return; // the hang needs fibers mode
    }
    quiet_injected_panics();
    with_timeout(10, || {
        let rt = runtime(Mode::Fibers, 2);
        let engine = Engine::new(rt, HangDb::default());
        let e = engine.clone();
        let leaf = thread::spawn(move || e.get::<leaf>(0));
        engine.db().leaf_started.wait();
        let results = engine.run(|cx| {
            par_map(&[0, 1], |_, &i| {
                if i == 0 {
                    cx.try_parked(0)
                } else {
                    cx.try_unwinder2(0)
                }
            })
        });
        assert_eq!(results[0], Ok(2));
        assert!(
            matches!(results[1], Err(QueryError::Panicked { .. })),
            "{results:?}"
        );
        assert_eq!(leaf.join().expect("leaf thread"), Ok(1));
        assert_eq!(
            *engine.db().guard_got.lock().unwrap(),
            Some(Err(QueryError::WaitWhileUnwinding {
                query: "parked",
                key: "0".to_owned()
            }))
        );
    });
}

// ---------------------------------------------------------------------------
// The reproducer of the abort: a read that closes a cycle, from a `Drop`
// during unwinding.

/// Environment variable that makes the test below run its scenario (in a
/// child process) instead of spawning it.
const ABORT_CHILD: &str = "WEFT_UNWINDING_ABORT_CHILD";

/// Asks for `outer(0)` (its own caller) from a `Drop` while `inner(0)`
/// unwinds.
struct CycleGuard<'a>(Cx<'a, ()>);

impl Drop for CycleGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.try_outer(0);
    }
}

/// Asks for `inner(0)`.
#[query]
fn outer(cx: &Cx<()>, key: u32) -> u64 {
    cx.inner(key)
}

/// Panics with a [`CycleGuard`] alive.
#[query]
fn inner(cx: &Cx<()>, key: u32) -> u64 {
    let _guard = CycleGuard(*cx);
    inject_panic(format_args!("inner {key}"))
}

/// Regression (issue 5 report), in every mode: `try_get` lets a cycle's
/// unwinding pass through a caller that is on the cycle, but from a `Drop`
/// during unwinding a second unwind would abort the process ("panic in a
/// destructor during cleanup"). The engine returns `QueryError::Cycle`
/// instead: the read returns, `outer(0)` ends with an error, the process
/// lives. The scenario runs in a child process, so an abort fails only this
/// test.
///
/// ```text
///  outer(0) ─▶ inner(0) ─▶ panic! ─▶ CycleGuard::drop (unwinding)
///                                      └─ try_get::<outer>(0): same-stack cycle
///                                         └─ returns Err(Cycle) (no second unwind)
/// ```
#[test]
fn cycle_read_from_a_drop_during_unwinding() {
    if std::env::var_os(ABORT_CHILD).is_some() {
        quiet_injected_panics();
        for config in configs() {
            let engine = Engine::new(config.runtime(), ());
            let result = engine.get::<outer>(0);
            assert!(result.is_err(), "[{config}] outer(0) = {result:?}");
            assert_eq!(engine.runtime().block_on(|| 40 + 2), 42);
        }
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = std::process::Command::new(exe)
        .args([
            "--exact",
            "cycle_read_from_a_drop_during_unwinding",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ABORT_CHILD, "1")
        .output()
        .expect("running the scenario in a child process");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    assert!(
        output.status.success(),
        "the scenario's process ended with {}; stderr ends with:\n{}",
        output.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
