//! Acceptance test 2 of issue 2: distinct keys really run at the same time.
//!
//! Each provider waits at an OS-level rendezvous that only the *other*
//! providers can complete: it passes only if the providers are inside
//! `compute` on different worker threads at the same instant. (The wait is
//! deliberately not runtime-aware: a runtime that ran the providers one after
//! the other on one worker, switching fibers, must fail here.) The rendezvous
//! gives up after [`MEET_SECS`], so a failure is a `QueryError::Panicked`
//! with a clear message rather than a hung test.
//!
//! Runs in fibers and threads mode at 2 and 4 workers. Serial mode and one
//! worker are skipped: there, two providers cannot be in progress on two
//! threads at once by construction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use weft_queries::{query, Cx, Engine};
use weft_runtime::{current_worker_index, join, Mode};
use weft_tests::{configs, for_configs, runtime, Config};

/// How long a provider waits for the others at the rendezvous.
const MEET_SECS: u64 = 20;

struct Db {
    /// Providers that reached the rendezvous.
    arrived: AtomicUsize,
    /// How many providers must meet.
    expected: usize,
    /// `(key, worker index)` of each provider, recorded inside `compute`.
    workers: Mutex<Vec<(u32, Option<usize>)>>,
}

/// Waits until every provider has arrived; each provider is a distinct key.
#[query]
fn meet(cx: &Cx<Db>, key: u32) -> u32 {
    let db = cx.db();
    db.workers.lock().push((key, current_worker_index()));
    db.arrived.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(MEET_SECS);
    while db.arrived.load(Ordering::SeqCst) < db.expected {
        assert!(
            Instant::now() < deadline,
            "meet({key}): only {} of {} providers were running at once",
            db.arrived.load(Ordering::SeqCst),
            db.expected
        );
        std::thread::yield_now();
    }
    key * 10
}

fn parallel_configs() -> Vec<Config> {
    configs()
        .into_iter()
        .filter(|c| c.mode != Mode::Serial && c.threads >= 2)
        .collect()
}

fn engine(mode: Mode, threads: usize, expected: usize) -> Engine<Db> {
    let db = Db {
        arrived: AtomicUsize::new(0),
        expected,
        workers: Mutex::new(Vec::new()),
    };
    Engine::new(runtime(mode, threads), db)
}

fn assert_distinct_workers(db: &Db, n: usize, threads: usize) {
    let workers = db.workers.lock();
    assert_eq!(workers.len(), n, "each provider ran once: {workers:?}");
    let mut indices: Vec<usize> = workers
        .iter()
        .map(|&(key, w)| w.unwrap_or_else(|| panic!("meet({key}) ran outside a worker")))
        .collect();
    assert!(indices.iter().all(|&w| w < threads), "{workers:?}");
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), n, "providers shared a worker: {workers:?}");
}

/// ```text
///  worker X                          worker Y
///  ────────                          ────────
///  join: get(meet(0))                (steals) get(meet(1))
///    compute: arrived = 1              compute: arrived = 2
///    spin until arrived == 2 ◀──────▶  spin until arrived == 2
///    → 0                               → 10
/// ```
#[test]
fn two_distinct_keys_run_at_the_same_time() {
    for_configs(parallel_configs(), |mode, threads| {
        let engine = engine(mode, threads, 2);
        let (a, b) = engine.run(|cx| join(|| cx.try_meet(0), || cx.try_meet(1)));
        assert_eq!(a, Ok(0));
        assert_eq!(b, Ok(10));
        assert_distinct_workers(engine.db(), 2, threads);
    });
}

/// Four keys at four workers, through nested `join`s:
///
/// ```text
///  worker W0            W1 (steals)     W2 (steals)          W3 (steals)
///  join(join(M0, M1),   M1              join(M2, M3): M2      M3
///       join(M2, M3))
///  M0 ──────────────────┴─── all four spin until arrived == 4 ──┴──── M3
/// ```
#[test]
fn four_distinct_keys_run_at_the_same_time() {
    let list: Vec<Config> = parallel_configs()
        .into_iter()
        .filter(|c| c.threads >= 4)
        .collect();
    for_configs(list, |mode, threads| {
        let engine = engine(mode, threads, 4);
        let ((a, b), (c, d)) = engine.run(|cx| {
            join(
                || join(|| cx.try_meet(0), || cx.try_meet(1)),
                || join(|| cx.try_meet(2), || cx.try_meet(3)),
            )
        });
        assert_eq!([a, b, c, d], [Ok(0), Ok(10), Ok(20), Ok(30)]);
        assert_distinct_workers(engine.db(), 4, threads);
    });
}
