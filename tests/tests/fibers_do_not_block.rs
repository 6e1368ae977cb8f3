//! Acceptance test 3 of issue 2: in fibers mode a task that waits does not
//! block its worker.
//!
//! Three tasks: A computes query `Q`, which waits (runtime-aware,
//! [`weft_runtime::Latch::wait`]) for a signal `go`; B asks for `Q` while it
//! is in progress and has to wait; C raises `go` — but only after B has
//! asked. So C can run only while A and B are both waiting:
//!
//! - fibers mode: A's and B's fibers suspend and free their workers, so C
//!   runs even with 1 or 2 workers (with 1 worker the whole order is forced:
//!   B's `get` runs before C can start);
//! - threads mode: A and B each block a thread, and so would the task that
//!   forks them; C needs a third worker. With 2 workers threads mode
//!   deadlocks *by design* (it is what rustc's parallel front end does), so
//!   that configuration is not run; [`threads_mode_needs_a_third_worker`]
//!   runs the same program with 3 and 4 workers, where it passes;
//! - serial mode: A would wait for C, which runs after A: not run.
//!
//! The latches force the order; the one step they cannot force with two or
//! more workers — that B's `get` finds `Q` still in progress — is made
//! practically certain by C pausing 20 ms before it raises `go` (the result
//! does not depend on it: if B ever found `Q` done, the log would still
//! match; the fibers run at 1 worker forces it).

use std::time::Duration;

use parking_lot::Mutex;
use weft_queries::{query, Cx, Engine};
use weft_runtime::{current_worker_index, join, Latch, Mode};
use weft_tests::{configs, for_configs, runtime, Config};

struct Db {
    /// Set by `Q` once it is in progress.
    q_started: Latch,
    /// Set by B right before it asks for `Q`.
    b_asking: Latch,
    /// Raised by C; `Q` waits for it.
    go: Latch,
    log: Mutex<Vec<&'static str>>,
}

impl Db {
    fn new() -> Self {
        Db {
            q_started: Latch::new(),
            b_asking: Latch::new(),
            go: Latch::new(),
            log: Mutex::new(Vec::new()),
        }
    }

    fn log(&self, event: &'static str) {
        self.log.lock().push(event);
    }
}

/// The slow query: in progress until C raises `go`.
#[query]
fn q(cx: &Cx<Db>) -> u32 {
    let db = cx.db();
    db.log("Q starts");
    db.q_started.set();
    db.go.wait();
    db.log("Q done");
    42
}

const EXPECTED_LOG: [&str; 5] = ["Q starts", "B asks Q", "C raises go", "Q done", "B got Q"];

/// What each task saw.
#[derive(Debug)]
struct Outcome {
    a: u32,
    b: u32,
    /// A's worker before and after its `get` (a fiber is pinned to its worker).
    a_workers: (Option<usize>, Option<usize>),
    log: Vec<&'static str>,
}

/// ```text
///  worker 0                          worker 1 (or worker 0 once free)
///  ────────                          ────────
///  join(A, join(B, C)); runs A:
///  A: get(Q) → compute Q
///     q_started.set()
///     go.wait()  → A suspends ─────▶ B: q_started.wait(); b_asking.set()
///                                    B: get(Q) → in progress → B suspends
///                                    C (on a free worker): b_asking.wait()
///                                       go.set()
///  A resumes (pinned, worker 0):
///     Q done → 42 ─────────────────▶ B resumes → 42
/// ```
fn scenario(mode: Mode, threads: usize) -> Outcome {
    let engine = Engine::new(runtime(mode, threads), Db::new());
    let ((a, a_workers), (b, ())) = engine.run(|cx| {
        join(
            || {
                let before = current_worker_index();
                let v = cx.q();
                (v, (before, current_worker_index()))
            },
            || {
                join(
                    || {
                        let db = cx.db();
                        db.q_started.wait();
                        db.log("B asks Q");
                        db.b_asking.set();
                        let v = cx.q();
                        db.log("B got Q");
                        v
                    },
                    || {
                        let db = cx.db();
                        db.b_asking.wait();
                        std::thread::sleep(Duration::from_millis(20));
                        db.log("C raises go");
                        db.go.set();
                    },
                )
            },
        )
    });
    let log = engine.db().log.lock().clone();
    Outcome {
        a,
        b,
        a_workers,
        log,
    }
}

fn check(outcome: &Outcome) {
    assert_eq!((outcome.a, outcome.b), (42, 42), "{outcome:?}");
    assert_eq!(outcome.log, EXPECTED_LOG, "{outcome:?}");
}

/// Fibers mode at 1, 2 and 4 workers: C runs while A and B wait.
#[test]
fn fibers_mode_runs_other_work_while_tasks_wait() {
    let list: Vec<Config> = configs()
        .into_iter()
        .filter(|c| c.mode == Mode::Fibers)
        .collect();
    assert!(
        !list.is_empty() || !cfg!(feature = "fibers"),
        "fibers configs missing"
    );
    for_configs(list, |mode, threads| {
        let outcome = scenario(mode, threads);
        check(&outcome);
        // A suspended in the middle of `get` and resumed on its own worker.
        let (before, after) = outcome.a_workers;
        assert!(before.is_some(), "{outcome:?}");
        assert_eq!(before, after, "A's fiber migrated: {outcome:?}");
    });
}

/// Threads mode: the same program needs a third worker (see the module doc).
///
/// ```text
///  worker 0            worker 1              worker 2
///  A: get(Q)           B: get(Q)             C: go.set()
///    go.wait() ■       blocked on Q ■        (would have no worker with 2)
///    ◀───────────────────────────────────── go
///  Q done → 42 ──────▶ B → 42
/// ```
#[test]
fn threads_mode_needs_a_third_worker() {
    let list = [3, 4].map(|threads| Config {
        mode: Mode::Threads,
        threads,
    });
    for_configs(list, |mode, threads| check(&scenario(mode, threads)));
}
