//! Acceptance test 1 of issue 2: a key that many tasks request at once is
//! computed exactly once; every requester gets the one value.
//!
//! Each provider counts its executions in an `AtomicUsize` in the `Db`.
//! Runs in every mode at 1, 2 and 4 workers (serial: 1).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use weft_queries::{query, Cx, Engine};
use weft_runtime::{par_for_each, par_map, Mode};
use weft_tests::{concurrent_items, for_configs, for_each_config, runtime, Arrivals, Config};

/// Requesters of the shared key in [`same_key_requested_by_many_tasks`].
const REQUESTERS: usize = 32;

struct Db {
    executions: AtomicUsize,
    /// Requesters that reached their `get`; the provider waits for `target`.
    arrivals: Arrivals,
}

/// The shared query: holds its slot in progress until enough requesters
/// have arrived, so they find it running and have to wait for it.
#[query]
fn slow(cx: &Cx<Db>, key: u32) -> Arc<String> {
    cx.db().executions.fetch_add(1, Ordering::SeqCst);
    cx.db().arrivals.wait_all();
    Arc::new(format!("slow value {key}"))
}

/// ```text
///  par_for_each item i (each its own task, 32 of them)
///
///  item a (first to claim)         item b, c, ... (the others)
///  ───────────────────────         ───────────────────────────
///  arrive()                        arrive()
///  get(slow(7)) → Claimed          get(slow(7)) → InProgress: wait
///    compute: executions += 1        (fiber suspends / thread blocks)
///    wait until `target` arrived   ...
///    publish "slow value 7" ──────▶ woken: same value
/// ```
///
/// `target` is how many requesters surely reach their `get` while the
/// provider waits: all 32 with fibers (waiting fibers free their workers),
/// `threads - 1` in threads mode (each waiter blocks a worker), 1 in serial
/// mode (the first item computes, the rest are hits).
#[test]
fn same_key_requested_by_many_tasks() {
    for_each_config(|mode, threads| {
        let target = concurrent_items(mode, threads, REQUESTERS);
        let db = Db {
            executions: AtomicUsize::new(0),
            arrivals: Arrivals::new(target),
        };
        let engine = Engine::new(runtime(mode, threads), db);
        let values = engine.run(|cx| {
            let items: Vec<usize> = (0..REQUESTERS).collect();
            par_map(&items, |_, _| {
                cx.db().arrivals.arrive();
                cx.slow(7)
            })
        });
        assert_eq!(engine.db().executions.load(Ordering::SeqCst), 1);
        assert_eq!(values.len(), REQUESTERS);
        for v in &values {
            assert_eq!(v.as_str(), "slow value 7");
        }
        // All requesters got the *same* memoized value, not equal copies.
        assert!(values.iter().all(|v| Arc::ptr_eq(v, &values[0])));
        assert!(engine.db().arrivals.count() == REQUESTERS);
        // A later top-level request is a hit.
        let again = engine.get::<slow>(7).expect("slow(7) succeeded");
        assert!(Arc::ptr_eq(&again, &values[0]));
        assert_eq!(engine.db().executions.load(Ordering::SeqCst), 1);
    });
}

struct ManyDb {
    executions: Vec<AtomicUsize>,
}

/// A cheap query with one execution counter per key.
#[query]
fn square(cx: &Cx<ManyDb>, key: usize) -> usize {
    cx.db().executions[key].fetch_add(1, Ordering::SeqCst);
    key * key
}

/// A query over several `square`s, fetched in parallel: the same keys are
/// asked for by many `sum`s at once.
#[query]
fn sum(cx: &Cx<ManyDb>, key: usize) -> usize {
    let parts: Vec<usize> = (0..8).map(|i| (key + i) % KEYS).collect();
    par_map(&parts, |_, &k| cx.square(k)).into_iter().sum()
}

const KEYS: usize = 16;

/// Stampede, unforced: 256 tasks, each asks for one of 16 `sum`s, each `sum`
/// for 8 of 16 `square`s in parallel.
///
/// ```text
///  task 0: sum(0) ─┬ square(0) ... square(7)
///  task 1: sum(1) ─┼ square(1) ... square(8)      many tasks hit each
///  ...             │                              square while it runs
///  task 255: sum(15) square(15) square(0) ... square(6)
/// ```
///
/// Every `square` and every `sum` executes exactly once.
#[test]
fn stampede_of_overlapping_keys() {
    for_each_config(|mode, threads| {
        let db = ManyDb {
            executions: (0..KEYS).map(|_| AtomicUsize::new(0)).collect(),
        };
        let engine = Engine::new(runtime(mode, threads), db);
        let tasks: Vec<usize> = (0..256).collect();
        let sums = engine.run(|cx| par_map(&tasks, |_, &t| cx.sum(t % KEYS)));
        for (t, sum) in sums.iter().enumerate() {
            let expected: usize = (0..8).map(|i| ((t % KEYS + i) % KEYS).pow(2)).sum();
            assert_eq!(*sum, expected, "sum of task {t}");
        }
        for (k, n) in engine.db().executions.iter().enumerate() {
            assert_eq!(n.load(Ordering::SeqCst), 1, "executions of square({k})");
        }
    });
}

/// Several OS threads outside the runtime call `Engine::get` for the same key
/// at once (each call is its own `block_on`). Threads and fibers modes only:
/// serial mode runs each `block_on` inline on its caller, and a serial engine
/// shared by concurrent callers is not a supported setup.
///
/// ```text
///  OS thread 0..4: engine.get::<slow>(3) ─▶ block_on ─▶ worker: get(slow(3))
///  provider: waits until `target` tasks arrived, then publishes once
/// ```
#[test]
fn same_key_from_several_block_on_callers() {
    let list = weft_tests::configs()
        .into_iter()
        .filter(|c| c.mode != Mode::Serial)
        .collect::<Vec<Config>>();
    for_configs(list, |mode, threads| {
        const CALLERS: usize = 4;
        // A block_on task that waits blocks its worker in threads mode.
        let target = concurrent_items(mode, threads, CALLERS);
        let db = Db {
            executions: AtomicUsize::new(0),
            arrivals: Arrivals::new(target),
        };
        let engine = Engine::new(runtime(mode, threads), db);
        let values: Vec<Arc<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..CALLERS)
                .map(|_| {
                    s.spawn(|| {
                        engine.run(|cx| {
                            cx.db().arrivals.arrive();
                            cx.slow(3)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(engine.db().executions.load(Ordering::SeqCst), 1);
        assert!(values.iter().all(|v| v.as_str() == "slow value 3"));
    });
}

/// `par_for_each` requesters (not `par_map`) on a key that is already done:
/// pure hits, no execution.
///
/// ```text
///  top level: get(square(5)) → executes once → 25
///  par_for_each 0..100 (any worker): get(square(5)) → Hit → 25
///  executions of square(5) == 1
/// ```
#[test]
fn hits_do_not_execute_again() {
    for_each_config(|mode, threads| {
        let db = ManyDb {
            executions: (0..KEYS).map(|_| AtomicUsize::new(0)).collect(),
        };
        let engine = Engine::new(runtime(mode, threads), db);
        assert_eq!(engine.get::<square>(5), Ok(25));
        let items: Vec<usize> = (0..100).collect();
        engine.run(|cx| par_for_each(&items, |_, _| assert_eq!(cx.square(5), 25)));
        assert_eq!(engine.db().executions[5].load(Ordering::SeqCst), 1);
    });
}
