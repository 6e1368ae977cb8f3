//! Optional recording of what the workers do: tasks starting and ending,
//! fibers suspending and resuming, threads blocking, steals and parks, each
//! with a timestamp on one monotonic clock. Cheap when off: every hook is
//! one `Relaxed` load of a global flag and a branch.
//!
//! # Strands and their on-CPU clock
//!
//! A *strand* is one sequential thread of control: the body of one task
//! (on its fiber in fibers mode, on the worker thread in threads mode), or
//! the code of a thread outside any task (serial mode, the main thread).
//! Each strand has an id and an *on-CPU clock*: wall time minus the time the
//! strand spent suspended (its fiber switched away) or blocked (its thread
//! waited on a latch). The query profiler measures self time on that clock,
//! so time a query spends waiting for a `join` or a `par_for_each` that other
//! workers are running is not counted as its own work.
//!
//! The strand state is a thread-local that the runtime swaps exactly where
//! it swaps the task context (`context.rs`):
//! - `enter_task` around every task body (`Task::run`): a fresh strand;
//! - `switch_out` / `switch_in` around a fiber's suspend, on the fiber's
//!   own stack: the fiber takes its strand with it and gets it back, with
//!   the suspended time added to its off-CPU total;
//! - `block_start` / `block_end` around a thread blocking on a latch.
//!
//! # Events
//!
//! `record` appends to a per-thread buffer (one uncontended mutex each);
//! [`take_events`] drains every thread's buffer. Recording is process-wide:
//! [`enable`] turns it on for every runtime in the process, until as many
//! [`disable`] calls undid it.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Whether recording is on (process-wide).
/// How many recorders are on ([`enable`] minus [`disable`]).
static ENABLED: AtomicUsize = AtomicUsize::new(0);

/// Strand ids; 0 means "not assigned yet". 64 bits never wrap in practice.
static NEXT_STRAND: AtomicU64 = AtomicU64::new(1);

/// Every thread's event buffer, for [`take_events`].
static BUFFERS: Mutex<Vec<Arc<Mutex<ThreadEvents>>>> = Mutex::new(Vec::new());

/// Turns recording on for the whole process (every runtime).
///
/// Calls nest: recording stays on until every [`enable`] was matched by a
/// [`disable`] (a query engine's recorder calls them when it is enabled and
/// when it is dropped).
pub fn enable() {
    // Relaxed: a hook that misses the flag for a moment only misses events;
    // nothing else is published through it.
    ENABLED.fetch_add(1, Ordering::Relaxed);
}

/// Undoes one [`enable`]. When the last one is undone, recording stops and
/// the events not taken yet are dropped.
pub fn disable() {
    let was = ENABLED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    if was == Ok(1) {
        drop(take_events());
    }
}

/// Whether recording is on. Always `false` without the `recording` feature,
/// so that every hook compiles to nothing.
#[inline]
pub fn is_enabled() -> bool {
    // Relaxed: see `enable`.
    cfg!(feature = "recording") && ENABLED.load(Ordering::Relaxed) != 0
}

/// Now, in nanoseconds of `CLOCK_MONOTONIC` (the clock of every timestamp
/// the runtime and the query profiler record).
#[inline]
pub fn now_ns() -> u64 {
    crate::jobserver::monotonic_ns()
}

/// What a worker did, as recorded by `record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A task body starts on this thread, as strand `strand`.
    TaskStart {
        /// The task's strand id.
        strand: u64,
    },
    /// The task body of strand `strand` ends.
    TaskEnd {
        /// The task's strand id.
        strand: u64,
    },
    /// The fiber running strand `strand` switches back to its worker to wait.
    Suspend {
        /// The suspended strand.
        strand: u64,
    },
    /// A suspended fiber, running strand `strand`, is resumed.
    Resume {
        /// The resumed strand.
        strand: u64,
    },
    /// The thread blocks on a latch (threads mode, or a wait during unwinding).
    BlockStart,
    /// The blocked thread continues.
    BlockEnd,
    /// A fork (`join`, and so `par_for_each`) made logical strand `child`
    /// of `parent`; the children of one `group` run in parallel, and
    /// `parent` continues once all of them finished.
    Fork {
        /// The forking logical strand.
        parent: u64,
        /// The fork: its children are siblings.
        group: u64,
        /// The new logical strand.
        child: u64,
    },
    /// The worker took a task from worker `victim`'s deque.
    Steal {
        /// The worker stolen from.
        victim: usize,
    },
    /// The worker found nothing to do and parks.
    Park,
    /// The parked worker woke up.
    Unpark,
}

/// An event and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedEvent {
    /// [`now_ns`] when it was recorded.
    pub at_ns: u64,
    /// What happened.
    pub event: Event,
}

/// The events of one thread, in the order they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadEvents {
    /// The worker index of the thread, `None` for a thread outside any pool.
    pub worker: Option<usize>,
    /// The events.
    pub events: Vec<TimedEvent>,
}

/// The running strand of this thread. Swapped by the hooks below.
#[derive(Clone, Copy, Default)]
struct StrandState {
    /// The strand id; 0 until first asked for (see [`strand_id`]).
    id: u64,
    /// Total ns this strand spent suspended or blocked.
    off_cpu_ns: u64,
    /// The logical strand (see [`logical_strand`]); 0 = same as `id`.
    logical: u64,
}

thread_local! {
    static STRAND: Cell<StrandState> = const { Cell::new(StrandState { id: 0, off_cpu_ns: 0, logical: 0 }) };
    static BUFFER: RefCell<Option<Arc<Mutex<ThreadEvents>>>> = const { RefCell::new(None) };
}

fn fresh_strand() -> u64 {
    // Relaxed: only uniqueness is needed.
    NEXT_STRAND.fetch_add(1, Ordering::Relaxed)
}

/// Appends `event` to this thread's buffer, when recording is on.
#[inline]
pub(crate) fn record(event: Event) {
    if is_enabled() {
        record_slow(event, now_ns());
    }
}

#[cold]
fn record_slow(event: Event, at_ns: u64) {
    BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        let buf = b.get_or_insert_with(|| {
            let buf = Arc::new(Mutex::new(ThreadEvents {
                worker: crate::current_worker_index(),
                events: Vec::new(),
            }));
            BUFFERS.lock().push(buf.clone());
            buf
        });
        buf.lock().events.push(TimedEvent { at_ns, event });
    });
}

/// Drains the events every thread recorded so far (threads that recorded
/// nothing since the last call are left out).
pub fn take_events() -> Vec<ThreadEvents> {
    let buffers = BUFFERS.lock();
    buffers
        .iter()
        .filter_map(|b| {
            let mut b = b.lock();
            if b.events.is_empty() {
                return None;
            }
            Some(ThreadEvents {
                worker: b.worker,
                events: std::mem::take(&mut b.events),
            })
        })
        .collect()
}

/// The id of the strand running on this thread (assigned on first use).
pub fn strand_id() -> u64 {
    STRAND.with(|s| {
        let mut st = s.get();
        if st.id == 0 {
            st.id = fresh_strand();
            s.set(st);
        }
        st.id
    })
}

/// The *logical* strand of the running code: the physical strand
/// ([`strand_id`]), except inside a branch of a fork, which runs as a child
/// logical strand whether it runs inline or on another worker. So a run on
/// one worker records the same fork structure as a parallel one.
pub fn logical_strand() -> u64 {
    STRAND.with(|s| {
        let mut st = s.get();
        if st.logical == 0 {
            if st.id == 0 {
                st.id = fresh_strand();
            }
            st.logical = st.id;
            s.set(st);
        }
        st.logical
    })
}

/// A fork site; from [`fork`].
pub(crate) struct ForkGroup {
    parent: u64,
    group: u64,
}

/// Starts a fork on the running logical strand (a `join`). Nothing is
/// recorded when recording is off.
#[inline]
pub(crate) fn fork() -> ForkGroup {
    if !is_enabled() {
        return ForkGroup {
            parent: 0,
            group: 0,
        };
    }
    fork_slow()
}

#[cold]
#[inline(never)]
fn fork_slow() -> ForkGroup {
    ForkGroup {
        parent: logical_strand(),
        group: fresh_strand(),
    }
}

impl ForkGroup {
    /// A new child logical strand of this fork (0 when recording is off).
    #[inline]
    pub(crate) fn child(&self) -> u64 {
        if self.group == 0 {
            return 0;
        }
        self.child_slow()
    }

    #[cold]
    #[inline(never)]
    fn child_slow(&self) -> u64 {
        let child = fresh_strand();
        record_slow(
            Event::Fork {
                parent: self.parent,
                group: self.group,
                child,
            },
            now_ns(),
        );
        child
    }
}

/// Runs the code until the guard drops as logical strand `child` (from
/// [`ForkGroup::child`]; 0 does nothing).
#[inline]
pub(crate) fn enter_logical(child: u64) -> LogicalGuard {
    if child == 0 {
        return LogicalGuard { saved: None };
    }
    let saved = STRAND.with(|s| {
        let mut st = s.get();
        let saved = st.logical;
        st.logical = child;
        s.set(st);
        saved
    });
    LogicalGuard { saved: Some(saved) }
}

/// Restores the logical strand on drop; from [`enter_logical`].
pub(crate) struct LogicalGuard {
    saved: Option<u64>,
}

impl Drop for LogicalGuard {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            STRAND.with(|s| {
                let mut st = s.get();
                st.logical = saved;
                s.set(st);
            });
        }
    }
}

/// [`now_ns`] and the running strand's [`on_cpu_ns`] from one clock read,
/// so that the two agree.
pub fn clocks() -> (u64, u64) {
    let now = now_ns();
    let off = STRAND.with(|s| s.get().off_cpu_ns);
    (now, now.saturating_sub(off))
}

/// The running strand's on-CPU clock in ns: [`now_ns`] minus the time the
/// strand spent suspended or blocked. Only differences taken on one strand
/// mean anything.
pub fn on_cpu_ns() -> u64 {
    let off = STRAND.with(|s| s.get().off_cpu_ns);
    now_ns().saturating_sub(off)
}

/// The strand a task body runs as; restores the thread's previous strand on
/// drop. From [`enter_task`].
pub(crate) struct TaskStrand {
    saved: Option<StrandState>,
}

/// Starts a fresh strand for a task body (call at the top of `Task::run`,
/// keep the guard until the body returned).
#[inline]
pub(crate) fn enter_task() -> TaskStrand {
    if !is_enabled() {
        return TaskStrand { saved: None };
    }
    enter_task_slow()
}

#[cold]
#[inline(never)]
fn enter_task_slow() -> TaskStrand {
    let id = fresh_strand();
    let saved = STRAND.with(|s| {
        s.replace(StrandState {
            id,
            off_cpu_ns: 0,
            logical: 0,
        })
    });
    record_slow(Event::TaskStart { strand: id }, now_ns());
    TaskStrand { saved: Some(saved) }
}

impl Drop for TaskStrand {
    #[inline]
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            leave_task(saved);
        }
    }
}

#[cold]
#[inline(never)]
fn leave_task(saved: StrandState) {
    let ended = STRAND.with(|s| s.replace(saved));
    record_slow(Event::TaskEnd { strand: ended.id }, now_ns());
}

/// A fiber's strand while it is switched away; from [`switch_out`].
#[cfg(feature = "fibers")]
#[must_use = "hand it back to switch_in after the fiber is resumed"]
pub(crate) struct Switched {
    saved: Option<(StrandState, u64)>,
}

/// Call on the fiber's stack right before it suspends: takes the fiber's
/// strand off the thread.
#[cfg(feature = "fibers")]
#[inline]
pub(crate) fn switch_out() -> Switched {
    if !is_enabled() {
        return Switched { saved: None };
    }
    switch_out_slow()
}

#[cfg(feature = "fibers")]
#[cold]
#[inline(never)]
fn switch_out_slow() -> Switched {
    let at = now_ns();
    let st = STRAND.with(|s| s.replace(StrandState::default()));
    record_slow(Event::Suspend { strand: st.id }, at);
    Switched {
        saved: Some((st, at)),
    }
}

/// Call on the fiber's stack right after it was resumed, with what
/// [`switch_out`] returned: the strand is back, its suspended time counted
/// as off-CPU.
#[cfg(feature = "fibers")]
#[inline]
pub(crate) fn switch_in(switched: Switched) {
    if let Some((st, at)) = switched.saved {
        switch_in_slow(st, at);
    }
}

#[cfg(feature = "fibers")]
#[cold]
#[inline(never)]
fn switch_in_slow(mut st: StrandState, at: u64) {
    let now = now_ns();
    st.off_cpu_ns += now.saturating_sub(at);
    STRAND.with(|s| s.set(st));
    record_slow(Event::Resume { strand: st.id }, now);
}

/// A thread blocked on a latch; from [`block_start`].
#[must_use = "hand it back to block_end after the thread continues"]
pub(crate) struct Blocked {
    since: Option<u64>,
}

/// Call right before the thread blocks on a latch.
#[inline]
pub(crate) fn block_start() -> Blocked {
    if !is_enabled() {
        return Blocked { since: None };
    }
    block_start_slow()
}

#[cold]
#[inline(never)]
fn block_start_slow() -> Blocked {
    let at = now_ns();
    record_slow(Event::BlockStart, at);
    Blocked { since: Some(at) }
}

/// Call right after the blocked thread continues: the blocked time counts
/// as off-CPU for the running strand.
#[inline]
pub(crate) fn block_end(blocked: Blocked) {
    if let Some(at) = blocked.since {
        block_end_slow(at);
    }
}

#[cold]
#[inline(never)]
fn block_end_slow(at: u64) {
    let now = now_ns();
    STRAND.with(|s| {
        let mut st = s.get();
        st.off_cpu_ns += now.saturating_sub(at);
        s.set(st);
    });
    record_slow(Event::BlockEnd, now);
}

#[cfg(all(test, feature = "recording"))]
mod tests {
    use super::*;

    #[test]
    fn blocked_time_is_off_cpu() {
        enable();
        let id = strand_id();
        let before = on_cpu_ns();
        let b = block_start();
        std::thread::sleep(std::time::Duration::from_millis(20));
        block_end(b);
        let after = on_cpu_ns();
        assert!(
            after - before < 10_000_000,
            "on-CPU clock advanced while blocked"
        );
        assert_eq!(strand_id(), id);
        let task = enter_task();
        assert_ne!(strand_id(), id);
        drop(task);
        assert_eq!(strand_id(), id);
        let events: Vec<Event> = take_events()
            .into_iter()
            .flat_map(|t| t.events)
            .map(|e| e.event)
            .collect();
        assert!(events.contains(&Event::BlockStart) && events.contains(&Event::BlockEnd));
        disable();
    }
}
