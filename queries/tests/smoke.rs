//! Smoke tests of the engine in every mode: hits, cycles, panics.

use std::sync::atomic::{AtomicUsize, Ordering};

use weft_queries::{query, Cx, Engine, QueryError};
use weft_runtime::{join, Latch, Mode, Runtime};

#[derive(Default)]
struct Db {
    runs: AtomicUsize,
    a_started: Latch,
    b_started: Latch,
}

#[query]
fn fib(cx: &Cx<Db>, n: u64) -> u64 {
    cx.db().runs.fetch_add(1, Ordering::SeqCst);
    if n < 2 {
        n
    } else {
        let (a, b) = join(|| cx.fib(n - 1), || cx.fib(n - 2));
        a + b
    }
}

#[query(recover = a_recover)]
fn a(cx: &Cx<Db>, k: u32) -> u32 {
    cx.db().a_started.set();
    cx.db().b_started.wait();
    cx.b(k) + 1
}

fn a_recover(_: &Cx<'_, Db>, cycle: &weft_queries::Cycle, _: &u32) -> Option<u32> {
    Some(1000 + cycle.frames.len() as u32)
}

#[query]
fn b(cx: &Cx<Db>, k: u32) -> u32 {
    cx.db().b_started.set();
    cx.db().a_started.wait();
    cx.a(k) + 1
}

#[query]
fn boom(_cx: &Cx<Db>, k: u32) -> u32 {
    panic!("boom {k}")
}

fn runtimes() -> Vec<Runtime> {
    let mut v = vec![];
    for mode in Mode::ALL {
        if mode == Mode::Fibers && !Mode::fibers_available() {
            continue;
        }
        for t in [1, 2, 4] {
            if mode == Mode::Serial && t > 1 {
                continue;
            }
            v.push(Runtime::builder().mode(mode).threads(t).build().unwrap());
        }
    }
    v
}

#[test]
fn fib_runs_each_key_once() {
    for rt in runtimes() {
        let e = Engine::new(rt.clone(), Db::default());
        assert_eq!(e.get::<fib>(60), Ok(1_548_008_755_920), "{rt:?}");
        assert_eq!(e.db().runs.load(Ordering::SeqCst), 61, "{rt:?}");
    }
}

#[test]
fn two_query_cycle_recovers_the_same_everywhere() {
    for rt in runtimes() {
        // Threads mode with one worker cannot run `a` and `b` at once: the
        // barrier would block the only worker.
        if rt.mode() == Mode::Threads && rt.num_threads() < 2 {
            continue;
        }
        let e = Engine::new(rt.clone(), Db::default());
        let serial = rt.mode() == Mode::Serial;
        let (a, b) = e.run(|cx| {
            if serial {
                cx.db().a_started.set();
                cx.db().b_started.set();
            }
            join(|| cx.try_a(1), || cx.try_b(1))
        });
        // `a` recovers with 1002; `b` has no recover: it is a Cycle error.
        assert_eq!(a, Ok(1002), "{rt:?}");
        match b {
            Err(QueryError::Cycle(c)) => {
                assert_eq!(c.to_string(), "`a(1)` -> `b(1)` -> `a(1)`", "{rt:?}")
            }
            other => panic!("{rt:?}: {other:?}"),
        }
    }
}

#[test]
fn panic_reaches_every_caller() {
    for rt in runtimes() {
        let e = Engine::new(rt.clone(), Db::default());
        let items: Vec<u32> = (0..16).collect();
        let rs = e.run(|cx| weft_runtime::par_map(&items, |_, _| cx.try_boom(7)));
        for r in rs {
            assert_eq!(
                r,
                Err(QueryError::Panicked {
                    query: "boom",
                    key: "7".into(),
                    message: "boom 7".into()
                }),
                "{rt:?}"
            );
        }
        assert_eq!(e.get::<fib>(10), Ok(55));
    }
}
