//! Memo storage: dense and hashed tables give the same results, errors and
//! cycle reports in every mode and thread count; keys a dense table cannot
//! hold fall back to hashing; `Engine::memory` counts what is stored.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use weft_queries::{Cx, Engine, Query, QueryError};
use weft_runtime::{par_map, Mode, Runtime};

#[derive(Default)]
struct Db {
    runs: AtomicUsize,
}

/// `Sum<D>(k)`: `k + Sum(k / 2) + Sum(k / 3)` (wrapping), read in
/// parallel, a failed part counting 1 (keys from 16,000,000 are leaves);
/// key 7 panics, and keys 5,003 and
/// 15,009 form a cycle without recovery. `D` picks the storage.
struct Sum<const D: bool>;

impl<const D: bool> Query for Sum<D> {
    type Db = Db;
    type Key = u64;
    type Value = u64;
    const NAME: &'static str = "sum";

    fn compute(cx: &Cx<'_, Db>, &k: &u64) -> u64 {
        cx.db().runs.fetch_add(1, Ordering::SeqCst);
        match k {
            7 => panic!("seven"),
            5_003 => return cx.get::<Sum<D>>(15_009),
            15_009 => return cx.get::<Sum<D>>(5_003),
            0 => return 0,
            // Leaves, so that no key past the dense range reads one in it
            // (a dense table would make a bucket of millions of entries).
            16_000_000.. => return k.rotate_left(7),
            _ => {}
        }
        let parts = par_map(&[k / 2, k / 3], |_, &d| {
            cx.try_get::<Sum<D>>(d).unwrap_or(1)
        });
        parts.iter().fold(k, |a, &b| a.wrapping_add(b))
    }

    fn dense_index(&k: &u64) -> Option<usize> {
        // Every index is offered; the table hashes those it cannot hold.
        D.then_some(k as usize)
    }
}

/// The keys read: bucket edges of the dense table (1,023/1,024, 3,071/
/// 3,072), a large id, indices past the dense range (16,776,192 and up:
/// hashed whatever `dense_index` says), a panic and a cycle.
const KEYS: [u64; 10] = [
    0,
    1_023,
    1_024,
    3_071,
    3_072,
    100_000,
    7 * 2,
    5_003,
    16_776_192,
    u64::MAX,
];

fn results<const D: bool>(rt: &Runtime) -> (Vec<Result<u64, QueryError>>, usize, usize) {
    let engine = Engine::new(rt.clone(), Db::default());
    let out = engine.run(|cx| KEYS.iter().map(|&k| cx.try_get::<Sum<D>>(k)).collect());
    // Every key read again is a hit: no more executions.
    let runs = engine.db().runs.load(Ordering::SeqCst);
    let again: Vec<_> = engine.run(|cx| KEYS.iter().map(|&k| cx.try_get::<Sum<D>>(k)).collect());
    assert_eq!(out, again, "a hit gives the first result");
    assert_eq!(engine.db().runs.load(Ordering::SeqCst), runs);
    let memory = engine.memory();
    assert_eq!(memory.len(), 1, "one query type");
    assert_eq!(memory[0].query, "sum");
    (out, runs, memory[0].memos)
}

#[test]
fn dense_and_hashed_storage_agree_in_every_mode() {
    let reference = results::<false>(&Runtime::builder().mode(Mode::Serial).build().unwrap());
    assert_eq!(reference.1, reference.2, "one memo per execution");
    assert!(
        reference.0[6].is_ok(),
        "key 14 reads 7, which panics: {:?}",
        reference.0[6]
    );
    match &reference.0[7] {
        Err(QueryError::Cycle(c)) => {
            assert_eq!(c.to_string(), "`sum(15009)` -> `sum(5003)` -> `sum(15009)`");
        }
        other => panic!("expected the cycle, got {other:?}"),
    }
    for rt in common::runtimes() {
        let label = format!("{} -j{}", rt.mode(), rt.num_threads());
        for (storage, got) in [
            ("hashed", results::<false>(&rt)),
            ("dense", results::<true>(&rt)),
        ] {
            assert_eq!(got.0, reference.0, "{storage} storage, {label}");
            assert_eq!(got.1, reference.1, "{storage} storage, {label}: executions");
            assert_eq!(got.2, reference.2, "{storage} storage, {label}: memos");
        }
    }
}

#[test]
fn memory_report_counts_bytes_per_memo() {
    let rt = Runtime::builder().mode(Mode::Serial).build().unwrap();
    for dense in [false, true] {
        let engine = Arc::new(Engine::new(rt.clone(), Db::default()));
        let memos = if dense {
            engine.run(|cx| (1..=2_000u64).for_each(|k| _ = cx.try_get::<Sum<true>>(k * 11)));
            engine.memory()
        } else {
            engine.run(|cx| (1..=2_000u64).for_each(|k| _ = cx.try_get::<Sum<false>>(k * 11)));
            engine.memory()
        };
        let m = &memos[0];
        assert_eq!(m.memos, engine.db().runs.load(Ordering::SeqCst));
        assert_eq!((m.key_bytes, m.value_bytes), (8, 8));
        assert!(m.header_bytes > 0 && m.header_bytes < 96, "{m:?}");
        let per = m.bytes_per_memo();
        assert!(per >= (m.header_bytes + 16) as f64, "{m:?}: {per}");
        if !dense {
            assert!(m.index_bytes > 0, "a hashed table has an index: {m:?}");
        }
    }
}
