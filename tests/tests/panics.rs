//! Acceptance test 4 of issue 2: a provider that panics while others wait on
//! it. Every waiter and every later caller gets `QueryError::Panicked` naming
//! the query and the key; nothing hangs; the provider runs once (its slot is
//! poisoned, not retried); and the engine and runtime stay usable.
//!
//! Runs in every mode at 1, 2 and 4 workers (serial: 1).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use weft_queries::{query, Cx, Engine, QueryError};
use weft_runtime::{par_for_each, par_map, Mode};
use weft_tests::{
    concurrent_items, for_each_config, inject_panic, panic_message, quiet_injected_panics, runtime,
    Arrivals,
};

const WAITERS: usize = 8;

struct Db {
    boom_executions: AtomicUsize,
    /// Requesters that reached their `get`; `boom` panics once `target` have.
    arrivals: Arrivals,
}

fn db(target: usize) -> Db {
    Db {
        boom_executions: AtomicUsize::new(0),
        arrivals: Arrivals::new(target),
    }
}

/// Panics after enough requesters are waiting on it.
#[query]
fn boom(cx: &Cx<Db>, key: u32) -> u32 {
    cx.db().boom_executions.fetch_add(1, Ordering::SeqCst);
    cx.db().arrivals.wait_all();
    inject_panic(format_args!("boom {key}"))
}

/// Asks for `boom(1)` with `get`, so the error unwinds through it.
#[query]
fn outer(cx: &Cx<Db>, key: u32) -> u32 {
    cx.boom(1) + key
}

/// Asks for `outer` with `get`: two levels above the panic.
#[query]
fn top(cx: &Cx<Db>, key: u32) -> u32 {
    cx.outer(key) + 1
}

/// A query that works, to show the engine is still usable.
#[query]
fn fine(_cx: &Cx<Db>, key: u32) -> u32 {
    key + 100
}

/// A query whose `par_for_each` has panicking items 2 and 5.
#[query]
fn fan(_cx: &Cx<Db>, _key: u32) -> u32 {
    let ran = AtomicUsize::new(0);
    let items: Vec<u32> = (0..8).collect();
    par_for_each(&items, |i, _| {
        ran.fetch_add(1, Ordering::SeqCst);
        if i == 2 || i == 5 {
            inject_panic(format_args!("item {i}"));
        }
    });
    ran.into_inner() as u32
}

/// Checks `result` is the panic of `boom(1)`.
#[track_caller]
fn assert_boom_1<T: std::fmt::Debug>(result: &Result<T, QueryError>) {
    match result {
        Err(QueryError::Panicked {
            query,
            key,
            message,
        }) => {
            assert_eq!(*query, "boom");
            assert_eq!(key, "1");
            assert!(message.contains("boom 1"), "message: {message:?}");
        }
        other => panic!("expected boom(1) to have panicked, got {other:?}"),
    }
}

/// ```text
///  par_map item 0..8 (half ask boom(1) directly with try_get,
///                     half through outer(i), which uses get)
///
///  first to claim boom(1)            the others
///  ──────────────────────            ──────────
///  arrive(); compute boom(1)         arrive(); get → in progress: wait
///    wait until `target` arrived
///    panic!("boom 1") → Poisoned ──▶ woken: Err(Panicked boom(1))
///                                    outer(i): get unwinds → outer(i) is
///                                    Err(Panicked boom(1)) too
///  later: engine.get::<boom>(1)  → Err(Panicked boom(1)), no re-execution
///         engine.get::<top>(9)   → Err(Panicked boom(1)) through two levels
///         engine.get::<fine>(2)  → Ok(102); a fresh engine on the runtime works
/// ```
#[test]
fn panic_reaches_every_waiter_and_later_caller() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        let target = concurrent_items(mode, threads, WAITERS);
        let rt = runtime(mode, threads);
        let engine = Engine::new(rt.clone(), db(target));
        let items: Vec<u32> = (0..WAITERS as u32).collect();
        let results = engine.run(|cx| {
            par_map(&items, |i, _| {
                cx.db().arrivals.arrive();
                if i % 2 == 0 {
                    cx.try_boom(1)
                } else {
                    cx.try_outer(i as u32)
                }
            })
        });
        for r in &results {
            assert_boom_1(r);
        }
        assert_eq!(engine.db().boom_executions.load(Ordering::SeqCst), 1);

        // Later callers, top level and inside queries.
        assert_boom_1(&engine.get::<boom>(1));
        assert_boom_1(&engine.get::<outer>(100));
        assert_boom_1(&engine.get::<top>(9));
        assert_boom_1(&engine.run(|cx| cx.try_boom(1)));
        assert_eq!(engine.db().boom_executions.load(Ordering::SeqCst), 1);

        // Still usable: the same engine, the same runtime, a fresh engine.
        assert_eq!(engine.get::<fine>(2), Ok(102));
        let doubled = rt.block_on(|| par_map(&[1, 2, 3], |_, x| x * 2));
        assert_eq!(doubled, vec![2, 4, 6]);
        let fresh = Engine::new(rt, db(0));
        assert_eq!(fresh.get::<fine>(3), Ok(103));
        if mode == Mode::Serial {
            assert_eq!(engine.runtime().num_threads(), 1);
        }
    });
}

/// A panic inside a query's `par_for_each`: all items run, the lowest
/// panicking index is rethrown, and the query's error carries its message.
///
/// ```text
///  fan(0): par_for_each 0..8   item 2 panics, item 5 panics, all 8 run
///          → rethrows "item 2" → Err(Panicked { fan, "0", "...item 2" })
/// ```
#[test]
fn panic_in_par_for_each_inside_a_query() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        let engine = Engine::new(runtime(mode, threads), db(0));
        match engine.get::<fan>(0) {
            Err(QueryError::Panicked {
                query,
                key,
                message,
            }) => {
                assert_eq!((query, key.as_str()), ("fan", "0"));
                assert!(message.contains("item 2"), "message: {message:?}");
            }
            other => panic!("expected fan(0) to panic, got {other:?}"),
        }
        // A second ask does not run the items again: the slot is poisoned.
        assert!(matches!(
            engine.get::<fan>(0),
            Err(QueryError::Panicked { .. })
        ));
        assert_eq!(engine.get::<fine>(1), Ok(101));
    });
}

/// A panic in a `block_on` closure reaches its caller; the runtime keeps
/// working afterwards (no worker lost, no poisoned state).
///
/// ```text
///  caller ── block_on(|| panic!) ──▶ worker: panics ──▶ caller: resumed panic
///  caller ── block_on(par_map)  ──▶ workers ──────────▶ caller: [2, 4, 6]
/// ```
#[test]
fn runtime_survives_a_panicking_block_on() {
    quiet_injected_panics();
    for_each_config(|mode, threads| {
        let rt = runtime(mode, threads);
        for round in 0..3 {
            let caught = panic::catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(|| -> u32 { inject_panic(format_args!("round {round}")) })
            }));
            let payload = caught.expect_err("block_on must resume the panic");
            assert!(panic_message(&*payload).contains(&format!("round {round}")));
            let items: Vec<u32> = (0..64).collect();
            let sum: u32 = rt
                .block_on(|| par_map(&items, |_, x| x * 2))
                .into_iter()
                .sum();
            assert_eq!(sum, 64 * 63);
        }
    });
}
