//! Loom models of the wait-for graph (`wait_graph.rs`): the real
//! `publish`, search, verification and `withdraw`, with the records' mutexes
//! and the jobs' and waiters' flags routed through `weft_runtime::sync`.
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
use crate::wait_graph::{publish, Published, Wait};

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
