//! The wait-at-depth scenario of the `cycles` bench (issue 10), shared by
//! `benches/cycles.rs` (time per wait) and `examples/wait_depth.rs`
//! (instructions per wait, under callgrind).
//!
//! On fibers with 1 worker, a query at the top of a chain of `depth` nested
//! queries waits `iters` times for a query in progress on a suspended
//! fiber: each time it releases owner `i`, reads it (a wait: the owner's
//! fiber is runnable but has not run), and the worker runs the owner, which
//! finishes and wakes the top. One worker makes every wait the same
//! schedule, so the cost per wait is comparable across depths.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_queries::{query, Cx, Engine};
use weft_runtime::{scope, Latch, Runtime};

/// Owners per batch: the chain's top spawns this many owner tasks at once
/// (each a parked fiber), then waits on each in turn.
const BATCH: usize = 2_000;

/// The scenario's data.
pub struct WaitDb {
    depth: u32,
    /// Waits to time.
    iters: usize,
    /// Nanoseconds spent in the timed reads.
    elapsed_ns: AtomicU64,
    /// The batch being run (set by the chain's top before it spawns).
    batch: Mutex<Option<Arc<Batch>>>,
}

/// One batch's latches: owner `i` waits for `release[i]`; the last owner
/// to start sets `all_started`.
pub struct Batch {
    release: Vec<Latch>,
    started: AtomicUsize,
    all_started: Latch,
}

/// `owner(batch, i)`: in progress until the chain's top releases it.
#[query]
pub fn owner(cx: &Cx<WaitDb>, _batch: usize, i: usize) -> usize {
    let batch = cx.db().batch.lock().unwrap().clone().expect("a batch");
    if batch.started.fetch_add(1, Ordering::AcqRel) + 1 == batch.release.len() {
        batch.all_started.set();
    }
    batch.release[i].wait();
    i
}

/// `chain(d)`: reads `chain(d - 1)`; `chain(0)` runs the timed waits.
#[query]
pub fn chain(cx: &Cx<WaitDb>, d: u32) -> usize {
    if d > 0 {
        return cx.chain(d - 1);
    }
    let db = cx.db();
    let mut left = db.iters;
    let mut round = 0;
    let mut sum = 0;
    while left > 0 {
        let n = left.min(BATCH);
        left -= n;
        round += 1;
        let batch = Arc::new(Batch {
            release: (0..n).map(|_| Latch::new()).collect(),
            started: AtomicUsize::new(0),
            all_started: Latch::new(),
        });
        *db.batch.lock().unwrap() = Some(batch.clone());
        scope(|s| {
            for i in 0..n {
                s.spawn(move |_| {
                    cx.owner(round, i);
                });
            }
            batch.all_started.wait();
            let start = Instant::now();
            for i in 0..n {
                batch.release[i].set();
                sum += cx.owner(round, i);
            }
            let ns = start.elapsed().as_nanos() as u64;
            db.elapsed_ns.fetch_add(ns, Ordering::Relaxed);
        });
    }
    sum
}

/// Runs `iters` waits at the top of a chain of `depth` queries on `rt`
/// (fibers, 1 worker); returns the time spent in the waits (the chain's
/// construction excluded).
pub fn waits_at_depth(rt: &Runtime, depth: u32, iters: usize) -> Duration {
    let engine = Engine::new(
        rt.clone(),
        WaitDb {
            depth,
            iters,
            elapsed_ns: AtomicU64::new(0),
            batch: Mutex::new(None),
        },
    );
    let top = engine.db().depth;
    engine.get::<chain>(top).expect("chain");
    Duration::from_nanos(engine.db().elapsed_ns.load(Ordering::Relaxed))
}
