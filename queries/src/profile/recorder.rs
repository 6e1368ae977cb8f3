//! The [`Recorder`]: what the engine calls at the start and end of every
//! execution, at every cache hit and around every wait.
//!
//! Off (the default), every method is one load and one branch, and the
//! engine checks [`Recorder::is_on`] once per read, before it enters an
//! instance of `Cx::try_get` with no hooks at all; without the `recording`
//! cargo feature every method is empty and compiles away. On,
//! each call takes one mutex; the figures are in `bench/README.md`.
//!
//! # How self time is measured
//!
//! Each strand (see `weft_runtime::trace`) has a stack of the executions
//! open on it. An execution reads the strand's on-CPU clock at its start and
//! end; its self time is that difference minus the on-CPU time of the
//! executions that started and ended on the same strand while it was the
//! innermost one (misses computed inline). The strand's clock already
//! leaves out the time it was suspended or blocked, whatever it waited for.
//!
//! Reads: a hit is recorded by [`Recorder::cache_hit`]; a miss computed by
//! the caller becomes a read of the new execution by its parent when the
//! execution ends; a wait becomes a read of the execution waited for when
//! the wait ends.

use std::fmt::Debug;

#[cfg(feature = "recording")]
use std::collections::BTreeMap;
#[cfg(feature = "recording")]
use std::sync::OnceLock;

#[cfg(feature = "recording")]
use parking_lot::Mutex;
#[cfg(feature = "recording")]
use rustc_hash::FxHashMap;
#[cfg(feature = "recording")]
use weft_runtime::trace;

use super::Profile;
#[cfg(feature = "recording")]
use super::{ExecRecord, ReadKind, ReadRecord, WaitRecord};

/// Records query executions for a [`Profile`]. Off until
/// [`Recorder::enable`]; then it also turns on the runtime's event
/// recording (process-wide, until the recorder is dropped).
#[derive(Default)]
pub struct Recorder {
    #[cfg(feature = "recording")]
    state: OnceLock<State>,
    /// Set once `state` is initialized (see `state()`).
    #[cfg(feature = "recording")]
    on: std::sync::atomic::AtomicBool,
}

#[cfg(feature = "recording")]
impl Drop for Recorder {
    fn drop(&mut self) {
        if self.state.get().is_some() {
            // Undo `enable`: the runtime stops recording when no recorder is on.
            trace::disable();
        }
    }
}

impl Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("on", &self.is_on())
            .finish()
    }
}

/// An execution being recorded; from [`Recorder::exec_start`], handed back
/// to [`Recorder::exec_end`] on the same stack.
#[derive(Debug)]
#[must_use = "hand it to Recorder::exec_end when the execution ends"]
pub struct ExecToken {
    /// The execution's id; 0 when not recording.
    #[cfg_attr(not(feature = "recording"), allow(dead_code))]
    exec: u64,
}

/// A wait being recorded; from [`Recorder::wait_start`].
#[derive(Debug)]
#[must_use = "hand it to Recorder::wait_end when the wait ends"]
pub struct WaitToken {
    #[cfg(feature = "recording")]
    inner: Option<OpenWait>,
}

#[cfg(feature = "recording")]
#[derive(Debug)]
struct OpenWait {
    waiter: Option<u64>,
    on: u64,
    start_ns: u64,
    worker: Option<usize>,
    blocking: bool,
}

#[cfg(feature = "recording")]
impl OpenWait {
    #[cold]
    #[inline(never)]
    fn start(waiter: Option<u64>, on: u64) -> OpenWait {
        OpenWait {
            waiter,
            on,
            start_ns: trace::now_ns(),
            worker: weft_runtime::current_worker_index(),
            blocking: weft_runtime::current_mode() != Some(weft_runtime::Mode::Fibers)
                || std::thread::panicking(),
        }
    }
}

#[cfg(feature = "recording")]
struct State {
    inner: Mutex<Inner>,
}

#[cfg(feature = "recording")]
#[derive(Default)]
struct Inner {
    /// Executions started and not ended, by id.
    open: FxHashMap<u64, Open>,
    /// Per strand: the open executions on it, innermost last.
    strands: FxHashMap<u64, Vec<u64>>,
    done: Vec<ExecRecord>,
    roots: Vec<ReadRecord>,
    hits: BTreeMap<&'static str, u64>,
    /// Runtime events drained so far (kept for later `profile` calls).
    events: Vec<trace::ThreadEvents>,
}

#[cfg(feature = "recording")]
struct Open {
    rec: ExecRecord,
    /// The physical strand it runs on (its stack).
    phys: u64,
    /// The strand's on-CPU clock at the start.
    cpu_start: u64,
    /// On-CPU ns of the executions nested inline in this one.
    child_cpu: u64,
}

#[cfg(feature = "recording")]
impl Inner {
    /// The self time so far of `reader`, if it is the innermost execution
    /// of physical strand `phys` (the read is made on its own stack).
    fn self_so_far(&self, reader: u64, phys: u64, cpu_now: u64) -> Option<u64> {
        let top = *self.strands.get(&phys)?.last()?;
        if top != reader {
            return None;
        }
        let o = self.open.get(&reader)?;
        Some(
            cpu_now
                .saturating_sub(o.cpu_start)
                .saturating_sub(o.child_cpu),
        )
    }

    fn push_read(&mut self, reader: Option<u64>, read: ReadRecord) {
        match reader.and_then(|r| self.open.get_mut(&r)) {
            Some(o) => o.rec.reads.push(read),
            None => self.roots.push(read),
        }
    }
}

impl Recorder {
    /// The recording state, when on: one load and a branch per hook.
    #[cfg(feature = "recording")]
    #[inline]
    fn state(&self) -> Option<&State> {
        // Relaxed: `on` is a hint checked first so that a recorder that is
        // off costs one load and one branch; `get` then synchronizes.
        if !self.on.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.state.get()
    }

    /// A recorder that is off.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Turns recording on (idempotent), and the runtime's event recording
    /// with it. Without the `recording` feature this does nothing.
    pub fn enable(&self) {
        #[cfg(feature = "recording")]
        {
            self.state.get_or_init(|| {
                // Undone when the recorder is dropped.
                trace::enable();
                State {
                    inner: Mutex::new(Inner::default()),
                }
            });
            // Relaxed: a reader that sees `on` still synchronizes through
            // `OnceLock::get` (see `state()`).
            self.on.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether recording is on: one relaxed load (a hint; each hook then
    /// synchronizes through the state's `OnceLock`). Check it before calling
    /// a hook from a hot path, and keep the hook's call out of line.
    #[inline]
    pub fn is_on(&self) -> bool {
        #[cfg(feature = "recording")]
        {
            self.on.load(std::sync::atomic::Ordering::Relaxed)
        }
        #[cfg(not(feature = "recording"))]
        {
            false
        }
    }

    /// An execution `exec` of `query(key)` starts on this stack; `parent`
    /// gives the execution of the job that was current (the caller, or the
    /// query that forked the calling task); it is called only when recording.
    /// `key` gives the key's text ([`Query::describe`](crate::Query::describe)).
    #[inline]
    pub fn exec_start(
        &self,
        exec: u64,
        query: &'static str,
        key: impl FnOnce() -> String,
        parent: impl FnOnce() -> Option<u64>,
    ) -> ExecToken {
        #[cfg(feature = "recording")]
        if let Some(state) = self.state() {
            return state.exec_start(exec, query, key(), parent());
        }
        let _ = (exec, query, key, parent);
        ExecToken { exec: 0 }
    }

    /// The execution of `token` ends (call on the stack it started on, also
    /// when its provider panicked). Records it as read by its parent.
    #[inline]
    pub fn exec_end(&self, token: ExecToken) {
        #[cfg(feature = "recording")]
        if token.exec != 0 {
            if let Some(state) = self.state() {
                state.exec_end(token.exec);
            }
        }
        let _ = token;
    }

    /// A cache hit: `reader` (gives the current job's execution, `None` at
    /// top level; called only when recording) read the memoized result of
    /// execution `target` of `query`.
    #[inline]
    pub fn cache_hit(
        &self,
        query: &'static str,
        reader: impl FnOnce() -> Option<u64>,
        target: u64,
    ) {
        #[cfg(feature = "recording")]
        if let Some(state) = self.state() {
            state.cache_hit(query, reader(), target);
            return;
        }
        let _ = (query, reader, target);
    }

    /// The current job's execution (from `waiter`, called only when
    /// recording) starts waiting for execution `on`, in progress elsewhere.
    #[inline]
    pub fn wait_start(&self, waiter: impl FnOnce() -> Option<u64>, on: u64) -> WaitToken {
        #[cfg(feature = "recording")]
        if self.state().is_some() {
            return WaitToken {
                inner: Some(OpenWait::start(waiter(), on)),
            };
        }
        let _ = (waiter, on);
        WaitToken {
            #[cfg(feature = "recording")]
            inner: None,
        }
    }

    /// The wait of `token` ended; records it as a read of the execution
    /// waited for.
    #[inline]
    pub fn wait_end(&self, token: WaitToken) {
        #[cfg(feature = "recording")]
        if let (Some(w), Some(state)) = (token.inner, self.state()) {
            state.wait_end(w);
        }
        #[cfg(not(feature = "recording"))]
        let _ = token;
    }

    /// The profile so far: every finished execution, with `mode` and
    /// `workers` as given and the wall time from the first start to the
    /// last end. `None` when recording is off.
    pub fn profile(&self, mode: &str, workers: usize) -> Option<Profile> {
        #[cfg(feature = "recording")]
        if let Some(state) = self.state() {
            return Some(state.profile(mode, workers));
        }
        let _ = (mode, workers);
        None
    }
}

#[cfg(feature = "recording")]
impl State {
    #[cold]
    #[inline(never)]
    fn exec_start(
        &self,
        exec: u64,
        query: &'static str,
        key: String,
        parent: Option<u64>,
    ) -> ExecToken {
        let worker = weft_runtime::current_worker_index();
        let (phys, strand) = (trace::strand_id(), trace::logical_strand());
        let (start_ns, cpu_start) = trace::clocks();
        let mut inner = self.inner.lock();
        inner.strands.entry(phys).or_default().push(exec);
        inner.open.insert(
            exec,
            Open {
                rec: ExecRecord {
                    exec,
                    query,
                    key,
                    worker,
                    strand,
                    start_ns,
                    end_ns: start_ns,
                    self_ns: 0,
                    parent,
                    reads: Vec::new(),
                    waits: Vec::new(),
                },
                phys,
                cpu_start,
                child_cpu: 0,
            },
        );
        ExecToken { exec }
    }

    #[cold]
    #[inline(never)]
    fn exec_end(&self, exec: u64) {
        let (end_ns, cpu_end) = trace::clocks();
        let mut inner = self.inner.lock();
        let Some(open) = inner.open.remove(&exec) else {
            return;
        };
        let (phys, strand) = (open.phys, trace::logical_strand());
        let mut below = None;
        if let Some(stack) = inner.strands.get_mut(&phys) {
            if let Some(pos) = stack.iter().rposition(|&e| e == exec) {
                stack.remove(pos);
            }
            below = stack.last().copied();
            if stack.is_empty() {
                inner.strands.remove(&phys);
            }
        }
        let inclusive = cpu_end.saturating_sub(open.cpu_start);
        if let Some(o) = below.and_then(|b| inner.open.get_mut(&b)) {
            o.child_cpu += inclusive;
        }
        let mut rec = open.rec;
        rec.end_ns = end_ns;
        rec.self_ns = inclusive.saturating_sub(open.child_cpu);
        let read = ReadRecord {
            target: exec,
            kind: ReadKind::Computed,
            strand,
            at_ns: rec.start_ns,
            self_before_ns: rec.parent.and_then(|p| inner.self_so_far(p, phys, cpu_end)),
        };
        inner.push_read(rec.parent, read);
        inner.done.push(rec);
    }

    #[cold]
    #[inline(never)]
    fn cache_hit(&self, query: &'static str, reader: Option<u64>, target: u64) {
        let (phys, strand) = (trace::strand_id(), trace::logical_strand());
        let (at_ns, cpu) = trace::clocks();
        let mut inner = self.inner.lock();
        *inner.hits.entry(query).or_insert(0) += 1;
        let self_before_ns = reader.and_then(|r| inner.self_so_far(r, phys, cpu));
        inner.push_read(
            reader,
            ReadRecord {
                target,
                kind: ReadKind::Hit,
                strand,
                at_ns,
                self_before_ns,
            },
        );
    }

    #[cold]
    #[inline(never)]
    fn wait_end(&self, w: OpenWait) {
        let (phys, strand) = (trace::strand_id(), trace::logical_strand());
        let (end_ns, cpu) = trace::clocks();
        let mut inner = self.inner.lock();
        let self_before_ns = w.waiter.and_then(|r| inner.self_so_far(r, phys, cpu));
        let wait = WaitRecord {
            on_exec: w.on,
            start_ns: w.start_ns,
            end_ns,
            worker: w.worker,
            blocking: w.blocking,
        };
        if let Some(o) = w.waiter.and_then(|r| inner.open.get_mut(&r)) {
            o.rec.waits.push(wait);
        }
        inner.push_read(
            w.waiter,
            ReadRecord {
                target: w.on,
                kind: ReadKind::Waited,
                strand,
                at_ns: w.start_ns,
                self_before_ns,
            },
        );
    }

    fn profile(&self, mode: &str, workers: usize) -> Profile {
        let mut inner = self.inner.lock();
        let fresh = trace::take_events();
        inner.events.extend(fresh);
        let mut execs = inner.done.clone();
        execs.sort_by_key(|e| (e.start_ns, e.exec));
        let start_ns = execs
            .iter()
            .map(|e| e.start_ns)
            .chain(inner.roots.iter().map(|r| r.at_ns))
            .min()
            .unwrap_or(0);
        let end_ns = execs.iter().map(|e| e.end_ns).max().unwrap_or(start_ns);
        let mut profile = Profile {
            mode: mode.to_owned(),
            workers: workers.max(1),
            start_ns,
            wall_ns: end_ns.saturating_sub(start_ns),
            execs,
            roots: inner.roots.clone(),
            hits: inner.hits.clone(),
            forks: super::forks_of(&inner.events),
            worker_stats: Vec::new(),
            runtime_events: inner.events.clone(),
        };
        profile.worker_stats = super::timeline::worker_stats(&profile, &profile.runtime_events);
        profile
    }
}

impl Profile {
    /// Sets the measured wall time of the run (`start_ns` and `wall_ns`) and
    /// recomputes the worker statistics over it.
    pub fn set_wall(&mut self, start_ns: u64, wall_ns: u64) {
        self.start_ns = start_ns;
        self.wall_ns = wall_ns;
        self.worker_stats = super::timeline::worker_stats(self, &self.runtime_events);
    }
}

#[cfg(all(test, feature = "recording"))]
mod tests {
    use super::*;

    fn spin(ns: u64) {
        let t = trace::now_ns();
        while trace::now_ns() - t < ns {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn nested_time_is_not_self_time() {
        let r = Recorder::new();
        assert!(!r.is_on());
        assert!(r.profile("serial", 1).is_none());
        r.enable();
        let a = r.exec_start(101, "outer", || "a".to_owned(), || None);
        spin(2_000_000);
        let b = r.exec_start(102, "inner", || "b".to_owned(), || Some(101));
        spin(3_000_000);
        r.exec_end(b);
        r.cache_hit("inner", || Some(101), 102);
        spin(1_000_000);
        r.exec_end(a);
        let p = r.profile("serial", 1).unwrap();
        assert_eq!(p.execs.len(), 2);
        let outer = p.execs.iter().find(|e| e.exec == 101).unwrap();
        let inner = p.execs.iter().find(|e| e.exec == 102).unwrap();
        // Spins are on the wall clock: at least as long as asked, maybe longer
        // on a busy machine; the nested time is not counted twice.
        assert!(inner.self_ns >= 3_000_000, "{}", inner.self_ns);
        assert!(outer.self_ns >= 3_000_000, "{}", outer.self_ns);
        let total = outer.end_ns - outer.start_ns;
        assert!(
            total.abs_diff(outer.self_ns + inner.self_ns) < 200_000,
            "{total} {outer:?} {inner:?}"
        );
        let kinds: Vec<ReadKind> = outer.reads.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [ReadKind::Computed, ReadKind::Hit]);
        assert!(outer.reads[0].self_before_ns.unwrap() >= 2_000_000);
        assert!(outer.reads[0].self_before_ns.unwrap() < outer.self_ns - 900_000);
        assert_eq!(p.hits["inner"], 1);
        assert_eq!(p.roots.len(), 1);
        assert_eq!(p.span(), inner.self_ns + outer.self_ns);
    }
}
