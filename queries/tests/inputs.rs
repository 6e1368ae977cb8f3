//! Inputs: set from outside, read by queries like queries, in every mode;
//! a second set is refused; a missing input is the same error everywhere.

mod common;

use std::sync::Arc;

use weft_queries::{query, Cx, Engine, Input, InputError, QueryError};
use weft_runtime::{par_map, Mode, Runtime};

/// File texts by file id (dense).
struct Text;
impl Input for Text {
    type Key = u32;
    type Value = Arc<str>;
    const NAME: &'static str = "text";
    fn dense_index(file: &u32) -> Option<usize> {
        Some(*file as usize)
    }
}

/// Settings by name (hashed).
struct Setting;
impl Input for Setting {
    type Key = String;
    type Value = u64;
    const NAME: &'static str = "setting";
}

/// The words of a file, times the `weight` setting.
#[query(dense)]
fn weighted_words(cx: &Cx<()>, file: u32) -> u64 {
    let words = cx.input::<Text>(&file).split_whitespace().count() as u64;
    words * cx.input::<Setting>(&"weight".to_owned())
}

/// All files' weighted words, read in parallel; missing files count 0.
#[query]
fn total(cx: &Cx<()>, files: u32) -> u64 {
    let ids: Vec<u32> = (0..files).collect();
    par_map(&ids, |_, &f| cx.try_weighted_words(f).unwrap_or(0))
        .iter()
        .sum()
}

#[test]
fn queries_read_inputs_the_same_in_every_mode() {
    for rt in common::runtimes() {
        let label = format!("{} -j{}", rt.mode(), rt.num_threads());
        let engine = Engine::new(rt, ());
        // Files 0..100 but 37, which is never set.
        for f in (0..100u32).filter(|&f| f != 37) {
            let text: Arc<str> = "w ".repeat(f as usize % 7 + 1).into();
            engine.set_input::<Text>(f, text).unwrap();
        }
        engine.set_input::<Setting>("weight".into(), 3).unwrap();
        let expected: u64 = (0..100u64)
            .filter(|&f| f != 37)
            .map(|f| (f % 7 + 1) * 3)
            .sum();
        assert_eq!(engine.get::<total>(100), Ok(expected), "{label}");
        assert_eq!(
            engine.get::<weighted_words>(37),
            Err(QueryError::MissingInput {
                input: "text",
                key: "37".into()
            }),
            "{label}: a missing input is the reading query's error"
        );
        assert_eq!(engine.input::<Setting>(&"weight".into()), Ok(3), "{label}");
        assert_eq!(
            engine.set_input::<Setting>("weight".into(), 4),
            Err(InputError::AlreadySet {
                input: "setting",
                key: "\"weight\"".into()
            }),
            "{label}: a second set is refused"
        );
        assert_eq!(
            engine.input::<Setting>(&"weight".into()),
            Ok(3),
            "{label}: the old value stays"
        );
        // A missing input can still be set (a query that read it missing
        // keeps its error: without revisions nothing recomputes it).
        engine.set_input::<Text>(37, "a b".into()).unwrap();
        assert_eq!(engine.input::<Text>(&37).as_deref(), Ok("a b"), "{label}");
        let names: Vec<&str> = engine.memory().iter().map(|m| m.query).collect();
        assert!(
            names.contains(&"text") && names.contains(&"setting"),
            "{label}: {names:?}"
        );
    }
}

#[test]
fn racing_sets_of_one_key_store_exactly_one() {
    let engine = Engine::new(Runtime::builder().mode(Mode::Serial).build().unwrap(), ());
    for round in 0..50u32 {
        let hashed = successes(4, |t| {
            engine
                .set_input::<Setting>(format!("k{round}"), t as u64)
                .is_ok()
        });
        assert_eq!(hashed, 1, "round {round}: one set wins");
        let dense = successes(4, |t| {
            engine
                .set_input::<Text>(10_000 + round, format!("{t}").into())
                .is_ok()
        });
        assert_eq!(dense, 1, "round {round}: one dense set wins");
    }
}

/// Runs `attempt(0..threads)` on that many threads at once; how many of
/// them returned `true`.
fn successes(threads: usize, attempt: impl Fn(usize) -> bool + Sync) -> usize {
    std::thread::scope(|s| {
        let attempt = &attempt;
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || attempt(t))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count()
    })
}
