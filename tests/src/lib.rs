//! Shared helpers for Weft's integration tests (`tests/tests/*.rs`).
//!
//! - [`configs`] and [`for_each_config`]: every `(mode, worker count)` a
//!   scenario runs in — [`Mode::ALL`] × [`THREADS`], serial mode only at one
//!   worker, and fibers mode only when this crate is built with its `fibers`
//!   feature (so `cargo test -p weft-tests --no-default-features` passes).
//!   Each configuration runs under [`with_timeout`], so a deadlock fails the
//!   test with the configuration's name instead of hanging CI.
//! - [`Signal`] (`signal(n)` / `wait_for(n)`, as salsa's `tests/parallel/`
//!   use) and [`Arrivals`]: barriers built on [`weft_runtime::Latch`], so a
//!   wait inside a query suspends the fiber (fibers mode) or blocks the thread
//!   (threads mode) — never a std primitive that would pin a fiber's worker.
//! - [`can_wait_concurrently`]: whether a configuration can keep `n` waiting
//!   tasks in progress at once; a scenario forces its interleaving only there.
//! - [`quiet_injected_panics`], [`inject_panic`], [`panic_message`]: panics
//!   that tests inject on purpose, without thousands of lines of noise.
//! - [`with_timeout_named`] and [`try_with_timeout`]: [`with_timeout`] with a
//!   label, and a variant that reports a hang instead of failing (soak).
//! - [`dag`]: random query DAGs with injected panics and cycles, run on a
//!   fresh engine and compared against serial mode.

pub mod dag;

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::Duration;

use weft_queries::QueryError;
use weft_runtime::{Jobserver, Latch, Mode, Runtime};

/// Worker counts every scenario runs at (serial mode only at 1).
pub const THREADS: [usize; 3] = [1, 2, 4];

/// Seconds one configuration of a scenario may take before [`for_each_config`]
/// declares it hung; `WEFT_TEST_TIMEOUT_SECS` overrides it.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// Marker at the start of every panic message a test injects on purpose; the
/// hook installed by [`quiet_injected_panics`] does not print those.
pub const INJECTED: &str = "injected panic";

/// One configuration a scenario runs in: a mode and a worker count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How tasks run: fibers, blocking threads, or serially.
    pub mode: Mode,
    /// Number of workers (always 1 in serial mode).
    pub threads: usize,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mode, self.threads)
    }
}

impl Config {
    /// Builds a runtime for this configuration, with the jobserver disabled
    /// (a `MAKEFLAGS` inherited from CI must not limit the workers a scenario
    /// relies on). Panics with the configuration's name when building fails.
    pub fn runtime(self) -> Runtime {
        runtime(self.mode, self.threads)
    }
}

/// The modes this build can run: [`Mode::ALL`], without [`Mode::Fibers`]
/// when the crate is built without its `fibers` feature.
pub fn modes() -> Vec<Mode> {
    Mode::ALL
        .into_iter()
        .filter(|&mode| mode != Mode::Fibers || cfg!(feature = "fibers"))
        .collect()
}

/// Every configuration of the acceptance matrix: each of [`modes`] at each of
/// [`THREADS`], serial mode at 1 worker only.
pub fn configs() -> Vec<Config> {
    let mut out = Vec::new();
    for mode in modes() {
        let counts: &[usize] = if mode == Mode::Serial { &[1] } else { &THREADS };
        for &threads in counts {
            out.push(Config { mode, threads });
        }
    }
    out
}

/// Builds a runtime in `mode` with `threads` workers and no jobserver.
pub fn runtime(mode: Mode, threads: usize) -> Runtime {
    Runtime::builder()
        .mode(mode)
        .threads(threads)
        .jobserver(Jobserver::Disabled)
        .build()
        .unwrap_or_else(|e| panic!("[{mode}/{threads}] building the runtime failed: {e}"))
}

/// The per-configuration timeout: `WEFT_TEST_TIMEOUT_SECS` or
/// [`DEFAULT_TIMEOUT_SECS`].
pub fn timeout_secs() -> u64 {
    std::env::var("WEFT_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_SECS)
}

/// Runs `f(mode, threads)` for every configuration in [`configs`], each under
/// [`with_timeout`] with [`timeout_secs`], and returns the results in order.
/// A panic or a timeout fails the test with the configuration in its message.
pub fn for_each_config<R, F>(f: F) -> Vec<(Config, R)>
where
    F: Fn(Mode, usize) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    for_configs(configs(), f)
}

/// [`for_each_config`] over an explicit list of configurations (a scenario
/// that needs at least two workers, say).
pub fn for_configs<R, F>(list: impl IntoIterator<Item = Config>, f: F) -> Vec<(Config, R)>
where
    F: Fn(Mode, usize) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    let f = Arc::new(f);
    let secs = timeout_secs();
    list.into_iter()
        .map(|config| {
            let f = Arc::clone(&f);
            let result = run_with_timeout(&config.to_string(), secs, move || {
                f(config.mode, config.threads)
            });
            (config, result)
        })
        .collect()
}

/// Runs `f` on a fresh thread and returns its result; panics (failing the
/// test) if `f` panics — with its message — or does not finish within `secs`
/// seconds, so a deadlock fails instead of hanging CI. A hung thread is left
/// behind; the test binary exits anyway when its tests are done.
pub fn with_timeout<R, F>(secs: u64, f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    run_with_timeout("test", secs, f)
}

/// [`with_timeout`] with a label of the caller's choice (a configuration
/// and a seed, say) at the start of the failure message.
pub fn with_timeout_named<R, F>(label: &str, secs: u64, f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    run_with_timeout(label, secs, f)
}

/// Runs `f` on a fresh thread named after `label` and waits at most `secs`
/// seconds for it: `Some(Ok(value))` when it returned, `Some(Err(payload))`
/// when it panicked, `None` when it did not finish in time (the thread is
/// left behind, as with [`with_timeout`]). For loops that count hangs
/// instead of failing at the first one (the soak test).
pub fn try_with_timeout<R, F>(label: &str, secs: u64, f: F) -> Option<thread::Result<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(format!("weft-test {label}"))
        .spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(f));
            // The receiver is gone only after a timeout: nobody to tell.
            let _ = tx.send(result);
        })
        .expect("spawning the test thread");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(result) => {
            handle.join().expect("the test thread exits after sending");
            Some(result)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("[{label}] the test thread died without a result")
        }
    }
}

fn run_with_timeout<R, F>(label: &str, secs: u64, f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match try_with_timeout(label, secs, f) {
        Some(Ok(value)) => value,
        Some(Err(payload)) => panic!("[{label}] {}", panic_message(&*payload)),
        None => {
            panic!("[{label}] did not finish within {secs} s: deadlock (or a lost wake-up)?")
        }
    }
}

/// Whether a configuration can have `tasks` tasks in progress at once while
/// each of them waits on a [`Latch`]: always with fibers (a waiting fiber
/// frees its worker), with at least `tasks` workers in threads mode (a waiting
/// task blocks its thread), and only a single task in serial mode.
///
/// Scenarios force their interleaving with latches only where this holds;
/// elsewhere the same program runs unforced (serial mode: in program order).
pub fn can_wait_concurrently(mode: Mode, threads: usize, tasks: usize) -> bool {
    match mode {
        Mode::Fibers => true,
        Mode::Threads => threads >= tasks,
        Mode::Serial => tasks <= 1,
    }
}

/// How many tasks of a `par_for_each` can surely be in progress at once
/// while the ones that started wait on a latch: all `items` with fibers;
/// in threads mode the workers other than the one whose caller may block in
/// `par_for_each` (at least 1); 1 in serial mode.
pub fn concurrent_items(mode: Mode, threads: usize, items: usize) -> usize {
    match mode {
        Mode::Fibers => items,
        Mode::Threads => threads.saturating_sub(1).clamp(1, items.max(1)),
        Mode::Serial => 1,
    }
}

/// Numbered stages that tasks announce and wait for, as salsa's parallel
/// tests do with `signal(n)` / `wait_for(n)`. Stages are monotone:
/// `signal(3)` also reaches stages 1 and 2; stage 0 is always reached.
///
/// Waits go through [`Latch::wait`], so inside a runtime a waiting fiber
/// suspends (and a waiting thread blocks) instead of spinning.
#[derive(Clone)]
pub struct Signal {
    stages: Arc<Vec<Latch>>,
}

impl Default for Signal {
    fn default() -> Self {
        Signal::new(16)
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reached = (1..=self.stages.len())
            .take_while(|&n| self.reached(n))
            .last()
            .unwrap_or(0);
        f.debug_struct("Signal").field("reached", &reached).finish()
    }
}

impl Signal {
    /// A signal with stages `1..=stages` (plus the always-reached stage 0).
    pub fn new(stages: usize) -> Self {
        Signal {
            stages: Arc::new((0..stages).map(|_| Latch::new()).collect()),
        }
    }

    /// Marks `stage` (and every stage below it) as reached, waking waiters.
    pub fn signal(&self, stage: usize) {
        assert!(stage <= self.stages.len(), "stage {stage} out of range");
        for latch in &self.stages[..stage] {
            latch.set();
        }
    }

    /// Waits until `stage` has been reached (runtime-aware: see [`Signal`]).
    pub fn wait_for(&self, stage: usize) {
        assert!(stage <= self.stages.len(), "stage {stage} out of range");
        if stage > 0 {
            self.stages[stage - 1].wait();
        }
    }

    /// Whether `stage` has been reached, without waiting.
    pub fn reached(&self, stage: usize) -> bool {
        stage == 0 || self.stages[stage - 1].probe()
    }
}

/// Counts tasks that reached a point; [`Arrivals::wait_all`] waits (through a
/// [`Latch`]) until `target` of them have.
pub struct Arrivals {
    count: AtomicUsize,
    target: usize,
    all: Latch,
}

impl fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arrivals")
            .field("count", &self.count())
            .field("target", &self.target)
            .finish()
    }
}

impl Arrivals {
    /// Expects `target` arrivals; a target of 0 is reached at once.
    pub fn new(target: usize) -> Self {
        let all = Latch::new();
        if target == 0 {
            all.set();
        }
        Arrivals {
            count: AtomicUsize::new(0),
            target,
            all,
        }
    }

    /// Records one arrival and returns how many have arrived, this one included.
    pub fn arrive(&self) -> usize {
        // SeqCst: the count is only read for assertions; the latch orders
        // the wake-up itself.
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.target {
            self.all.set();
        }
        n
    }

    /// Waits until `target` tasks have arrived.
    pub fn wait_all(&self) {
        self.all.wait();
    }

    /// How many tasks have arrived so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The number of arrivals [`Arrivals::wait_all`] waits for.
    pub fn target(&self) -> usize {
        self.target
    }
}

/// Panics with a message that starts with [`INJECTED`], which
/// [`quiet_injected_panics`] keeps off stderr.
pub fn inject_panic(what: impl fmt::Display) -> ! {
    panic!("{INJECTED}: {what}")
}

/// The message of a panic payload: a `&str` or `String` payload as is, a
/// [`QueryError`] payload (an error unwinding through `Cx::get`) by its
/// `Display`, anything else as `<non-string panic payload>`.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(e) = payload.downcast_ref::<QueryError>() {
        e.to_string()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Installs (once per process) a panic hook that stays silent for panics a
/// test injects on purpose (messages starting with [`INJECTED`]) and for
/// [`QueryError`] payloads unwinding through `Cx::get`; every other panic is
/// printed by the previous hook as usual.
pub fn quiet_injected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let injected = payload.downcast_ref::<QueryError>().is_some()
                || panic_message(payload).starts_with(INJECTED);
            if !injected {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_cover_the_matrix() {
        let all = configs();
        let expect_fibers = cfg!(feature = "fibers");
        let count = |mode| all.iter().filter(|c| c.mode == mode).count();
        assert_eq!(count(Mode::Threads), 3);
        assert_eq!(count(Mode::Serial), 1);
        assert_eq!(count(Mode::Fibers), if expect_fibers { 3 } else { 0 });
        assert!(all.iter().all(|c| c.mode != Mode::Serial || c.threads == 1));
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in Mode::ALL {
            let name = mode.to_string();
            assert_eq!(name.parse::<Mode>().ok(), Some(mode), "{name}");
        }
        assert_eq!("fibers".parse::<Mode>().ok(), Some(Mode::Fibers));
        assert_eq!("threads".parse::<Mode>().ok(), Some(Mode::Threads));
        assert_eq!("serial".parse::<Mode>().ok(), Some(Mode::Serial));
        assert!("coroutines".parse::<Mode>().is_err());
    }

    #[test]
    fn every_buildable_config_builds_and_reports_itself() {
        for config in configs() {
            let rt = config.runtime();
            assert_eq!(rt.mode(), config.mode, "{config}");
            assert_eq!(rt.num_threads(), config.threads, "{config}");
            let seen = rt.block_on(weft_runtime::current_mode);
            assert_eq!(seen, Some(config.mode), "{config}");
        }
    }

    #[test]
    fn with_timeout_returns_the_value() {
        assert_eq!(with_timeout(10, || 7), 7);
    }

    #[test]
    #[should_panic(expected = "did not finish within 1 s")]
    fn with_timeout_fails_a_hang() {
        with_timeout(1, || Latch::new().wait());
    }

    #[test]
    #[should_panic(expected = "[test] boom")]
    fn with_timeout_reports_a_panic() {
        with_timeout(10, || panic!("boom"));
    }

    #[test]
    fn signal_stages_are_monotone() {
        let s = Signal::new(4);
        assert!(s.reached(0) && !s.reached(1));
        s.signal(3);
        assert!(s.reached(1) && s.reached(2) && s.reached(3) && !s.reached(4));
        s.wait_for(2); // reached: returns at once
    }

    #[test]
    fn arrivals_open_at_target() {
        let a = Arrivals::new(2);
        assert_eq!(a.arrive(), 1);
        assert!(!a.all.probe());
        assert_eq!(a.arrive(), 2);
        assert!(a.all.probe());
        a.wait_all();
    }

    /// Without the `fibers` feature, `Mode::Fibers` is refused with a clear
    /// error instead of silently running in another mode.
    #[cfg(not(feature = "fibers"))]
    #[test]
    fn fibers_mode_is_refused_without_the_feature() {
        let err = Runtime::builder()
            .mode(Mode::Fibers)
            .threads(2)
            .jobserver(Jobserver::Disabled)
            .build()
            .expect_err("Mode::Fibers must not build without the `fibers` feature");
        assert!(
            matches!(err, weft_runtime::BuildError::FibersUnavailable),
            "unexpected error: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("fibers"), "unclear message: {message}");
        assert_ne!(Mode::default_for_platform(), Mode::Fibers);
    }

    /// With the feature, fibers mode builds.
    #[cfg(feature = "fibers")]
    #[test]
    fn fibers_mode_builds_with_the_feature() {
        let rt = runtime(Mode::Fibers, 2);
        assert_eq!(rt.mode(), Mode::Fibers);
        assert_eq!(rt.block_on(|| 40 + 2), 42);
    }
}
