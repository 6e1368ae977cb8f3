//! Acceptance test 5 of issue 2: dependency cycles end, never hang, and end
//! the same way in every mode and at every worker count.
//!
//! Scenarios: a self-cycle; `cyc_a → cyc_b → cyc_a` started on two workers;
//! `cyc_a → cyc_b → cyc_c → cyc_a` started on three; a `par_for_each` child
//! asking for the query its parent is computing. Each ends as
//! `QueryError::Cycle` with the canonical frames (rotation starting at the
//! smallest `(query, key)`), or as the query's `recover` value where it
//! defines one — checked against the exact expected value in every
//! configuration, which makes them equal across configurations too.
//!
//! Forcing: where the configuration can keep all the providers in progress
//! at once ([`can_wait_concurrently`]), each provider announces that it has
//! started and waits (runtime-aware latches) until every provider of the
//! ring has started before it asks for the next one, so the cycle closes
//! across workers (or across suspended fibers at 1 worker). Elsewhere
//! (serial mode; threads mode with too few workers) the same program runs
//! unforced: in serial mode simply in program order, the first provider
//! computing the others on its own stack.

use parking_lot::Mutex;
use weft_queries::{query, Cx, Cycle, CycleFrame, Engine, Query, QueryError};
use weft_runtime::{join, par_for_each, par_map, Latch};
use weft_tests::{can_wait_concurrently, for_each_config, runtime, Signal};

/// How a `par_for_each` child asks for its parent's query.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ChildAsks {
    /// `cx.get`: the cycle error unwinds through the child and the parent.
    Get,
    /// `cx.try_get`: the child sees the error and returns normally.
    TryGet,
}

struct Db {
    /// Ring length: 2 (`a → b → a`) or 3 (`a → b → c → a`).
    len: usize,
    /// Which of `cyc_a`, `cyc_b`, `cyc_c` define a `recover` value.
    recover: [bool; 3],
    /// Force every ring provider to be in progress before any asks further.
    force: bool,
    /// `started[i]`: provider `i` of the ring is in progress.
    started: [Latch; 3],
    /// Whether `self_loop` and `parent` recover.
    loop_recovers: bool,
    child_asks: ChildAsks,
    /// Stage 1: the cycling `par_for_each` child has started.
    child_signal: Signal,
    /// What the child's `try_get` returned.
    child_saw: Mutex<Option<Result<String, QueryError>>>,
}

impl Db {
    fn new(len: usize, recover: [bool; 3], force: bool) -> Self {
        Db {
            len,
            recover,
            force,
            started: [Latch::new(), Latch::new(), Latch::new()],
            loop_recovers: false,
            child_asks: ChildAsks::Get,
            child_signal: Signal::new(1),
            child_saw: Mutex::new(None),
        }
    }
}

/// Provider `i` of the ring: optionally waits until the whole ring is in
/// progress, then asks for the next provider.
fn ring_step(cx: &Cx<'_, Db>, i: usize, key: u32) -> String {
    let db = cx.db();
    if db.force {
        db.started[i].set();
        for latch in &db.started[..db.len] {
            latch.wait();
        }
    }
    let next = (i + 1) % db.len;
    let value = match next {
        0 => cx.cyc_a(key),
        1 => cx.cyc_b(key),
        _ => cx.cyc_c(key),
    };
    format!("{i} after {value}")
}

fn ring_recover(cx: &Cx<'_, Db>, i: usize, name: &str, cycle: &Cycle) -> Option<String> {
    cx.db().recover[i].then(|| format!("{name} recovered from {cycle}"))
}

#[query(recover = cyc_a_recover)]
fn cyc_a(cx: &Cx<Db>, key: u32) -> String {
    ring_step(cx, 0, key)
}

#[query(recover = cyc_b_recover)]
fn cyc_b(cx: &Cx<Db>, key: u32) -> String {
    ring_step(cx, 1, key)
}

#[query(recover = cyc_c_recover)]
fn cyc_c(cx: &Cx<Db>, key: u32) -> String {
    ring_step(cx, 2, key)
}

fn cyc_a_recover(cx: &Cx<'_, Db>, cycle: &Cycle, _: &u32) -> Option<String> {
    ring_recover(cx, 0, <cyc_a as Query>::NAME, cycle)
}

fn cyc_b_recover(cx: &Cx<'_, Db>, cycle: &Cycle, _: &u32) -> Option<String> {
    ring_recover(cx, 1, <cyc_b as Query>::NAME, cycle)
}

fn cyc_c_recover(cx: &Cx<'_, Db>, cycle: &Cycle, _: &u32) -> Option<String> {
    ring_recover(cx, 2, <cyc_c as Query>::NAME, cycle)
}

/// Asks for itself.
#[query(recover = self_loop_recover)]
fn self_loop(cx: &Cx<Db>, key: u32) -> String {
    format!("never: {}", cx.self_loop(key))
}

fn self_loop_recover(cx: &Cx<'_, Db>, cycle: &Cycle, _: &u32) -> Option<String> {
    cx.db()
        .loop_recovers
        .then(|| format!("self_loop recovered from {cycle}"))
}

/// Not part of any cycle: reports what it saw of `cyc_a`.
#[query]
fn watch(cx: &Cx<Db>, key: u32) -> String {
    format!("watched {:?}", cx.try_cyc_a(key))
}

/// Runs four children with `par_for_each`; child 2 asks for `parent` itself.
#[query(recover = parent_recover)]
fn parent(cx: &Cx<Db>, key: u32) -> String {
    let db = cx.db();
    let items: Vec<u32> = (0..4).collect();
    par_for_each(&items, |i, _| match i {
        // Holds the parent's par_for_each open until child 2 has started,
        // so child 2 is a task of its own (another worker, or another
        // fiber), not code run after the others on the parent's stack.
        0 if db.force => db.child_signal.wait_for(1),
        2 => {
            db.child_signal.signal(1);
            match db.child_asks {
                ChildAsks::Get => drop(cx.parent(key)),
                ChildAsks::TryGet => *db.child_saw.lock() = Some(cx.try_parent(key)),
            }
        }
        _ => {}
    });
    "parent finished".to_string()
}

fn parent_recover(cx: &Cx<'_, Db>, cycle: &Cycle, _: &u32) -> Option<String> {
    cx.db()
        .loop_recovers
        .then(|| format!("parent recovered from {cycle}"))
}

fn frame(query: &'static str, key: &str) -> CycleFrame {
    CycleFrame {
        query,
        key: key.to_string(),
    }
}

fn cycle(frames: &[(&'static str, &str)]) -> Cycle {
    Cycle {
        frames: frames.iter().map(|&(q, k)| frame(q, k)).collect(),
    }
}

fn ring_cycle(len: usize) -> Cycle {
    let all = [("cyc_a", "0"), ("cyc_b", "0"), ("cyc_c", "0")];
    cycle(&all[..len])
}

/// The expected result of ring member `name` for a ring with `recover`.
fn ring_expected(len: usize, i: usize, recover: [bool; 3]) -> Result<String, QueryError> {
    let c = ring_cycle(len);
    let name = ["cyc_a", "cyc_b", "cyc_c"][i];
    if recover[i] {
        Ok(format!("{name} recovered from {c}"))
    } else {
        Err(QueryError::Cycle(c))
    }
}

#[test]
fn cycle_display_is_canonical() {
    let c = ring_cycle(2);
    assert_eq!(c.to_string(), "`cyc_a(0)` -> `cyc_b(0)` -> `cyc_a(0)`");
    assert_eq!(c.frames(), &c.frames[..]);
    let one = cycle(&[("self_loop", "7")]);
    assert_eq!(one.to_string(), "`self_loop(7)` -> `self_loop(7)`");
}

/// ```text
///  tasks 0..4 (par_map), unforced
///  first: get(self_loop(7)) → compute → get(self_loop(7)): on its own stack
///         → Cycle [self_loop(7)]
///  others: wait for / hit self_loop(7) → the same result
/// ```
#[test]
fn self_cycle() {
    for recovers in [false, true] {
        let results = for_each_config(move |mode, threads| {
            let mut db = Db::new(1, [false; 3], false);
            db.loop_recovers = recovers;
            let engine = Engine::new(runtime(mode, threads), db);
            let keys = [7u32; 4];
            let seen = engine.run(|cx| par_map(&keys, |_, &k| cx.try_self_loop(k)));
            seen.into_iter()
                .chain([engine.get::<self_loop>(7)])
                .collect::<Vec<_>>()
        });
        let c = cycle(&[("self_loop", "7")]);
        let expected = if recovers {
            Ok(format!("self_loop recovered from {c}"))
        } else {
            Err(QueryError::Cycle(c))
        };
        for (config, seen) in results {
            assert_eq!(
                seen,
                vec![expected.clone(); 5],
                "[{config}] recover={recovers}"
            );
        }
    }
}

/// ```text
///  worker X                              worker Y
///  ────────                              ────────
///  join: get(cyc_a(0))                   (steals) get(cyc_b(0))
///    started[a].set()                      started[b].set()
///    wait started[a], started[b]           wait started[a], started[b]
///    get(cyc_b(0)) → in progress on Y      get(cyc_a(0)) → in progress on X
///    ── whichever checks second finds the wait-for cycle a → b → a ──
///  Err(Cycle [cyc_a(0), cyc_b(0)])       the same  (or each one's recover value)
///
///  serial (and threads/1): cyc_a → cyc_b → cyc_a on one stack; then the
///  second join half is a hit.
/// ```
#[test]
fn two_cycle_across_two_workers() {
    let variants = [
        [false; 3],
        [true; 3],
        [true, false, false],
        [false, true, false],
    ];
    for recover in variants {
        let results = for_each_config(move |mode, threads| {
            let force = can_wait_concurrently(mode, threads, 2);
            let engine = Engine::new(runtime(mode, threads), Db::new(2, recover, force));
            let (a, b) = engine.run(|cx| join(|| cx.try_cyc_a(0), || cx.try_cyc_b(0)));
            // Later callers see the same results.
            let later = (engine.get::<cyc_a>(0), engine.get::<cyc_b>(0));
            (a, b, later)
        });
        let ea = ring_expected(2, 0, recover);
        let eb = ring_expected(2, 1, recover);
        for (config, (a, b, later)) in results {
            assert_eq!(a, ea, "[{config}] cyc_a, recover={recover:?}");
            assert_eq!(b, eb, "[{config}] cyc_b, recover={recover:?}");
            assert_eq!(later, (ea.clone(), eb.clone()), "[{config}] later");
        }
    }
}

/// ```text
///  worker X                  worker Y                  worker Z
///  join: get(cyc_c(0))       get(cyc_a(0))             get(cyc_b(0))
///    all three set started[i] and wait until all three have started
///    get(cyc_a(0)) ⏳         get(cyc_b(0)) ⏳           get(cyc_c(0)) → cycle
///  every member: Cycle [cyc_a(0), cyc_b(0), cyc_c(0)] — canonical rotation,
///  although the ring was entered at cyc_c (serial: c → a → b → c on one stack)
/// ```
#[test]
fn three_cycle_across_three_workers() {
    for recover in [[false; 3], [true; 3], [false, false, true]] {
        let results = for_each_config(move |mode, threads| {
            let force = can_wait_concurrently(mode, threads, 3);
            let engine = Engine::new(runtime(mode, threads), Db::new(3, recover, force));
            engine.run(|cx| {
                let (c, (a, b)) = join(
                    || cx.try_cyc_c(0),
                    || join(|| cx.try_cyc_a(0), || cx.try_cyc_b(0)),
                );
                [a, b, c]
            })
        });
        let expected: Vec<_> = (0..3).map(|i| ring_expected(3, i, recover)).collect();
        for (config, seen) in results {
            assert_eq!(seen.to_vec(), expected, "[{config}] recover={recover:?}");
        }
    }
}

/// ```text
///  watch(0) ── try_get(cyc_a(0)) ── cyc_a → cyc_b → cyc_a   (unforced)
///  watch is outside the cycle: its own result is Ok, holding what it saw
/// ```
#[test]
fn caller_outside_the_cycle_sees_its_result() {
    for recover in [[false; 3], [true; 3]] {
        let results = for_each_config(move |mode, threads| {
            let engine = Engine::new(runtime(mode, threads), Db::new(2, recover, false));
            (engine.get::<watch>(0), engine.get::<cyc_b>(0))
        });
        let watched = Ok(format!("watched {:?}", ring_expected(2, 0, recover)));
        for (config, (w, b)) in results {
            assert_eq!(w, watched, "[{config}]");
            assert_eq!(b, ring_expected(2, 1, recover), "[{config}]");
        }
    }
}

/// ```text
///  parent(5) (task P)                     child 2 (its own task)
///  ──────────────────                     ──────────────────────
///  par_for_each 0..4:
///    child 0: wait_for(1) ⏳ (forced)      signal(1)
///                                         get(parent(5)): in progress, owned
///                                         by P, P waits for its children →
///                                         cycle [parent(5)], not a deadlock
///  parent(5) → Err(Cycle [parent(5)])  (with recover: its recover value)
/// ```
#[test]
fn par_for_each_child_asks_for_its_parent() {
    let variants = [
        (ChildAsks::Get, false),
        (ChildAsks::Get, true),
        (ChildAsks::TryGet, false),
    ];
    for (child_asks, recovers) in variants {
        let results = for_each_config(move |mode, threads| {
            // Child 0 may block the parent's worker (threads mode), the
            // parent may block another: child 2 needs a third.
            let force = can_wait_concurrently(mode, threads, 3);
            let mut db = Db::new(1, [false; 3], force);
            db.loop_recovers = recovers;
            db.child_asks = child_asks;
            let engine = Engine::new(runtime(mode, threads), db);
            let result = engine.get::<parent>(5);
            let child_saw = engine.db().child_saw.lock().clone();
            (result, child_saw, engine.get::<parent>(5))
        });
        let c = cycle(&[("parent", "5")]);
        let expected = if recovers {
            Ok(format!("parent recovered from {c}"))
        } else {
            Err(QueryError::Cycle(c.clone()))
        };
        for (config, (result, child_saw, later)) in results {
            let what = format!("[{config}] child {child_asks:?}, recover={recovers}");
            assert_eq!(result, expected, "{what}");
            assert_eq!(later, expected, "{what}: later caller");
            if child_asks == ChildAsks::TryGet {
                // The child is on the cycle's path (between the parent's job
                // and its wait), so the engine may unwind the cycle through
                // its `try_get` up to the parent (the cycle's entry) instead
                // of returning: then it saw nothing. What it must never see
                // is a value, or another error.
                let cycle_error = Some(Err(QueryError::Cycle(c.clone())));
                assert!(
                    child_saw.is_none() || child_saw == cycle_error,
                    "{what}: the child saw {child_saw:?}"
                );
            }
        }
    }
}

/// The cycle's report must not depend on which worker closes it, nor on the
/// entry point: run the forced two-cycle 50 times per configuration (fresh
/// engine each time), entered at `cyc_b` first (serial: b → a → b on one
/// stack), and expect the canonical `[cyc_a(0), cyc_b(0)]` every time.
///
/// ```text
///  50 × { worker X: get(cyc_b(0)) ─┐  forced: both started, then each asks
///         worker Y: get(cyc_a(0)) ─┘  the other; either may close the cycle }
///  every run, both: Err(Cycle [cyc_a(0), cyc_b(0)])
/// ```
#[test]
fn two_cycle_result_does_not_depend_on_timing() {
    let results = for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        let force = can_wait_concurrently(mode, threads, 2);
        (0..50)
            .map(|_| {
                let engine = Engine::new(rt.clone(), Db::new(2, [false; 3], force));
                engine.run(|cx| join(|| cx.try_cyc_b(0), || cx.try_cyc_a(0)))
            })
            .collect::<Vec<_>>()
    });
    let c = ring_cycle(2);
    for (config, runs) in results {
        for (b, a) in runs {
            assert_eq!(a, Err(QueryError::Cycle(c.clone())), "[{config}]");
            assert_eq!(b, Err(QueryError::Cycle(c.clone())), "[{config}]");
        }
    }
}

/// Panics: a dependency that fails for its own reason.
#[query]
fn failing(_cx: &Cx<Db>, key: u32) -> String {
    weft_tests::inject_panic(format_args!("failing {key}"))
}

/// `mixed_a(k)` asks for `mixed_b(k)`.
#[query]
fn mixed_a(cx: &Cx<Db>, key: u32) -> String {
    let db = cx.db();
    if db.force {
        db.started[0].set();
        db.started[1].wait();
    }
    cx.mixed_b(key)
}

/// `mixed_b(k)` asks, in one `par_map`, for `failing(k)` (item 0) and for
/// `mixed_a(k)` (item 1, closing the cycle).
#[query]
fn mixed_b(cx: &Cx<Db>, key: u32) -> String {
    let db = cx.db();
    if db.force {
        db.started[1].set();
        db.started[0].wait();
    }
    par_map(&[0, 1], |i, _| {
        if i == 0 {
            cx.failing(key)
        } else {
            cx.mixed_a(key)
        }
    })
    .concat()
}

/// A cycle member that also depends on something that fails for another
/// reason, in the same `par_map` as its cycle edge. The outcome rule
/// (`queries/src/cycle.rs`): `mixed_b`'s `par_map` resumes the failure of
/// its lowest item, `failing(0)`'s panic, exactly as serial mode's in-order
/// run does, so `mixed_b(0)` is that panic, whichever member was entered
/// first and whichever worker closed the cycle; `mixed_a(0)`, whose read of
/// `mixed_b(0)` is its cycle edge, is `Cycle [mixed_a(0), mixed_b(0)]`.
///
/// ```text
///  worker X                            worker Y
///  join: get(mixed_a(0))               get(mixed_b(0))
///    (forced: both started)              par_map: item 0: get(failing(0)) → panics
///    get(mixed_b(0)) ⏳                            item 1: get(mixed_a(0)) → cycle
///  mixed_a(0): Err(Cycle [mixed_a(0), mixed_b(0)])
///  mixed_b(0), failing(0): Err(Panicked failing(0))
/// ```
///
/// Found by `random_dags` (seed 0x2a0e5fee0810466c, 26 nodes: node 4 was
/// `Cycle [9, 10]` with 4 workers instead of `Cycle [4, 5]`).
#[test]
fn cycle_member_whose_other_dependency_fails() {
    weft_tests::quiet_injected_panics();
    let mut mismatches = Vec::new();
    for entry in ["a", "b", "both"] {
        let results = for_each_config(move |mode, threads| {
            let force = entry == "both" && can_wait_concurrently(mode, threads, 2);
            let engine = Engine::new(runtime(mode, threads), Db::new(2, [false; 3], force));
            let (a, b) = match entry {
                "a" => {
                    let a = engine.get::<mixed_a>(0);
                    (a, engine.get::<mixed_b>(0))
                }
                "b" => {
                    let b = engine.get::<mixed_b>(0);
                    (engine.get::<mixed_a>(0), b)
                }
                _ => engine.run(|cx| join(|| cx.try_mixed_a(0), || cx.try_mixed_b(0))),
            };
            (a, b, engine.get::<failing>(0))
        });
        let c = Err(QueryError::Cycle(cycle(&[
            ("mixed_a", "0"),
            ("mixed_b", "0"),
        ])));
        let mut wrong = Vec::new();
        for (config, (a, b, failing)) in results {
            if a != c || b != failing {
                wrong.push(format!("[{config}] mixed_a: {a:?}\n    mixed_b: {b:?}"));
            }
            assert!(
                matches!(
                    failing,
                    Err(QueryError::Panicked {
                        query: "failing",
                        ..
                    })
                ),
                "[{config}] entered at {entry}: failing: {failing:?}"
            );
        }
        mismatches.extend(
            wrong
                .into_iter()
                .map(|w| format!("entered at {entry}: {w}")),
        );
    }
    assert!(
        mismatches.is_empty(),
        "expected mixed_a to be {c:?} and mixed_b failing(0)'s panic, got:\n{}",
        mismatches.join("\n"),
        c = cycle(&[("mixed_a", "0"), ("mixed_b", "0")]),
    );
}
