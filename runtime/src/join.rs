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

use std::cell::{Cell, OnceCell, RefCell, UnsafeCell};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

impl<B: FnOnce(bool) -> RB, RB> JoinJob<B, RB> {
    fn claim(&self) -> bool {
        // AcqRel: the winner must see `func` as written by the creator.
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// Runs `func`; only the winner of `claim` may call this.
    fn execute(&self, migrated: bool) -> std::thread::Result<RB> {
        // SAFETY: we won `claim`, so nobody else touches `func`.
        let f = unsafe { (*self.func.get()).take() }.expect("join: func taken twice");
        panic::catch_unwind(AssertUnwindSafe(|| f(migrated)))
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
    join_ctx(a, |_migrated| b())
}

/// [`join`], telling `b` whether it *migrated*: ran from the deque (on
/// another worker, or on a new fiber of this one) rather than inline after
/// `a`, as rayon's `join_context`. `par_for_each` splits finer after a
/// migration.
fn join_ctx<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce(bool) -> RB + Send,
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
    let b = move |migrated: bool| {
        let _strand = crate::trace::enter_logical(lb);
        b(migrated)
    };
    let pooled = WorkerThread::with_current(|w| w.is_some());
    if !pooled {
        let ra = panic::catch_unwind(AssertUnwindSafe(a));
        let rb = panic::catch_unwind(AssertUnwindSafe(|| b(false)));
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
                let r = job.execute(true);
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
        let func = unsafe { erase_lifetime(func) };
        // SAFETY: `claimed` points into the job `Arc` the closure owns, so it
        // lives as long as the task.
        unsafe { Task::with_claim(func, claimed) }
    };
    WorkerThread::with_current(|w| w.expect("join: worker vanished").push(task));
    let ra = panic::catch_unwind(AssertUnwindSafe(a));
    let rb = if job.claim() {
        job.execute(false)
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

/// Calls `f(index, &item)` for every item, potentially in parallel.
///
/// The range is split in halves with `join`, adaptively as rayon's
/// `Splitter`: into about as many leaves as workers while nobody steals, and
/// further wherever a half migrated to another worker or fiber. A leaf runs
/// its items one by one from a shared counter. Before its fiber suspends (or
/// its thread blocks) on an item that waits, the leaf *offers* its remaining
/// items as a task, so that in fibers mode an item that waits never holds
/// back the items after it, and tiny items cost no more than a loop.
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
    let threads = WorkerThread::with_current(|w| w.map(|w| w.registry.num_threads()));
    match threads {
        Some(threads) => {
            let helpers = CountLatch::new(1);
            let offered = Mutex::new(Vec::new());
            let ctx = SplitCtx {
                run: &run,
                helpers: &helpers,
                offered: &offered,
                threads,
            };
            // rayon's initial splits; with one worker nothing would take a
            // half, so the whole range is one leaf (an item that waits still
            // offers the rest, see `offer_pending`).
            let splits = if threads > 1 { threads } else { 0 };
            split(0, items.len(), splits, false, &ctx, &run);
            // Every leaf this call ran itself is drained, and a leaf drained
            // elsewhere is drained by a started helper (which keeps going
            // after it resumes): a helper that nobody started has nothing
            // left to do. Cancel those instead of waiting for a worker to
            // start them (in threads mode this worker may be the only one).
            for claim in offered.lock().drain(..) {
                // AcqRel: pairs with the helper's own claim.
                if !claim.swap(true, Ordering::AcqRel) {
                    helpers.decrement();
                }
            }
            helpers.release_and_wait();
        }
        None if crate::trace::is_enabled() => {
            // Profiling: split as a pool of one does, so the recorded forks
            // (`join` records them, `trace.rs`) have the shape of a pooled
            // run; the items still run in order.
            serial_split(0, items.len(), &run);
        }
        None => (0..items.len()).for_each(run),
    }
    panics.resume();
}

fn serial_split(lo: usize, hi: usize, run: &(impl Fn(usize) + Sync)) {
    match hi - lo {
        0 => {}
        1 => run(lo),
        n => {
            let mid = lo + n / 2;
            join(|| serial_split(lo, mid, run), || serial_split(mid, hi, run));
        }
    }
}

/// What every part of one `par_for_each` shares.
struct SplitCtx<'a> {
    run: &'a (dyn Fn(usize) + Sync),
    /// Counts the helper tasks that leaves offered (plus one for the call).
    helpers: &'a CountLatch,
    /// The claim flags of the offered helpers.
    offered: &'a Mutex<Vec<Arc<AtomicBool>>>,
    threads: usize,
}

/// Splits `lo..hi` and drains the leaves; `run` is `ctx.run`, by its own
/// type, so that the item loop of a leaf this strand drains is
/// monomorphized (no indirect call per item); helpers on other strands
/// call through `ctx.run`.
fn split<R: Fn(usize) + Sync>(
    lo: usize,
    hi: usize,
    splits: usize,
    migrated: bool,
    ctx: &SplitCtx<'_>,
    run: &R,
) {
    // rayon's Splitter: a migrated half splits at least into `threads` more.
    let splits = if migrated {
        splits.max(ctx.threads)
    } else {
        splits
    };
    if hi - lo <= 1 || splits == 0 {
        run_leaf(lo, hi, ctx, run);
        return;
    }
    let mid = lo + (hi - lo) / 2;
    join_ctx(
        || split(lo, mid, splits / 2, false, ctx, run),
        |migrated| split(mid, hi, splits / 2, migrated, ctx, run),
    );
}

/// Items `next..end` of a leaf once it was offered, drawn one at a time by
/// the strand that started the leaf and by any helper task it offered.
pub(crate) struct Leaf {
    next: AtomicUsize,
    end: usize,
    /// A helper task is queued and has not started yet.
    offered: AtomicBool,
    /// What the `par_for_each` call shares (item function, helper count,
    /// offered helpers), its lifetime erased: it lives on that call's stack,
    /// and the call waits for every helper before it returns.
    split: *const SplitCtx<'static>,
    /// The task context the leaf started with: a helper runs its items in
    /// it, not in whatever job was current when the leaf offered them.
    ctx: crate::context::TaskContext,
}

// SAFETY: `split` points to a `SplitCtx` whose fields are `Sync` (an item
// function that is `Sync`, a `CountLatch`, a mutex); it is only
// dereferenced while the `par_for_each` call that owns it is still waiting
// for its helpers (see `offer_pending`).
unsafe impl Send for Leaf {}
// SAFETY: as above; the other fields are atomics.
unsafe impl Sync for Leaf {}

/// A leaf on the stack of the strand that started it, until its first
/// offer: then its items move into a shared [`Leaf`] (`shared`). Most
/// leaves are never offered, and cost no allocation.
pub(crate) struct OwnLeaf {
    /// The next item, while `shared` is unset.
    next: Cell<usize>,
    end: usize,
    /// As [`Leaf::split`].
    split: *const SplitCtx<'static>,
    /// As [`Leaf::ctx`].
    ctx: crate::context::TaskContext,
    shared: OnceCell<Arc<Leaf>>,
}

/// A leaf being drained by the code running now.
#[derive(Clone)]
pub(crate) enum Draining {
    /// Drained by the strand that started it: the leaf lives on this
    /// strand's stack, in the `run_leaf` frame that registered it, which
    /// unregisters it before it returns (also when unwinding).
    Own(*const OwnLeaf),
    /// A helper draining a shared leaf.
    Helper(Arc<Leaf>),
}

thread_local! {
    /// The leaves being drained by the code running now, innermost last.
    /// Saved and restored around every fiber switch (`fiber.rs`), so an
    /// `Own` entry is only ever read on the strand whose stack holds it.
    static LEAVES: RefCell<Vec<Draining>> = const { RefCell::new(Vec::new()) };
}

/// Unregisters the innermost leaf when its drain ends.
struct Unregister;

impl Drop for Unregister {
    fn drop(&mut self) {
        LEAVES.with(|l| l.borrow_mut().pop());
    }
}

fn run_leaf<R: Fn(usize) + Sync>(lo: usize, hi: usize, ctx: &SplitCtx<'_>, run: &R) {
    if hi - lo == 1 {
        run(lo);
        return;
    }
    let own = OwnLeaf {
        next: Cell::new(lo),
        end: hi,
        // Only the lifetime changes; see `Leaf::split`.
        split: (ctx as *const SplitCtx<'_>).cast::<SplitCtx<'static>>(),
        ctx: crate::context::current_context(),
        shared: OnceCell::new(),
    };
    LEAVES.with(|l| l.borrow_mut().push(Draining::Own(&own)));
    let _unregister = Unregister;
    // Until the leaf is first offered only this strand draws from it (a
    // helper exists only after an offer, and offers are made by this
    // strand, from its own stack, see `offer_pending`). It takes its items
    // in runs of 1, 2, 4, … up to `OWN_RUN` and runs each as a plain loop:
    // tiny items then cost what a loop costs. An item that waits offers the
    // items after its run; the rest of its run waits with it (fewer than
    // `OWN_RUN` items, and none for the first items).
    let mut run_len = 1;
    while own.shared.get().is_none() {
        let lo = own.next.get();
        if lo >= own.end {
            return;
        }
        let hi = (lo + run_len).min(own.end);
        own.next.set(hi);
        run_len = (run_len * 2).min(OWN_RUN);
        for i in lo..hi {
            run(i);
        }
    }
    // Offered: from now on, one item at a time from the shared counter.
    if let Some(leaf) = own.shared.get() {
        drain_shared(leaf, run);
    }
}

/// The longest run of items a leaf's own strand takes at once.
const OWN_RUN: usize = 32;

/// Runs a shared leaf's items with `run` until none is left.
fn drain_shared<R: Fn(usize) + Sync + ?Sized>(leaf: &Leaf, run: &R) {
    loop {
        // Relaxed: the counter only hands out distinct indices; the items'
        // effects are published by the latches that end the call.
        let i = leaf.next.fetch_add(1, Ordering::Relaxed);
        if i >= leaf.end {
            break;
        }
        run(i);
    }
}

/// Called before the current fiber suspends or the current thread blocks:
/// every leaf being drained here that still has items offers them as one
/// helper task on this worker's deque (at most one queued helper per leaf).
pub(crate) fn offer_pending() {
    let leaves: Vec<Draining> = LEAVES.with(|l| l.borrow().clone());
    for draining in leaves {
        let leaf = match draining {
            Draining::Own(own) => {
                // SAFETY: an `Own` entry names a leaf on this strand's stack
                // whose drain is still running (it unregisters before it
                // returns); this code runs on that strand, above the drain.
                let own = unsafe { &*own };
                if own.shared.get().is_none() && own.next.get() >= own.end {
                    continue;
                }
                own.shared
                    .get_or_init(|| {
                        Arc::new(Leaf {
                            next: AtomicUsize::new(own.next.get()),
                            end: own.end,
                            offered: AtomicBool::new(false),
                            split: own.split,
                            ctx: own.ctx.clone(),
                        })
                    })
                    .clone()
            }
            Draining::Helper(leaf) => leaf,
        };
        // Relaxed: a stale read only offers a helper that finds nothing.
        if leaf.next.load(Ordering::Relaxed) >= leaf.end {
            continue;
        }
        // AcqRel: pairs with the helper's reset below.
        if leaf.offered.swap(true, Ordering::AcqRel) {
            continue;
        }
        // SAFETY: the `par_for_each` owning the `SplitCtx` is still running:
        // the leaf is being drained by code inside it.
        let split = unsafe { &*leaf.split };
        split.helpers.increment();
        let claim = Arc::new(AtomicBool::new(false));
        split.offered.lock().push(claim.clone());
        let helper = leaf.clone();
        let flag: *const AtomicBool = &*claim;
        let func = Box::new(move || {
            // AcqRel: pairs with the owner's cancelling claim.
            if claim.swap(true, Ordering::AcqRel) {
                return; // cancelled by the owner, which counted it down
            }
            helper.offered.store(false, Ordering::Release);
            LEAVES.with(|l| l.borrow_mut().push(Draining::Helper(helper.clone())));
            {
                let _unregister = Unregister;
                // SAFETY: `par_for_each` waits for this helper (the
                // decrement below), so its `SplitCtx` and item function are
                // alive.
                let run = unsafe { (*helper.split).run };
                drain_shared(&helper, run);
            }
            // SAFETY: `par_for_each` waits for this decrement before it
            // returns, so its `SplitCtx` is alive; this is its last use.
            unsafe { (*helper.split).helpers.decrement() };
        });
        // SAFETY: `flag` points into `claim`, an `Arc` the closure owns, so it
        // lives as long as the task.
        let mut task = unsafe { Task::with_claim(func, flag) };
        task.set_context(leaf.ctx.clone());
        WorkerThread::with_current(|w| {
            if let Some(w) = w {
                w.push(task);
            }
        });
    }
}

/// Takes this thread's leaves (before a fiber switches away).
#[cfg(feature = "fibers")]
pub(crate) fn take_leaves() -> Vec<Draining> {
    LEAVES.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Puts a fiber's leaves back (after it resumed).
#[cfg(feature = "fibers")]
pub(crate) fn restore_leaves(leaves: Vec<Draining>) {
    LEAVES.with(|l| *l.borrow_mut() = leaves);
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
    s.pending.release_and_wait();
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
        let task = unsafe { Task::with_claim(Box::new(move || job.run_if_unclaimed()), claimed) };
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
