//! Fork-join: [`join`], [`scope`], [`par_for_each`] and [`par_map`].
//!
//! All of them can be called from anywhere: on a worker of a pool they fork
//! work onto the pool; in serial mode and outside any pool they run inline,
//! in program order. Each forked task starts with its spawner's task context
//! (`context.rs`), so the query engine knows a child's parent job.
//!
//! # join
//!
//! `join(a, b)` pushes `b` on the worker's deque as a task, runs `a` inline,
//! then *claims* `b` with a compare-and-swap: if no worker took it, `b` runs
//! inline too (the deque entry is skipped later); otherwise `join` waits on
//! `b`'s latch (the fiber suspends or the thread blocks). It never pops an
//! arbitrary task from the deque: in fibers mode the top of the deque may
//! belong to another fiber on the same worker.
//!
//! # Panics
//!
//! Every forked closure runs under `catch_unwind`. `join` resumes `a`'s
//! panic, else `b`'s, only after both finished. `par_for_each` and `par_map`
//! run every item and then resume the panic of the *lowest item index*, so
//! the outcome does not depend on timing or mode. `scope` resumes the panic
//! of the earliest spawn (in spawn order).

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::latch::{CountLatch, Latch};
use crate::registry::{erase_lifetime, Task, WorkerThread};

type Payload = Box<dyn std::any::Any + Send + 'static>;

/// The forked half of a `join`: claimed once, by the owner or by a worker.
struct JoinJob<B, RB> {
    claimed: AtomicBool,
    func: UnsafeCell<Option<B>>,
    result: UnsafeCell<Option<std::thread::Result<RB>>>,
    latch: Latch,
}

// SAFETY: `func` and `result` are accessed only by the single party that won
// the `claimed` CAS (and `result` by the owner after `latch` is set, which
// orders it after the writer through the latch's Release/Acquire).
unsafe impl<B: Send, RB: Send> Sync for JoinJob<B, RB> {}

impl<B: FnOnce() -> RB, RB> JoinJob<B, RB> {
    fn claim(&self) -> bool {
        // AcqRel: the winner must see `func` as written by the creator.
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// Runs `func`; only the winner of `claim` may call this.
    fn execute(&self) -> std::thread::Result<RB> {
        // SAFETY: we won `claim`, so nobody else touches `func`.
        let f = unsafe { (*self.func.get()).take() }.expect("join: func taken twice");
        panic::catch_unwind(AssertUnwindSafe(f))
    }
}

/// Runs `a` and `b`, potentially in parallel, and returns both results.
///
/// On a pool worker, `b` is offered to other workers while `a` runs on the
/// current stack (as rayon's `join`); in serial mode and outside a pool both
/// run inline, `a` first.
///
/// # Panics
///
/// If either closure panics, the panic is resumed after both have finished
/// (`a`'s panic first if both did).
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    // Profiling: `a` and `b` run as two logical strands (see `trace.rs`).
    let fork = crate::trace::fork();
    let (la, lb) = (fork.child(), fork.child());
    let a = move || {
        let _strand = crate::trace::enter_logical(la);
        a()
    };
    let b = move || {
        let _strand = crate::trace::enter_logical(lb);
        b()
    };
    let pooled = WorkerThread::with_current(|w| w.is_some());
    if !pooled {
        let ra = panic::catch_unwind(AssertUnwindSafe(a));
        let rb = panic::catch_unwind(AssertUnwindSafe(b));
        return finish(ra, rb);
    }
    let job = Arc::new(JoinJob {
        claimed: AtomicBool::new(false),
        func: UnsafeCell::new(Some(b)),
        result: UnsafeCell::new(None),
        latch: Latch::new(),
    });
    let task = {
        let claimed: *const AtomicBool = &job.claimed;
        let job = job.clone();
        let func: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            if job.claim() {
                let r = job.execute();
                // SAFETY: we won `claim`; the owner reads `result` only after
                // `latch` is set below.
                unsafe { *job.result.get() = Some(r) };
                job.latch.set();
            }
        });
        // SAFETY: `join` does not return before `b` has finished: either it
        // claims `b` and runs it itself, or it waits on `job.latch`, which the
        // task sets after `b` returned. The task closure may outlive `join`
        // only holding an `Arc` to a job whose `func` and `result` are empty.
        // SAFETY (`claimed`): points into the job `Arc` the closure owns.
        Task::with_claim(unsafe { erase_lifetime(func) }, unsafe { &*claimed })
    };
    WorkerThread::with_current(|w| w.expect("join: worker vanished").push(task));
    let ra = panic::catch_unwind(AssertUnwindSafe(a));
    let rb = if job.claim() {
        job.execute()
    } else {
        job.latch.wait();
        // SAFETY: the latch is set, so the claiming task wrote `result` and
        // will not touch it again.
        unsafe { (*job.result.get()).take() }.expect("join: result missing")
    };
    finish(ra, rb)
}

fn finish<RA, RB>(ra: std::thread::Result<RA>, rb: std::thread::Result<RB>) -> (RA, RB) {
    match (ra, rb) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(p), _) | (_, Err(p)) => panic::resume_unwind(p),
    }
}

/// Keeps the panic of the lowest index seen.
struct LowestPanic(Mutex<Option<(u64, Payload)>>);

impl LowestPanic {
    fn new() -> LowestPanic {
        LowestPanic(Mutex::new(None))
    }

    fn record(&self, index: u64, payload: Payload) {
        let mut slot = self.0.lock();
        match &*slot {
            Some((i, _)) if *i <= index => {}
            _ => *slot = Some((index, payload)),
        }
    }

    fn resume(self) {
        if let Some((_, p)) = self.0.into_inner() {
            panic::resume_unwind(p);
        }
    }
}

/// Calls `f(index, &item)` for every item, potentially in parallel (split in
/// halves with [`join`] down to single items, so that in fibers mode an item
/// that waits never holds back the items after it).
///
/// In serial mode and outside a pool, items run in order on this thread.
///
/// # Panics
///
/// Every item runs even if some panic; afterwards the panic of the lowest
/// item index is resumed, the same in every mode.
pub fn par_for_each<T: Sync>(items: &[T], f: impl Fn(usize, &T) + Sync) {
    let panics = LowestPanic::new();
    let run = |i: usize| {
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| f(i, &items[i]))) {
            panics.record(i as u64, p);
        }
    };
    let pooled = WorkerThread::with_current(|w| w.is_some());
    if pooled {
        split(0, items.len(), &run);
    } else if crate::trace::is_enabled() {
        // Profiling: split as a pool does, so the recorded forks (`join`
        // records them, `trace.rs`) have the same shape in every mode; the
        // items still run in order.
        split(0, items.len(), &run);
    } else {
        (0..items.len()).for_each(run);
    }
    panics.resume();
}

fn split(lo: usize, hi: usize, run: &(impl Fn(usize) + Sync)) {
    match hi - lo {
        0 => {}
        1 => run(lo),
        n => {
            let mid = lo + n / 2;
            join(|| split(lo, mid, run), || split(mid, hi, run));
        }
    }
}

/// Maps every item with `f(index, &item)`, potentially in parallel, and
/// returns the results in item order. Panics as [`par_for_each`].
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let out: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    par_for_each(items, |i, item| {
        let r = f(i, item);
        *out[i].lock() = Some(r);
    });
    out.into_iter()
        .map(|m| m.into_inner().expect("par_map: item without result"))
        .collect()
}

/// A task spawned in a scope, claimed once: by a worker that pops it, or by
/// the scope's owner, which runs its own unstarted spawns inline before it
/// waits (so a scope never waits on work that only it could run, e.g. on one
/// blocked worker in threads mode).
struct ScopeJob {
    claimed: AtomicBool,
    func: UnsafeCell<Option<Box<dyn FnOnce() + Send + 'static>>>,
}

// SAFETY: `func` is taken only by the single winner of the `claimed` swap.
unsafe impl Sync for ScopeJob {}

impl ScopeJob {
    /// Runs the job if nobody claimed it yet.
    fn run_if_unclaimed(&self) {
        // AcqRel: the winner must see `func` as written by the spawner.
        if !self.claimed.swap(true, Ordering::AcqRel) {
            // SAFETY: we won the claim; nobody else touches `func`.
            if let Some(f) = unsafe { (*self.func.get()).take() } {
                f();
            }
        }
    }
}

/// A scope for spawning tasks that may borrow from the enclosing stack; see
/// [`scope`].
pub struct Scope<'scope> {
    pending: CountLatch,
    panics: LowestPanic,
    next_spawn: AtomicU64,
    pooled: bool,
    /// Spawned jobs, in spawn order, for the owner to claim before waiting.
    unstarted: Mutex<std::collections::VecDeque<Arc<ScopeJob>>>,
    _marker: PhantomData<&'scope mut &'scope ()>,
}

/// Creates a scope in which `f` can [`spawn`](Scope::spawn) tasks that borrow
/// from the enclosing stack; returns once `f` and every spawned task (and
/// their spawns) finished, as `std::thread::scope` and rayon's `scope`.
///
/// In serial mode and outside a pool, `spawn` runs the task inline at once.
/// On a pool, once `f` returns, the caller runs the spawned tasks that no
/// worker has started yet (in spawn order), then waits for the rest.
///
/// # Panics
///
/// If `f` or a task panics, the scope still waits for every task, then
/// resumes the panic of `f`, else that of the earliest spawn.
pub fn scope<'scope, R>(f: impl FnOnce(&Scope<'scope>) -> R) -> R {
    let pooled = WorkerThread::with_current(|w| w.is_some());
    let s = Scope {
        pending: CountLatch::new(1),
        panics: LowestPanic::new(),
        next_spawn: AtomicU64::new(1),
        pooled,
        unstarted: Mutex::new(std::collections::VecDeque::new()),
        _marker: PhantomData,
    };
    let r = panic::catch_unwind(AssertUnwindSafe(|| f(&s)));
    loop {
        let next = s.unstarted.lock().pop_front();
        match next {
            Some(job) => job.run_if_unclaimed(),
            None => break,
        }
    }
    s.pending.decrement();
    s.pending.wait();
    match r {
        Err(p) => panic::resume_unwind(p),
        Ok(v) => {
            s.panics.resume();
            v
        }
    }
}

impl<'scope> Scope<'scope> {
    /// Spawns a task in this scope. It may spawn more tasks through the
    /// `&Scope` it receives.
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce(&Scope<'scope>) + Send + 'scope,
    {
        // Relaxed: only a unique, ordered-per-spawner number is needed.
        let seq = self.next_spawn.fetch_add(1, Ordering::Relaxed);
        if !self.pooled {
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
                self.panics.record(seq, p);
            }
            return;
        }
        self.pending.increment();
        let this = ScopePtr(self as *const Scope<'scope>);
        let func: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || {
            let this = this;
            // SAFETY: the scope outlives every task spawned in it: `scope`
            // waits for `pending` to reach zero, and this task decrements it
            // only as its very last use of the scope.
            let s = unsafe { &*this.0 };
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| f(s))) {
                s.panics.record(seq, p);
            }
            s.pending.decrement();
        });
        let job = Arc::new(ScopeJob {
            claimed: AtomicBool::new(false),
            // SAFETY: as above, `scope` does not return before this closure
            // ran: it is claimed either by a worker or by the scope's owner,
            // and `pending` counts it until it finished.
            func: UnsafeCell::new(Some(unsafe { erase_lifetime(func) })),
        });
        self.unstarted.lock().push_back(job.clone());
        let claimed: *const AtomicBool = &job.claimed;
        // SAFETY: `claimed` points into `job`, an `Arc` the closure owns.
        let task = Task::with_claim(Box::new(move || job.run_if_unclaimed()), unsafe {
            &*claimed
        });
        WorkerThread::with_current(|w| w.expect("scope: spawn outside its worker").push(task));
    }
}

struct ScopePtr<'scope>(*const Scope<'scope>);
// SAFETY: `Scope` is `Sync` in use (its fields are atomics and mutexes), and
// the pointer is dereferenced only while the scope is alive (see `spawn`).
unsafe impl Send for ScopePtr<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mode, Runtime};
    use std::sync::atomic::AtomicUsize;

    fn runtimes() -> Vec<Runtime> {
        let mut v = Vec::new();
        for mode in Mode::ALL {
            if mode == Mode::Fibers && !Mode::fibers_available() {
                continue;
            }
            for t in [1, 2, 4] {
                v.push(Runtime::builder().mode(mode).threads(t).build().unwrap());
            }
        }
        v
    }

    #[test]
    fn join_and_par_map_compute_everything() {
        for rt in runtimes() {
            let v: Vec<u64> = (0..1000).collect();
            let out = rt.block_on(|| par_map(&v, |i, x| (i as u64) * x));
            assert_eq!(
                out,
                (0..1000u64).map(|x| x * x).collect::<Vec<_>>(),
                "{rt:?}"
            );
            fn fib(n: u64) -> u64 {
                if n < 2 {
                    return n;
                }
                let (a, b) = join(|| fib(n - 1), || fib(n - 2));
                a + b
            }
            assert_eq!(rt.block_on(|| fib(18)), 2584, "{rt:?}");
        }
    }

    #[test]
    fn lowest_index_panic_wins() {
        for rt in runtimes() {
            let ran = AtomicUsize::new(0);
            let items: Vec<usize> = (0..10).collect();
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(|| {
                    par_for_each(&items, |i, _| {
                        ran.fetch_add(1, Ordering::SeqCst);
                        if i == 3 || i == 7 {
                            panic!("item {i}");
                        }
                    })
                })
            }));
            let msg = *r.unwrap_err().downcast::<String>().unwrap();
            assert_eq!(msg, "item 3", "{rt:?}");
            assert_eq!(ran.load(Ordering::SeqCst), 10, "{rt:?}");
        }
    }

    #[test]
    fn scope_waits_for_nested_spawns() {
        for rt in runtimes() {
            let n = AtomicUsize::new(0);
            rt.block_on(|| {
                scope(|s| {
                    for _ in 0..10 {
                        s.spawn(|s| {
                            n.fetch_add(1, Ordering::SeqCst);
                            s.spawn(|_| {
                                n.fetch_add(1, Ordering::SeqCst);
                            });
                        });
                    }
                })
            });
            assert_eq!(n.load(Ordering::SeqCst), 20, "{rt:?}");
        }
    }
}
