//! Job tokens: how many of the runtime's workers may be *busy* at once.
//!
//! A build tool (GNU make, cargo) hands every job it starts one *implicit*
//! token, and shares further tokens through a jobserver pipe: reading a byte
//! takes a token, writing it back returns it. Weft keeps `-j N` worker
//! threads, and lets a worker run work only while it holds a token:
//!
//! ```text
//!  worker loop             Tokens                         helper thread
//!  ───────────             ──────                         ─────────────
//!  has work ─► acquire(w) ─► implicit slot free? take it
//!                           spare token?        take it
//!                           pipe byte (non-blocking)?  take it
//!                           else request_token() ───────► read(pipe) (blocks)
//!                                wait on `cvar` ◄─────────  on_token(): spare.push
//!  runs tasks / fibers
//!  parks idle ─► release(w) ─► a local waiter? hand it over
//!  (threads mode: before     else write the byte back (or free the implicit slot)
//!   blocking on a latch)
//! ```
//!
//! # Invariants
//!
//! - At most one worker holds [`Held::Implicit`]: the implicit token belongs
//!   to the process, not to a worker or a runtime. Every runtime built with
//!   [`Jobserver::FromEnv`] shares one [`ImplicitSlot`], so two runtimes
//!   alive in one process still count it once. (A runtime given its own
//!   [`Jobserver::Client`] has a slot of its own: its creator decides what
//!   the implicit token is.)
//! - busy workers = `Implicit` holders (≤ 1) + `Token` holders; every
//!   `Token` holds one byte read from the pipe. So with a jobserver, busy
//!   workers ≤ 1 + tokens this process got from the pipe.
//! - Every byte read from the pipe is owned by exactly one `Acquired` value:
//!   in a worker's [`Held::Token`], in `State::spare`, or in flight inside
//!   the helper callback. Dropping an `Acquired` writes the byte back, so no
//!   token is leaked (on every exit path where Rust drops values: normal
//!   return, unwinding, runtime drop) and none is returned twice (the
//!   `Acquired` moves; `release` on a worker that holds nothing is a no-op).
//! - Token traffic happens only in [`Tokens::acquire`] / [`Tokens::release`],
//!   which the scheduler calls per park/unpark (and per latch block in
//!   threads mode), never per query.
//! - A blocking pipe read happens only on the helper thread. `acquire` may do
//!   one non-blocking read (our own file description, see
//!   `jobserver::Client::try_acquire`), never a blocking one, and the caller
//!   holds no scheduler lock when it calls `acquire`.
//!
//! # Lost wake-ups
//!
//! A worker waits in `acquire` on `Shared::cvar` under `Shared::state` after
//! checking, under the same lock, that no slot is free (implicit slot, spare
//! token, shutdown, broken jobserver). Every event that can satisfy a waiter
//! (`release` freeing the implicit slot or handing over a token, the helper
//! delivering a token, `shutdown`, the jobserver breaking) changes `State`
//! under the lock and then notifies. The condvar wait releases the lock
//! atomically, so an event either happens before the waiter's check (and the
//! check sees it) or after the waiter sleeps (and the notify wakes it).
//! `notify_one` suffices for a single slot: a newcomer that takes the slot
//! before the woken waiter re-locks consumed that slot itself, and the woken
//! waiter goes back to sleep with its helper request still outstanding.
//! Shutdown and breakage use `notify_all`.
//!
//! The implicit slot is an atomic outside `State` (runtimes share it). A
//! releaser stores `free = true` and only then takes the state lock of the
//! runtime whose waiter it wakes (its own, or another member's in
//! `ImplicitSlot::wake_member`); a waiter checks `free` under its own lock.
//! So the store is ordered before any check made after that lock hand-over,
//! and a waiter that checked earlier is asleep and gets the notify.
//!
//! # Fast path
//!
//! `Tokens::busy[w]` (touched only by worker `w`) makes `acquire` on a busy
//! worker and `release` on an idle one return without taking any lock, so the
//! scheduler may call them on every loop iteration.
//!
//! # Surplus tokens
//!
//! A helper request cannot be cancelled. When a waiter is served otherwise
//! (the implicit slot came free, or a releasing worker handed it a token),
//! its request stays outstanding; the token it brings is written straight
//! back when no worker waits for it (`waiting <= spare.len()`).

use std::ffi::OsString;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

/// Where a runtime's job tokens come from.
///
/// With a jobserver, at most `1 + tokens acquired from the jobserver` of the
/// runtime's workers are busy at once (the `1` is the implicit token of the
/// process); `Builder::threads(n)` (the CLI's `-j n`) still caps the number
/// of workers. Without one, all workers may be busy.
#[derive(Debug, Clone, Default)]
pub enum Jobserver {
    /// The jobserver named in the environment (`CARGO_MAKEFLAGS`, `MAKEFLAGS`
    /// or `MFLAGS`), read once per process by [`Jobserver::init_from_env`].
    /// No jobserver in the environment: behaves as [`Jobserver::Disabled`].
    /// A broken one (closed fds, not a pipe) also, after one warning on
    /// stderr.
    #[default]
    FromEnv,
    /// No token limit: every worker may be busy.
    Disabled,
    /// Tokens from this client (e.g. one made with `jobserver::Client::new`).
    Client(jobserver::Client),
}

/// The process-wide client read from the environment (`None`: there is
/// none, or it is broken).
static ENV_CLIENT: OnceLock<Option<jobserver::Client>> = OnceLock::new();

/// Warn at most once per process that the jobserver stopped working.
static WARNED_BROKEN: AtomicBool = AtomicBool::new(false);

impl Jobserver {
    /// Reads the jobserver named in the environment, once per process, and
    /// returns whether it is usable.
    ///
    /// Call this first thing in `main`, before any file is opened: when make
    /// did not pass its pipe (a recipe without `+`), the descriptor numbers
    /// named in `MAKEFLAGS` are closed and a later `open` could reuse them.
    /// Later calls (and [`Jobserver::FromEnv`]) return the first result.
    /// Warns once on stderr when the environment names a jobserver that
    /// cannot be used; says nothing when it names none.
    pub fn init_from_env() -> bool {
        env_client().is_some()
    }
}

fn env_client() -> Option<jobserver::Client> {
    ENV_CLIENT
        .get_or_init(|| {
            // SAFETY: `from_env_ext` takes ownership of the descriptors named
            // in the environment. It runs once per process (OnceLock), and
            // `init_from_env` documents that it must run before the process
            // opens files, so the descriptors are make's, not ours. With
            // `check_pipe = true` anything but a pipe/fifo is refused.
            let found = unsafe { jobserver::Client::from_env_ext(true) };
            match found.client {
                Ok(client) => Some(client),
                Err(err) => {
                    if should_warn(&err.kind()) {
                        warn_broken_env(found.var.as_ref(), &err);
                    }
                    None
                }
            }
        })
        .clone()
}

/// Whether a failed environment lookup deserves a warning: only when the
/// environment names a jobserver that we cannot use.
fn should_warn(kind: &jobserver::FromEnvErrorKind) -> bool {
    use jobserver::FromEnvErrorKind as K;
    // NoEnvVar / NoJobserver: nothing named. NegativeFd: make says the
    // jobserver is deliberately disabled for this job.
    !matches!(kind, K::NoEnvVar | K::NoJobserver | K::NegativeFd)
}

fn warn_broken_env(var: Option<&(&'static str, OsString)>, err: &jobserver::FromEnvError) {
    let name = var.map_or("the environment", |(name, _)| name);
    eprintln!(
        "weft: warning: the jobserver named in {name} is not usable ({err}); \
         running with -j workers. (Under make, prefix the recipe line with `+` \
         to share make's job slots.)"
    );
}

fn warn_broken_runtime(err: &io::Error) {
    if !WARNED_BROKEN.swap(true, Ordering::Relaxed) {
        eprintln!(
            "weft: warning: reading a jobserver token failed ({err}); \
             running with -j workers from now on"
        );
    }
}

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for the whole machine, so
/// busy intervals recorded by two processes compare.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on
    // every platform the runtime supports, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// What one worker holds while it is busy.
#[derive(Debug, Default)]
enum Held {
    /// Not busy (parked, blocked, or never started).
    #[default]
    Idle,
    /// Busy on the process's implicit token (at most one worker).
    Implicit,
    /// Busy on a token read from the jobserver pipe; dropping it writes it back.
    Token(jobserver::Acquired),
    /// Busy with no token needed (no jobserver, a broken one, or shutdown).
    Unlimited,
}

/// Token bookkeeping, guarded by `Shared::state`.
#[derive(Debug)]
struct State {
    /// Per worker: what it holds. Indexed by worker index.
    held: Vec<Held>,
    /// Tokens delivered (by the helper or a releasing worker) and not yet
    /// taken by a waiter. Only non-empty while `waiting > 0`.
    spare: Vec<jobserver::Acquired>,
    /// Workers blocked in `acquire`.
    waiting: usize,
    /// Helper requests not yet answered.
    requested: usize,
    /// No limit any more: the runtime shuts down, or the jobserver broke.
    unlimited: bool,
    /// Record busy intervals.
    logging: bool,
    /// Per worker: start (monotonic ns) of its current busy interval.
    busy_since: Vec<Option<u64>>,
    /// Finished busy intervals: (worker, start_ns, end_ns).
    log: Vec<(usize, u64, u64)>,
}

impl State {
    /// Marks worker `w` busy with `held`, starting its busy interval (after
    /// the slot was obtained, so an interval never exceeds the token's hold).
    fn become_busy(&mut self, w: usize, held: Held) {
        self.held[w] = held;
        if self.logging {
            self.busy_since[w] = Some(monotonic_ns());
        }
    }

    /// Ends worker `w`'s busy interval (before its slot is handed on).
    fn end_busy(&mut self, w: usize) {
        if let Some(start) = self.busy_since[w].take() {
            self.log.push((w, start, monotonic_ns()));
        }
    }

    /// Takes a free slot for worker `w` without blocking, if there is one.
    fn try_take_slot(&mut self, w: usize, implicit: &ImplicitSlot) -> bool {
        if self.unlimited {
            self.become_busy(w, Held::Unlimited);
        } else if implicit.try_take() {
            self.become_busy(w, Held::Implicit);
        } else if let Some(token) = self.spare.pop() {
            self.become_busy(w, Held::Token(token));
        } else {
            return false;
        }
        true
    }
}

/// The implicit token of the process (or of one explicit client), shared by
/// every runtime that draws tokens from the same jobserver.
#[derive(Debug)]
struct ImplicitSlot {
    /// No worker of any member runtime holds the implicit token.
    free: AtomicBool,
    /// The runtimes that may wait for it (to wake one when it comes free).
    members: Mutex<Vec<Weak<Shared>>>,
}

/// The slot of every runtime built with [`Jobserver::FromEnv`].
static ENV_IMPLICIT: OnceLock<Arc<ImplicitSlot>> = OnceLock::new();

impl ImplicitSlot {
    fn new() -> Arc<ImplicitSlot> {
        Arc::new(ImplicitSlot {
            free: AtomicBool::new(true),
            members: Mutex::new(Vec::new()),
        })
    }

    /// Takes the implicit token if it is free.
    fn try_take(&self) -> bool {
        // Relaxed: `free` guards no other data. A waiter checks it under its
        // runtime's state lock, and `wake_member` takes that same lock after
        // the store, so the mutex orders the store before a later check.
        self.free
            .compare_exchange(true, false, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Marks the implicit token free. The caller then wakes a waiter: its
    /// own (under its state lock) or another member's (`wake_member`).
    fn put_back(&self) {
        // Relaxed: see `try_take`.
        self.free.store(true, Ordering::Relaxed);
    }

    /// Wakes one waiter of another member runtime, if any waits. Called with
    /// no state lock held (it takes each member's lock in turn).
    fn wake_member(&self, except: &Shared) {
        let members = self.members.lock();
        for member in members.iter().filter_map(Weak::upgrade) {
            if std::ptr::eq(&*member, except) {
                continue;
            }
            let state = member.state.lock();
            if state.waiting > state.spare.len() {
                member.cvar.notify_one();
                return;
            }
        }
    }
}

/// State shared with the helper thread's callback.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Workers waiting in `acquire` for a slot.
    cvar: Condvar,
    /// The implicit token this runtime shares with others.
    implicit: Arc<ImplicitSlot>,
}

impl Shared {
    /// Worker `w` frees the implicit token: wake one of our waiters, or
    /// (after dropping our lock) one of another runtime's.
    fn free_implicit(&self, state: parking_lot::MutexGuard<'_, State>) {
        self.implicit.put_back();
        if state.waiting > state.spare.len() {
            self.cvar.notify_one();
        } else {
            drop(state);
            self.implicit.wake_member(self);
        }
    }
}

impl Shared {
    /// Helper callback: one requested token arrived (or the read failed).
    fn on_token(&self, token: io::Result<jobserver::Acquired>) {
        let mut state = self.state.lock();
        state.requested = state.requested.saturating_sub(1);
        match token {
            Ok(token) if !state.unlimited && state.waiting > state.spare.len() => {
                state.spare.push(token);
                self.cvar.notify_one();
            }
            Ok(surplus) => {
                drop(state);
                // Written back to the pipe, outside the lock.
                drop(surplus);
            }
            Err(err) => {
                // A closed or broken pipe: waiters must not wait forever.
                state.unlimited = true;
                self.cvar.notify_all();
                drop(state);
                warn_broken_runtime(&err);
            }
        }
    }
}

/// The jobserver side of a limited `Tokens`.
#[derive(Debug)]
struct Limited {
    /// A clone of the client, for non-blocking reads in `acquire`.
    client: jobserver::Client,
    /// `client.try_acquire()` works (our own file description on Linux).
    try_supported: AtomicBool,
    /// Reads tokens on request. `Option` so that `Drop` can stop it first.
    helper: Mutex<Option<jobserver::HelperThread>>,
}

/// Job tokens of one runtime: which workers may be busy. `Send + Sync`.
///
/// The scheduler calls [`Tokens::acquire`] before a worker runs work and
/// [`Tokens::release`] when it parks idle (and, in threads mode, before it
/// blocks on a latch). See the module doc for the protocol.
#[derive(Debug)]
pub(crate) struct Tokens {
    shared: Arc<Shared>,
    /// `None`: no token limit (disabled, or no usable jobserver).
    limited: Option<Limited>,
    /// Mirror of `State::logging` for the lock-free fast path when disabled.
    logging: AtomicBool,
    /// Per worker: it went through `acquire` and not yet through `release`.
    /// Read and written only by that worker (Relaxed), so the common calls
    /// (acquire while busy, release while idle) take no lock.
    busy: Box<[CachePadded<AtomicBool>]>,
}

impl Tokens {
    /// Reads the configuration for a runtime of `workers` workers.
    ///
    /// [`Jobserver::FromEnv`] uses the process-wide client of
    /// [`Jobserver::init_from_env`] (read on first use, warning once when
    /// broken). If the helper thread cannot be started, warns and runs
    /// without a limit.
    pub(crate) fn new(config: Jobserver, workers: usize) -> Tokens {
        let (client, implicit) = match config {
            Jobserver::FromEnv => (
                env_client(),
                ENV_IMPLICIT.get_or_init(ImplicitSlot::new).clone(),
            ),
            Jobserver::Disabled => (None, ImplicitSlot::new()),
            Jobserver::Client(client) => (Some(client), ImplicitSlot::new()),
        };
        Tokens::with_slot(client, implicit, workers)
    }

    /// `new` with the implicit-token slot given (tests share one).
    fn with_slot(
        client: Option<jobserver::Client>,
        implicit: Arc<ImplicitSlot>,
        workers: usize,
    ) -> Tokens {
        let shared = Arc::new(Shared {
            implicit,
            state: Mutex::new(State {
                held: (0..workers).map(|_| Held::Idle).collect(),
                spare: Vec::new(),
                waiting: 0,
                requested: 0,
                unlimited: client.is_none(),
                logging: false,
                busy_since: vec![None; workers],
                log: Vec::new(),
            }),
            cvar: Condvar::new(),
        });
        let limited = client.and_then(|client| {
            let weak = Arc::downgrade(&shared);
            let helper = client.clone().into_helper_thread(move |token| {
                match weak.upgrade() {
                    Some(shared) => shared.on_token(token),
                    // Tokens is gone: a token read now goes straight back.
                    None => drop(token),
                }
            });
            match helper {
                Ok(helper) => {
                    let mut members = shared.implicit.members.lock();
                    members.retain(|m| m.strong_count() > 0);
                    members.push(Arc::downgrade(&shared));
                    drop(members);
                    Some(Limited {
                        client,
                        try_supported: AtomicBool::new(true),
                        helper: Mutex::new(Some(helper)),
                    })
                }
                Err(err) => {
                    eprintln!(
                        "weft: warning: cannot start the jobserver helper thread ({err}); \
                         running with -j workers"
                    );
                    shared.state.lock().unlimited = true;
                    None
                }
            }
        });
        Tokens {
            shared,
            limited,
            logging: AtomicBool::new(false),
            busy: (0..workers)
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Whether worker `worker` is busy (holds a token or the implicit slot).
    /// Only meaningful on the worker's own thread.
    pub(crate) fn is_busy(&self, worker: usize) -> bool {
        // Relaxed: only `worker` itself writes its flag.
        self.busy[worker].load(Ordering::Relaxed)
    }

    /// Called by worker `worker` before it runs work (a task or a woken
    /// fiber) when it does not hold a token. Blocks until the worker may be
    /// busy: the implicit slot if free, else a spare token, else a byte read
    /// without blocking, else a token the helper thread reads for it.
    ///
    /// No-op when the worker already holds a slot, or when there is no limit.
    /// Returns without a token (the worker counts as busy, unlimited) once
    /// [`Tokens::shutdown`] ran or the jobserver broke. The caller must hold
    /// no scheduler lock.
    pub(crate) fn acquire(&self, worker: usize) {
        // Relaxed: only `worker` itself touches its flag.
        if self.busy[worker].load(Ordering::Relaxed) {
            return;
        }
        self.acquire_slow(worker);
        self.busy[worker].store(true, Ordering::Relaxed);
    }

    fn acquire_slow(&self, worker: usize) {
        let Some(limited) = &self.limited else {
            // Relaxed: the busy log is diagnostics; a worker that misses a
            // just-enabled flag records from its next acquire on.
            if self.logging.load(Ordering::Relaxed) {
                let mut state = self.shared.state.lock();
                if matches!(state.held[worker], Held::Idle) {
                    state.become_busy(worker, Held::Unlimited);
                }
            }
            return;
        };
        let mut state = self.shared.state.lock();
        if !matches!(state.held[worker], Held::Idle)
            || state.try_take_slot(worker, &self.shared.implicit)
        {
            return;
        }
        // Relaxed: a hint; a stale `true` costs one failed syscall.
        if limited.try_supported.load(Ordering::Relaxed) {
            drop(state);
            let token = limited.client.try_acquire();
            state = self.shared.state.lock();
            match token {
                Ok(Some(token)) => {
                    if state.unlimited {
                        // Shutdown or breakage while we read: no token needed.
                        state.become_busy(worker, Held::Unlimited);
                        drop(state);
                        drop(token);
                    } else {
                        state.become_busy(worker, Held::Token(token));
                    }
                    return;
                }
                Ok(None) => {}
                Err(_) => limited.try_supported.store(false, Ordering::Relaxed),
            }
            // The lock was dropped: a slot may have come free meanwhile.
            if state.try_take_slot(worker, &self.shared.implicit) {
                return;
            }
        }
        state.waiting += 1;
        if state.requested < state.waiting {
            state.requested += 1;
            // The helper's own lock is never held while it calls `on_token`,
            // so taking it under ours cannot deadlock.
            if let Some(helper) = limited.helper.lock().as_ref() {
                helper.request_token();
            }
        }
        while !state.try_take_slot(worker, &self.shared.implicit) {
            self.shared.cvar.wait(&mut state);
        }
        state.waiting -= 1;
    }

    /// Called when worker `worker` parks idle, and in threads mode before it
    /// blocks on a latch: hands its token to a waiting worker, or back to the
    /// jobserver, or frees the implicit slot. No-op if it holds nothing.
    pub(crate) fn release(&self, worker: usize) {
        // Relaxed: only `worker` itself touches its flag.
        if self.busy[worker].swap(false, Ordering::Relaxed) {
            self.release_slow(worker);
        }
    }

    fn release_slow(&self, worker: usize) {
        if self.limited.is_none() && !self.logging.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.shared.state.lock();
        let held = std::mem::take(&mut state.held[worker]);
        if matches!(held, Held::Idle) {
            return;
        }
        state.end_busy(worker);
        match held {
            Held::Idle | Held::Unlimited => {}
            Held::Implicit => self.shared.free_implicit(state),
            Held::Token(token) => {
                if !state.unlimited && state.waiting > state.spare.len() {
                    // Hand over directly: no pipe round trip.
                    state.spare.push(token);
                    self.shared.cvar.notify_one();
                } else {
                    drop(state);
                    // Written back to the pipe, outside the lock.
                    drop(token);
                }
            }
        }
    }

    /// Ends every wait in [`Tokens::acquire`] (they return unlimited) and
    /// lifts the limit for the rest of this runtime's life. Called by the
    /// registry when it shuts down; idempotent.
    pub(crate) fn shutdown(&self) {
        let mut state = self.shared.state.lock();
        state.unlimited = true;
        let spare = std::mem::take(&mut state.spare);
        self.shared.cvar.notify_all();
        drop(state);
        drop(spare);
    }

    /// Starts recording busy intervals (from each worker's next acquire on).
    pub(crate) fn enable_busy_log(&self) {
        self.shared.state.lock().logging = true;
        self.logging.store(true, Ordering::Relaxed);
    }

    /// Busy intervals recorded so far, as `(worker, start_ns, end_ns)` in
    /// `CLOCK_MONOTONIC` nanoseconds (comparable across processes), sorted
    /// by start. An interval still open ends at the time of this call.
    pub(crate) fn busy_intervals(&self) -> Vec<(usize, u64, u64)> {
        let state = self.shared.state.lock();
        let now = monotonic_ns();
        let mut log = state.log.clone();
        log.extend(
            state
                .busy_since
                .iter()
                .enumerate()
                .filter_map(|(w, start)| start.map(|s| (w, s, now))),
        );
        log.sort_by_key(|&(w, start, _)| (start, w));
        log
    }
}

impl Drop for Tokens {
    /// Stops the helper thread, then writes every token this runtime still
    /// holds back to the jobserver.
    fn drop(&mut self) {
        self.shutdown();
        if let Some(limited) = &self.limited {
            // Joins the helper (interrupting a blocked read with SIGUSR1); a
            // token it reads meanwhile goes back through `on_token`.
            // (Taken out first: the join must not run under `helper`'s lock.)
            let helper = limited.helper.lock().take();
            drop(helper);
        }
        let mut state = self.shared.state.lock();
        let held = std::mem::take(&mut state.held);
        let spare = std::mem::take(&mut state.spare);
        drop(state);
        // Pipe tokens go back when dropped; the implicit token is marked free
        // for the other runtimes of this process.
        if held.iter().any(|h| matches!(h, Held::Implicit)) {
            self.shared.implicit.put_back();
            self.shared.implicit.wake_member(&self.shared);
        }
        drop(held);
        drop(spare);
        self.shared
            .implicit
            .members
            .lock()
            .retain(|m| m.strong_count() > 0 && !std::ptr::eq(m.as_ptr(), &*self.shared));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn count(client: &jobserver::Client) -> usize {
        client.available().unwrap()
    }

    #[test]
    fn disabled_never_blocks() {
        let tokens = Tokens::new(Jobserver::Disabled, 4);
        for w in 0..4 {
            tokens.acquire(w);
        }
        for w in 0..4 {
            tokens.release(w);
        }
        assert!(tokens.busy_intervals().is_empty());
    }

    #[test]
    fn disabled_logs_when_enabled() {
        let tokens = Tokens::new(Jobserver::Disabled, 2);
        tokens.enable_busy_log();
        tokens.acquire(0);
        tokens.acquire(1);
        tokens.release(0);
        tokens.release(0);
        let log = tokens.busy_intervals();
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn implicit_then_pipe_tokens() {
        let client = jobserver::Client::new(2).unwrap();
        let tokens = Tokens::new(Jobserver::Client(client.clone()), 4);
        tokens.acquire(0); // implicit
        assert_eq!(count(&client), 2);
        tokens.acquire(1);
        tokens.acquire(2);
        assert_eq!(count(&client), 0);
        tokens.release(1);
        tokens.release(1); // double release is a no-op
        assert_eq!(count(&client), 1);
        tokens.release(0);
        tokens.release(2);
        assert_eq!(count(&client), 2);
        drop(tokens);
        assert_eq!(count(&client), 2);
    }

    #[test]
    fn never_more_busy_than_tokens() {
        let client = jobserver::Client::new(1).unwrap();
        let tokens = Arc::new(Tokens::new(Jobserver::Client(client.clone()), 6));
        let busy = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|w| {
                let (tokens, busy, max) = (tokens.clone(), busy.clone(), max.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        tokens.acquire(w);
                        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        std::hint::spin_loop();
                        busy.fetch_sub(1, Ordering::SeqCst);
                        tokens.release(w);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(max.load(Ordering::SeqCst) <= 2, "{max:?}");
        drop(tokens);
        // Surplus tokens read by the helper are written back before drop ends.
        assert_eq!(count(&client), 1);
    }

    #[test]
    fn shutdown_wakes_waiters_and_drop_returns_tokens() {
        let client = jobserver::Client::new(0).unwrap();
        let tokens = Arc::new(Tokens::new(Jobserver::Client(client.clone()), 2));
        tokens.acquire(0); // implicit
        let t2 = tokens.clone();
        let waiter = std::thread::spawn(move || t2.acquire(1));
        std::thread::sleep(Duration::from_millis(50));
        tokens.shutdown();
        waiter.join().unwrap();
        drop(tokens);
        assert_eq!(count(&client), 0);
    }

    #[test]
    fn drop_while_helper_reads() {
        let client = jobserver::Client::new(0).unwrap();
        let tokens = Arc::new(Tokens::new(Jobserver::Client(client.clone()), 2));
        tokens.acquire(0);
        let t2 = tokens.clone();
        let waiter = std::thread::spawn(move || t2.acquire(1));
        std::thread::sleep(Duration::from_millis(50));
        tokens.shutdown();
        waiter.join().unwrap();
        drop(tokens); // the helper is blocked in read(): interrupted, joined
        client.release_raw().unwrap();
        assert_eq!(count(&client), 1);
    }

    #[test]
    fn two_runtimes_share_the_implicit_token() {
        // As two `FromEnv` runtimes in one process: one implicit token.
        let client = jobserver::Client::new(0).unwrap();
        let slot = ImplicitSlot::new();
        let a = Arc::new(Tokens::with_slot(Some(client.clone()), slot.clone(), 2));
        let b = Arc::new(Tokens::with_slot(Some(client.clone()), slot, 2));
        a.acquire(0); // the implicit token
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || b2.acquire(0));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "b got a slot while a holds the only one"
        );
        a.release(0); // frees the implicit token: wakes b's waiter
        waiter.join().unwrap();
        let a2 = a.clone();
        let waiter = std::thread::spawn(move || a2.acquire(1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(b); // b's worker still held it: dropping b frees it
        waiter.join().unwrap();
        a.release(1);
        drop(a);
        assert_eq!(count(&client), 0);
    }

    #[test]
    fn waiter_gets_a_token_from_the_pipe() {
        let client = jobserver::Client::new(0).unwrap();
        let tokens = Arc::new(Tokens::new(Jobserver::Client(client.clone()), 2));
        tokens.acquire(0);
        let t2 = tokens.clone();
        let waiter = std::thread::spawn(move || t2.acquire(1));
        std::thread::sleep(Duration::from_millis(20));
        client.release_raw().unwrap(); // another process returns a token
        waiter.join().unwrap();
        assert_eq!(count(&client), 0);
        tokens.release(1);
        tokens.release(0);
        assert_eq!(count(&client), 1);
    }
}
