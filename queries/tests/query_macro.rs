//! `#[query]`: misuse is a compile error with a clear message (`trybuild`
//! compares each `ui/*.rs` case with its `.stderr`), and queries defined
//! with it run the same in every mode as trait-defined ones.
//!
//! After a deliberate change of a message, refresh the expected output
//! with `TRYBUILD=overwrite cargo test -p weft-queries --test query_macro`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use weft_queries::{query, Cx, Cycle, Engine, Query, QueryError};
use weft_runtime::par_map;

#[test]
fn misuse_is_a_clear_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

#[derive(Default)]
struct Db {
    runs: AtomicUsize,
}

/// An alias for the context, as applications write one.
type MyCx<'a> = Cx<'a, Db>;

/// `fib(n)` with its two reads in parallel, through the generated method.
#[query(dense)]
fn fib(cx: &MyCx<'_>, n: u64) -> u64 {
    cx.db().runs.fetch_add(1, Ordering::SeqCst);
    if n < 2 {
        return n;
    }
    let parts = par_map(&[n - 1, n - 2], |_, &k| cx.fib(k));
    parts[0] + parts[1]
}

/// Two keys, one borrowed; a custom name; the free function form.
#[query(name = "weighted")]
fn weighted_sum(cx: &Cx<Db>, label: &String, n: u64) -> Arc<str> {
    let total: u64 = (0..=n).map(|k| fib(cx, k)).sum();
    format!("{label}={total}").into()
}

/// No key at all.
#[query]
fn forty_two(_cx: &Cx<Db>) -> u64 {
    42
}

fn recover_ring(_cx: &Cx<Db>, cycle: &Cycle, i: &u32) -> Option<u64> {
    Some(cycle.frames.len() as u64 * 100 + u64::from(*i))
}

fn describe_ring(_db: &Db, i: &u32) -> String {
    format!("ring #{i}")
}

/// A cycle `ring(0) -> ring(1) -> ring(2) -> ring(0)` that recovers.
#[query(recover = recover_ring, describe = describe_ring)]
fn ring(cx: &Cx<Db>, i: u32) -> u64 {
    cx.ring((i + 1) % 3)
}

/// A cycle without recovery, read with `try_`.
#[query]
fn knot(cx: &Cx<Db>, i: u32) -> u64 {
    match cx.try_knot(1 - i) {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(Box::new(e.to_string())),
    }
}

#[test]
fn macro_queries_give_the_same_results_in_every_mode() {
    assert_eq!(<weighted_sum as Query>::NAME, "weighted");
    assert_eq!(<fib as Query>::dense_index(&7), Some(7));
    assert_eq!(<ring as Query>::describe(&Db::default(), &2), "ring #2");
    for rt in common::runtimes() {
        let label = format!("{} -j{}", rt.mode(), rt.num_threads());
        let engine = Engine::new(rt, Db::default());
        assert_eq!(engine.get::<fib>(50), Ok(12_586_269_025), "{label}");
        assert_eq!(
            engine.db().runs.load(Ordering::SeqCst),
            51,
            "{label}: each key once"
        );
        let s = engine.run(|cx| cx.weighted_sum("fib".to_owned(), 10));
        assert_eq!(&*s, "fib=143", "{label}");
        assert_eq!(engine.get::<forty_two>(()), Ok(42), "{label}");
        assert_eq!(engine.get::<ring>(1), Ok(301), "{label}");
        assert_eq!(engine.get::<ring>(0), Ok(300), "{label}");
        match engine.get::<knot>(0) {
            Err(QueryError::Cycle(c)) => {
                assert_eq!(
                    c.to_string(),
                    "`knot(0)` -> `knot(1)` -> `knot(0)`",
                    "{label}"
                )
            }
            other => panic!("{label}: expected the cycle, got {other:?}"),
        }
    }
}
