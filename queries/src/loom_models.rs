//! Loom models of the wait-for graph (`wait_graph.rs`): the real
//! `publish`, search, verification and `withdraw`, with the records' mutexes
//! and the jobs' and waiters' flags routed through `weft_runtime::sync`;
//! and of the memo tables (`memo.rs`): the real claim, publish and
//! lock-free read, dense and hashed, an index growing under a reader, with
//! the entries' cells checked for data races (`sync::UnsafeCell`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p weft-queries --lib loom`.
//! Each model thread stands for one strand; it names its runtime strand id
//! and current job explicitly (`Job::start_on`, `publish(rid, ..)`), since
//! the runtime's thread-locals are not modelled. Loom runs every
//! interleaving (bounded by its preemption limit) and fails on a failed
//! assertion or on a thread that never finishes (a search that retries
//! forever).

use std::sync::Arc;

use loom::thread;

use crate::job::{Job, JobKey};
use crate::memo::{Claim, Entry, Memo, MemoTable};
use crate::wait_graph::{publish, Published, Wait};
use weft_runtime::sync::{AtomicUsize, Ordering};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn job(rid: u64, parent: Option<&Arc<Job>>, name: &'static str) -> Arc<Job> {
    Job::start_on(rid, parent.cloned(), name, JobKey::None)
}

/// Publishes `leaf`'s wait for `owner` on strand `rid`: `Ok(wait)` when it
/// waits (the edge stays published while the caller holds `wait`, as for a
/// waiting strand), `Err(())` when the search found a cycle.
fn wait_for(rid: u64, leaf: &Arc<Job>, owner: &Arc<Job>) -> Result<Wait, ()> {
    match publish(rid, leaf, owner) {
        Published::Cycle(_) => Err(()),
        Published::Waiting(w) => Ok(w),
    }
}

/// No missed cycle: `a` (strand 1) and `b` (strand 2) wait for each other
/// at the same time; at least one of the two searches finds the cycle.
#[test]
fn loom_two_waits_close_a_cycle() {
    model(|| {
        let a = job(1, None, "a");
        let b = job(2, None, "b");
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || wait_for(2, &b2, &a2));
        let mine = wait_for(1, &a, &b);
        let theirs = t.join().unwrap();
        assert!(
            mine.is_err() || theirs.is_err(),
            "the cycle a -> b -> a was missed"
        );
    });
}

/// No missed cycle through a parallel child: code forked from `p` (no job
/// of its own, strand 2) waits for `q` (strand 3), while `q` waits for `p`.
/// The child's wait sits on a temporary record registered under `p`'s: the
/// search from `p` finds it.
#[test]
fn loom_cycle_through_a_parallel_child() {
    model(|| {
        let p = job(1, None, "p");
        let q = job(3, None, "q");
        let (p2, q2) = (p.clone(), q.clone());
        let t = thread::spawn(move || wait_for(2, &p2, &q2));
        let mine = wait_for(3, &q, &p);
        let theirs = t.join().unwrap();
        assert!(
            mine.is_err() || theirs.is_err(),
            "the cycle p -> (child) -> q -> p was missed"
        );
    });
}

/// No false cycle: `a` waits for `b` while `b` finishes and a later job
/// `b2`, at `b`'s place (the same record, the same depth), waits for `a`.
/// `a` waits for a finished job, so there is no cycle: neither search may
/// report one.
#[test]
fn loom_no_false_cycle_through_a_finished_job() {
    model(|| {
        let root = job(2, None, "root");
        let a = job(1, None, "a");
        let b = job(2, Some(&root), "b");
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            b2.finish();
            let later = job(2, Some(&root), "b2");
            assert_eq!(later.depth, b2.depth, "the same place");
            wait_for(2, &later, &a2)
        });
        let mine = wait_for(1, &a, &b);
        let theirs = t.join().unwrap();
        assert!(
            mine.is_ok() && theirs.is_ok(),
            "a false cycle through a finished job"
        );
    });
}

/// A withdrawn wait is no edge: `a` waits for `b` and withdraws (its wait
/// ended) while `b` publishes its own wait for `a`; afterwards a new wait
/// of `b` for `a` finds no cycle, whatever the order was.
#[test]
fn loom_withdraw_removes_the_edge() {
    model(|| {
        let a = job(1, None, "a");
        let b = job(2, None, "b");
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            if let Ok(w) = wait_for(1, &a2, &b2) {
                assert!(w.end().is_none(), "not on a cycle being broken");
            }
        });
        let mine = wait_for(2, &b, &a);
        t.join().unwrap();
        drop(mine);
        let again = wait_for(2, &b, &a).expect("a cycle through a withdrawn wait");
        assert!(again.end().is_none());
    });
}

/// `key`'s value from `table` as the engine's read does it: a lock-free
/// find, else a claim; the claimant publishes `key * 10` (counting the
/// execution in `runs`), a loser waits for the owner's latch and reads the
/// memo.
fn read(table: &MemoTable<u32, u64>, dense: bool, key: u32, runs: &AtomicUsize) -> u64 {
    let value = |m: &Memo<u64>| *m.result.as_ref().expect("no error in the model");
    let place = MemoTable::<u32, u64>::place(&key, dense.then_some(key as usize));
    if let Some(m) = table.find(place, &key).and_then(Entry::memo) {
        return value(m);
    }
    match table.claim(place, key, "q", |k| Job::start_on(1, None, "q", k)) {
        Claim::Done(m) => value(m),
        Claim::Running(entry, owner) => {
            owner.latch.wait();
            value(
                entry
                    .memo()
                    .expect("the memo is published before the latch is set"),
            )
        }
        Claim::Claimed(guard) => {
            runs.fetch_add(1, Ordering::Relaxed);
            let job = guard.job().id;
            let memo = Memo {
                result: Ok(u64::from(key) * 10),
                job,
                diagnostics: crate::memo::Diagnostics::NONE,
            };
            drop(guard.publish(memo));
            u64::from(key) * 10
        }
    }
}

/// One claim per key, and every reader sees the claimant's memo: two
/// threads read the same key at once, dense and hashed.
#[test]
fn loom_one_claim_per_key_and_every_reader_sees_the_memo() {
    for dense in [true, false] {
        model(move || {
            let table = Arc::new(MemoTable::<u32, u64>::new());
            let runs = Arc::new(AtomicUsize::new(0));
            let (t2, r2) = (table.clone(), runs.clone());
            let other = thread::spawn(move || read(&t2, dense, 5, &r2));
            let mine = read(&table, dense, 5, &runs);
            assert_eq!(mine, 50);
            assert_eq!(other.join().unwrap(), 50);
            assert_eq!(
                runs.load(Ordering::Relaxed),
                1,
                "one execution (dense: {dense})"
            );
        });
    }
}

/// A reader racing an index growth (the second key of a shard grows it
/// under loom) still finds a published key, or claims and finds it done:
/// never a second execution.
#[test]
fn loom_a_read_racing_an_index_growth_finds_the_key() {
    model(|| {
        let table = Arc::new(MemoTable::<u32, u64>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(read(&table, false, 1, &runs), 10);
        let (t2, r2) = (table.clone(), runs.clone());
        let grower = thread::spawn(move || read(&t2, false, 2, &r2));
        assert_eq!(read(&table, false, 1, &runs), 10);
        assert_eq!(grower.join().unwrap(), 20);
        assert_eq!(runs.load(Ordering::Relaxed), 2, "each key executed once");
        assert_eq!(read(&table, false, 1, &runs), 10);
        assert_eq!(read(&table, false, 2, &runs), 20);
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    });
}

/// A dense bucket installed by two threads at once: one install wins, the
/// other's bucket is freed, and both keys (in the same bucket) are kept.
#[test]
fn loom_two_threads_make_the_same_dense_bucket() {
    model(|| {
        let table = Arc::new(MemoTable::<u32, u64>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let (t2, r2) = (table.clone(), runs.clone());
        // Indices 2 and 3 share bucket 1 under loom (2 entries from 2).
        let other = thread::spawn(move || read(&t2, true, 3, &r2));
        assert_eq!(read(&table, true, 2, &runs), 20);
        assert_eq!(other.join().unwrap(), 30);
        assert_eq!(read(&table, true, 2, &runs), 20);
        assert_eq!(read(&table, true, 3, &runs), 30);
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    });
}
