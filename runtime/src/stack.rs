//! Fiber stacks, stack bounds, and `ensure_sufficient_stack`.
//!
//! This module owns three protocols, one file each:
//!
//! - **Carving** (`stack/carve.rs`): stacks are slots of large mappings with
//!   guard regions installed by `MADV_GUARD_INSTALL`, so 100,000 parked
//!   fibers cost ~400 VMAs instead of 200,000. [`StackPool`] hands them out
//!   and takes them back here.
//! - **Overflow reporting** (`stack/overflow.rs`): a `SIGSEGV` handler on an
//!   alternate signal stack that recognises our guard regions and prints the
//!   worker and the query being computed.
//! - **Activity labels** (`stack/activity.rs`): what the overflow message
//!   names, swapped per fiber.
//!
//! # Stack bounds and `ensure_sufficient_stack`
//!
//! Each thread keeps, in thread-locals, the bounds of the stack it is running
//! on *now*: an OS thread's own stack, a fiber's stack, or a segment that
//! `ensure_sufficient_stack` switched to. Invariants:
//!
//! - `THRESHOLD` is `limit + RED_ZONE` for the stack in use; a stack pointer
//!   below it means "less than a red zone left". `usize::MAX` means "this OS
//!   thread's bounds are not known yet" (computed on first use from
//!   `pthread_getattr_np`); 0 means "unknown, never switch".
//! - The worker swaps the bounds at every fiber resume and suspend
//!   ([`StackBoundsGuard::enter_fiber`]); the fiber's side of the swap lives
//!   in its [`FiberStackState`]. Because the swap *saves* what was current
//!   when the fiber suspended, a fiber that suspends while running on a
//!   segment gets the segment's bounds back when it resumes.
//! - A segment installs its own bounds for exactly the extent of the closure
//!   run on it, and restores the previous ones on return or unwind, so nested
//!   segments work at any depth.
//!
//! The check costs one thread-local read and one compare (see
//! `/work/notes/issue5.md` for the measured figure); only when less than
//! [`RED_ZONE`] bytes are left does the closure continue on a pooled
//! [`SEGMENT_SIZE`] segment via `corosensei::on_stack`. The `stacker` crate
//! cannot be used: its limit is per OS thread and knows nothing of fibers.
//!
//! Without the `fibers` feature there are no fiber stacks and no
//! corosensei: `ensure_sufficient_stack` continues on segments from the
//! `stacker` crate instead, which serves OS threads (threads and serial
//! mode), the only stacks such a build runs on.
//!
//! # Pool
//!
//! [`StackPool::take`] pops a returned stack (LIFO, so its pages are warm) or
//! carves the next slot of the current chunk; chunks grow from 8 to 256
//! stacks. A returned stack goes back to the pool on `give_back` or drop.
//! The pool keeps at most `warm_limit` stacks with their pages; stacks
//! returned beyond that have their pages released (`MADV_DONTNEED`) first,
//! so a burst of 100,000 fibers does not keep its memory after it ends.

#[path = "stack/activity.rs"]
mod activity;
#[path = "stack/carve.rs"]
mod carve;
#[path = "stack/overflow.rs"]
mod overflow;

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;

pub use self::activity::{
    set_current_activity, set_current_activity_name, ActivityGuard, ActivityNameGuard,
};
#[cfg_attr(not(feature = "fibers"), allow(unused_imports))]
pub(crate) use self::overflow::{
    install_alt_stack_for_thread, install_overflow_handler, set_worker_index_for_signal,
};
// Used by the stack tests (runtime/tests/stack_*.rs compile this module).
#[allow(unused_imports)]
pub(crate) use self::{
    activity::current_activity,
    carve::{force_mprotect_guards, guard_method, GuardMethod, StackKind},
    overflow::{overflow_handler_installed, AltStackGuard},
};

use self::activity::ActivityBuf;
use self::carve::{Chunk, SlotLayout};

/// When fewer bytes than this are left on the current stack,
/// `ensure_sufficient_stack` continues on a fresh segment. Code between two
/// calls must not use more than this.
pub(crate) const RED_ZONE: usize = 128 * 1024;

/// Usable size of the segments deep recursion continues on.
pub(crate) const SEGMENT_SIZE: usize = 2 * 1024 * 1024;

/// Guard bytes below every carved stack (at least one page). Rust probes
/// every page of frames larger than a page, so a guard is never jumped over
/// by Rust code.
const GUARD_SIZE: usize = 16 * 1024;

/// Bytes at the top of every carved stack reserved for its activity label.
const ACTIVITY_AREA: usize = std::mem::size_of::<ActivityBuf>();

/// Stacks per chunk: the first chunk holds this many, each next one twice
/// as many, up to [`MAX_CHUNK_STACKS`].
const FIRST_CHUNK_STACKS: usize = 8;
const MAX_CHUNK_STACKS: usize = 256;

/// Default budget of address space kept "warm" (pages not released) in a
/// pool: `warm_limit = clamp(WARM_BYTES / stack size, 8, 1024)`.
const WARM_BYTES: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Stacks and the pool.

/// A fiber stack from a [`StackPool`]: `[limit, base)` usable, a guard region
/// below `limit`, and a 128-byte activity label area above `base`.
///
/// Dropping it (or [`StackPool::give_back`]) returns it to its pool.
pub(crate) struct FiberStack {
    /// Lowest usable address (the guard lies just below).
    limit: usize,
    /// Top of the usable stack as given to corosensei; the label area lies
    /// in `[base, base + ACTIVITY_AREA)`.
    base: usize,
    pool: Arc<PoolShared>,
}

impl FiberStack {
    /// Lowest usable address.
    pub(crate) fn usable_limit(&self) -> usize {
        self.limit
    }

    /// Highest usable address (exclusive), as given to corosensei.
    pub(crate) fn usable_base(&self) -> usize {
        self.base
    }

    /// Usable bytes.
    #[allow(dead_code)] // used by tests
    pub(crate) fn size(&self) -> usize {
        self.base - self.limit
    }

    /// The label buffer of this stack's fiber.
    fn activity_buf(&self) -> *mut ActivityBuf {
        self.base as *mut ActivityBuf
    }

    /// The slot's top address, which identifies it in the pool.
    fn slot_top(&self) -> usize {
        self.base + ACTIVITY_AREA
    }
}

impl std::fmt::Debug for FiberStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiberStack")
            .field("limit", &format_args!("{:#x}", self.limit))
            .field("base", &format_args!("{:#x}", self.base))
            .finish()
    }
}

impl Drop for FiberStack {
    fn drop(&mut self) {
        self.pool.put(self.limit, self.slot_top());
    }
}

#[cfg(all(feature = "fibers", unix))]
// SAFETY: `[limit - GUARD, base)` is mapped for as long as the stack lives
// (the pool's chunks outlive every `FiberStack`, which holds an `Arc` to the
// pool), `limit` has a guard region of at least one page below it, the
// usable part is at least `MIN_STACK_SIZE` (`StackPool::new` enforces it),
// and both addresses are page- or 16-byte aligned (`ACTIVITY_AREA` is 144).
unsafe impl corosensei::stack::Stack for FiberStack {
    #[inline]
    fn base(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.base).expect("stack base is non-null")
    }

    #[inline]
    fn limit(&self) -> corosensei::stack::StackPointer {
        // corosensei wants the limit *including* guard pages.
        corosensei::stack::StackPointer::new(self.limit - self.pool.layout.guard)
            .expect("stack limit is non-null")
    }
}

/// A pool of fiber stacks of one size. `Sync`: workers share it.
///
/// `take` reuses a returned stack (~20 ns: a lock and a pop) or carves the
/// next slot of the current chunk. Stacks are never unmapped one by one;
/// the chunks go when the pool and all its stacks are gone.
pub(crate) struct StackPool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    layout: SlotLayout,
    kind: StackKind,
    warm_limit: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// Returned stacks whose pages are kept, as `(limit, slot top)`; LIFO.
    warm: Vec<(usize, usize)>,
    /// Returned stacks whose pages were released.
    cold: Vec<(usize, usize)>,
    /// Every chunk mapped so far; the last one is being carved.
    chunks: Vec<Chunk>,
    /// Next uncarved slot of the last chunk.
    next_slot: usize,
    /// Stacks carved so far (all chunks).
    carved: usize,
}

impl StackPool {
    /// A pool of stacks with at least `stack_size` usable bytes each
    /// (rounded up to whole pages, at least 16 KiB).
    pub(crate) fn new(stack_size: usize) -> StackPool {
        StackPool::with_kind(stack_size, StackKind::Fiber)
    }

    /// Like [`StackPool::new`], naming what the stacks are for (the overflow
    /// message differs for segments).
    pub(crate) fn with_kind(stack_size: usize, kind: StackKind) -> StackPool {
        let page = carve::page_size();
        let stack = stack_size.max(16 * 1024).next_multiple_of(page);
        let layout = SlotLayout {
            guard: GUARD_SIZE.next_multiple_of(page),
            stack,
        };
        let warm_limit = (WARM_BYTES / stack).clamp(8, 1024);
        StackPool {
            shared: Arc::new(PoolShared {
                layout,
                kind,
                warm_limit,
                state: Mutex::new(PoolState::default()),
            }),
        }
    }

    /// Sets how many returned stacks keep their pages (the rest are
    /// released with `MADV_DONTNEED`).
    #[allow(dead_code)] // used by tests and leak checks
    pub(crate) fn with_warm_limit(mut self, warm_limit: usize) -> StackPool {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.warm_limit = warm_limit,
            None => unreachable!("with_warm_limit is called before any take"),
        }
        self
    }

    /// Usable bytes of every stack of this pool, excluding the 128-byte
    /// label area (what the overflow message reports).
    pub(crate) fn stack_size(&self) -> usize {
        self.shared.layout.stack - ACTIVITY_AREA
    }

    /// A stack: a returned one if any, else a newly carved one. Fails only
    /// when a new chunk cannot be mapped (ENOMEM, or `vm.max_map_count`).
    pub(crate) fn take(&self) -> io::Result<FiberStack> {
        let (limit, top) = self.shared.take_slot()?;
        let base = top - ACTIVITY_AREA;
        // SAFETY: `[base, top)` is the label area of a slot nobody else holds
        // now; it is mapped and writable.
        unsafe { (base as *mut ActivityBuf).write(ActivityBuf::EMPTY) };
        Ok(FiberStack {
            limit,
            base,
            pool: Arc::clone(&self.shared),
        })
    }

    /// Returns a stack to the pool; same as dropping it. A stack of another
    /// pool goes back to that pool.
    pub(crate) fn give_back(&self, stack: FiberStack) {
        drop(stack);
    }

    /// Stacks carved and not freed: those in use plus those pooled. Stacks
    /// are freed only with the whole pool, so this is the pool's high-water
    /// mark of simultaneously used stacks (for leak tests).
    pub(crate) fn live_stacks(&self) -> usize {
        self.shared.state.lock().carved
    }

    /// Stacks waiting in the pool (returned, not in use).
    #[allow(dead_code)] // used by tests and leak checks
    pub(crate) fn pooled_stacks(&self) -> usize {
        let state = self.shared.state.lock();
        state.warm.len() + state.cold.len()
    }

    /// Stacks handed out and not yet returned.
    #[allow(dead_code)] // used by tests and leak checks
    pub(crate) fn in_use_stacks(&self) -> usize {
        let state = self.shared.state.lock();
        state.carved - state.warm.len() - state.cold.len()
    }

    /// Memory mappings (chunks) this pool holds: one VMA each with
    /// `MADV_GUARD_INSTALL`, about two per stack with the mprotect fallback.
    #[allow(dead_code)] // used by tests and leak checks
    pub(crate) fn chunks(&self) -> usize {
        self.shared.state.lock().chunks.len()
    }
}

impl std::fmt::Debug for StackPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackPool")
            .field("stack_size", &self.stack_size())
            .field("live_stacks", &self.live_stacks())
            .finish_non_exhaustive()
    }
}

impl PoolShared {
    fn take_slot(&self) -> io::Result<(usize, usize)> {
        let mut state = self.state.lock();
        if let Some(slot) = state.warm.pop().or_else(|| state.cold.pop()) {
            return Ok(slot);
        }
        let need_chunk = match state.chunks.last() {
            Some(chunk) => state.next_slot == chunk.count(),
            None => true,
        };
        if need_chunk {
            let count = (FIRST_CHUNK_STACKS << state.chunks.len().min(8)).min(MAX_CHUNK_STACKS);
            // Mapped under the lock: rare (every 256 stacks at most), and it
            // keeps the carving state simple.
            let chunk = Chunk::map(self.layout, count, self.kind)?;
            state.chunks.push(chunk);
            state.next_slot = 0;
        }
        let i = state.next_slot;
        state.next_slot += 1;
        state.carved += 1;
        let chunk = state.chunks.last().expect("a chunk was just ensured");
        Ok(chunk.slot_bounds(i))
    }

    fn put(&self, limit: usize, top: usize) {
        let mut state = self.state.lock();
        if state.warm.len() < self.warm_limit {
            state.warm.push((limit, top));
            return;
        }
        drop(state);
        carve::release_pages(limit, top - limit);
        self.state.lock().cold.push((limit, top));
    }
}

// ---------------------------------------------------------------------------
// Stack bounds of the running code.

/// `THRESHOLD` value: bounds of this OS thread not computed yet.
const UNINIT: usize = usize::MAX;

thread_local! {
    /// `limit + RED_ZONE` of the stack in use; see the module doc.
    static THRESHOLD: Cell<usize> = const { Cell::new(UNINIT) };
    /// `(limit, base)` of the stack in use; `(0, 0)` if unknown.
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The bounds one thread-local swap moves.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    threshold: usize,
    limit: usize,
    base: usize,
}

impl Bounds {
    fn of(limit: usize, base: usize) -> Bounds {
        Bounds {
            threshold: limit.saturating_add(RED_ZONE),
            limit,
            base,
        }
    }

    fn replace_current(self) -> Bounds {
        let threshold = THRESHOLD.with(|t| t.replace(self.threshold));
        let (limit, base) = BOUNDS.with(|b| b.replace((self.limit, self.base)));
        Bounds {
            threshold,
            limit,
            base,
        }
    }
}

/// The stack-layer state of one fiber while it is not running: the bounds
/// of the stack it runs on (its own, or a segment it suspended on) and its
/// activity label buffer. Lives in the fiber record; create it from the
/// fiber's stack before moving the stack into the coroutine.
#[derive(Debug)]
pub(crate) struct FiberStackState {
    bounds: Bounds,
    activity: *mut ActivityBuf,
}

// SAFETY: `activity` points into the fiber's stack, which is only touched by
// the thread running the fiber (fibers are pinned to their home worker);
// moving the record between threads before the first resume is harmless.
unsafe impl Send for FiberStackState {}

impl FiberStackState {
    /// The state of a fiber about to start on `stack`.
    pub(crate) fn new(stack: &FiberStack) -> FiberStackState {
        FiberStackState {
            bounds: Bounds::of(stack.usable_limit(), stack.usable_base()),
            activity: stack.activity_buf(),
        }
    }
}

/// Makes a fiber's stack bounds and activity label current on this thread
/// for as long as it lives; the worker holds one around every
/// `Coroutine::resume`. Dropping it saves the fiber's bounds and label (they
/// may have moved to a segment) back into its [`FiberStackState`] and
/// restores the worker's.
pub(crate) struct StackBoundsGuard<'a> {
    state: &'a mut FiberStackState,
    _not_send: PhantomData<*const ()>,
}

impl StackBoundsGuard<'_> {
    /// Swaps `state` in; see the type doc.
    pub(crate) fn enter_fiber(state: &mut FiberStackState) -> StackBoundsGuard<'_> {
        state.swap_with_thread();
        StackBoundsGuard {
            state,
            _not_send: PhantomData,
        }
    }
}

impl FiberStackState {
    /// Exchanges this state with the thread's current one.
    fn swap_with_thread(&mut self) {
        self.bounds = self.bounds.replace_current();
        self.activity = activity::swap_current(self.activity);
    }
}

impl Drop for StackBoundsGuard<'_> {
    fn drop(&mut self) {
        self.state.swap_with_thread();
    }
}

/// Restores the previous bounds when a segment's closure returns or unwinds.
struct SegmentBoundsGuard {
    previous: Bounds,
}

impl Drop for SegmentBoundsGuard {
    fn drop(&mut self) {
        self.previous.replace_current();
    }
}

/// For the signal handler: the usable limit of the OS thread stack this
/// thread runs on now, if known and no fiber or segment is current (those
/// have carved guards, recognised by address). Async-signal-safe.
fn os_stack_limit_in_handler() -> Option<usize> {
    let (limit, _base) = BOUNDS.try_with(Cell::get).ok()?;
    (limit != 0).then_some(limit)
}

/// The current stack pointer, or close to it.
#[inline(always)]
fn stack_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let sp: usize;
        // SAFETY: reads rsp into a register; no memory access, no effects.
        unsafe {
            std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
        }
        sp
    }
    #[cfg(target_arch = "aarch64")]
    {
        let sp: usize;
        // SAFETY: reads sp into a register; no memory access, no effects.
        unsafe {
            std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
        }
        sp
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    }
}

/// Runs `f`, first moving to a fresh stack segment if fewer than
/// `RED_ZONE` bytes are left on the current stack.
///
/// Call it at every level of a recursion that may go deep (the query engine
/// calls it at every query entry): a chain of 1,000,000 nested calls then
/// completes on fibers, on worker threads and on the main thread. When no
/// switch is needed the cost is a thread-local read and a compare. Works on
/// fibers (the worker keeps the bounds per fiber) where the `stacker` crate
/// does not.
///
/// Without the `fibers` feature it simply runs `f`.
#[inline]
pub fn ensure_sufficient_stack<R>(f: impl FnOnce() -> R) -> R {
    let sp = stack_pointer();
    if sp >= THRESHOLD.with(Cell::get) {
        f()
    } else {
        ensure_sufficient_stack_slow(sp, f)
    }
}

/// Bytes left on the current stack (fiber, segment or OS thread) before its
/// guard, or `None` where the bounds are unknown.
pub fn remaining_stack() -> Option<usize> {
    if THRESHOLD.with(Cell::get) == UNINIT {
        init_thread_bounds();
    }
    let (limit, _base) = BOUNDS.with(Cell::get);
    if limit == 0 {
        return None;
    }
    Some(stack_pointer().saturating_sub(limit))
}

#[cold]
#[inline(never)]
fn ensure_sufficient_stack_slow<R>(sp: usize, f: impl FnOnce() -> R) -> R {
    if THRESHOLD.with(Cell::get) == UNINIT {
        init_thread_bounds();
        if sp >= THRESHOLD.with(Cell::get) {
            return f();
        }
    }
    run_on_segment(f)
}

#[cfg(all(feature = "fibers", unix))]
fn run_on_segment<R>(f: impl FnOnce() -> R) -> R {
    static SEGMENTS: std::sync::LazyLock<StackPool> =
        std::sync::LazyLock::new(|| StackPool::with_kind(SEGMENT_SIZE, StackKind::Segment));
    let segment = match SEGMENTS.take() {
        Ok(segment) => segment,
        // No memory for a segment: go on here; if this stack runs out, the
        // overflow handler (or std's) reports it.
        Err(_) => return f(),
    };
    let _restore = SegmentBoundsGuard {
        previous: Bounds::of(segment.usable_limit(), segment.usable_base()).replace_current(),
    };
    corosensei::on_stack(segment, f)
}

/// Without fibers (no corosensei), a segment comes from the `stacker` crate
/// (as rustc's `ensure_sufficient_stack`): it works on OS threads, the only
/// stacks such a build runs on. Our bounds follow it onto the segment.
#[cfg(not(all(feature = "fibers", unix)))]
fn run_on_segment<R>(f: impl FnOnce() -> R) -> R {
    stacker::grow(SEGMENT_SIZE, || {
        let sp = stack_pointer();
        match stacker::remaining_stack() {
            Some(left) => {
                let _restore = SegmentBoundsGuard {
                    previous: Bounds::of(sp.saturating_sub(left), sp).replace_current(),
                };
                f()
            }
            None => f(),
        }
    })
}

/// Computes this OS thread's stack bounds into the thread-locals.
#[cold]
fn init_thread_bounds() {
    let bounds = match os_thread_stack() {
        Some((limit, base)) => Bounds::of(limit, base),
        None => Bounds {
            threshold: 0,
            limit: 0,
            base: 0,
        },
    };
    bounds.replace_current();
}

/// `(limit, base)` of the calling OS thread's stack.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn os_thread_stack() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills `attr`, which we destroy after
    // reading the stack address and size out of it.
    let (addr, size) = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ret = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if ret != 0 || addr.is_null() {
            return None;
        }
        (addr as usize, size)
    };
    let base = addr + size;
    // SAFETY: getpid and gettid have no preconditions.
    let is_main = unsafe { libc::getpid() == libc::gettid() };
    let size = if is_main {
        // The main thread's stack grows on demand up to RLIMIT_STACK; glibc
        // reports that bound, but with an unlimited rlimit it reports the
        // distance to the next mapping. Cap it like rustc does (stacker):
        // by the rlimit when finite, else 8 MiB.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into `limit`.
        let ret = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) };
        let cap = if ret == 0 && limit.rlim_cur != libc::RLIM_INFINITY {
            limit.rlim_cur as usize
        } else {
            8 * 1024 * 1024
        };
        size.min(cap)
    } else {
        size
    };
    Some((base - size, base))
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn os_thread_stack() -> Option<(usize, usize)> {
    // SAFETY: both calls only read the calling thread's descriptor.
    let (base, size) = unsafe {
        let this = libc::pthread_self();
        (
            libc::pthread_get_stackaddr_np(this) as usize,
            libc::pthread_get_stacksize_np(this),
        )
    };
    Some((base - size, base))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
)))]
fn os_thread_stack() -> Option<(usize, usize)> {
    None
}
