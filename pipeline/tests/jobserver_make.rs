//! Weft under a real GNU make, and the jobserver pipe's token count
//! (issue 6, acceptance 1–3).
//!
//! ```text
//!  make -j2 ──(+ recipe: pipe fds R,W, 1 token in the pipe)──► weft -j 8
//!     implicit token ─► worker a busy        busy log: never > 2 at once
//!     pipe token     ─► worker b busy        other 6 workers wait in acquire
//!
//!  make -j3 a b ─► weft (a) ─┐  2 implicit tokens + 1 pipe token:
//!               ─► weft (b) ─┘  merged busy logs never > 3 at once
//! ```
//!
//! Busy intervals are `CLOCK_MONOTONIC` nanoseconds, recorded after a worker
//! got its token and before it hands it back, so intervals from two
//! processes compare. Every child runs under a timeout: a hang fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod common;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion under `TIMEOUT` (see `common`).
fn run_with_timeout(cmd: Command) -> Output {
    common::run_with_timeout(cmd, TIMEOUT)
}

/// The modes with a worker pool this build can run: fibers (when the
/// `fibers` feature is on) and threads.
const POOL_MODES: &[&str] = if cfg!(feature = "fibers") {
    &["fibers", "threads"]
} else {
    &["threads"]
};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("weft-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn weft_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

/// Removes every variable through which the test runner (cargo) could hand
/// its own jobserver to the child.
fn scrub_env(cmd: &mut Command) {
    for var in [
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEFILES",
    ] {
        cmd.env_remove(var);
    }
}

const SYNTH: &str = "synth --shape layered --nodes 400 --work-us 300 -j 8";

/// Writes a Makefile whose targets each run `weft synth` with a busy log,
/// and runs `make -jJOBS TARGETS`.
fn run_make(dir: &Path, jobs: usize, plus: bool, targets: &[&str], mode: &str) -> Output {
    let mut makefile = String::from(".PHONY: all");
    for t in targets {
        makefile.push(' ');
        makefile.push_str(t);
    }
    makefile.push_str("\n\nall:");
    for t in targets {
        makefile.push(' ');
        makefile.push_str(t);
    }
    makefile.push('\n');
    for t in targets {
        makefile.push_str(&format!(
            "\n{t}:\n\t{}\"$(WEFT)\" {SYNTH} --mode {mode} --busy-log {t}.busy > {t}.out\n",
            if plus { "+" } else { "" }
        ));
    }
    std::fs::write(dir.join("Makefile"), makefile).unwrap();
    let mut cmd = Command::new("make");
    scrub_env(&mut cmd);
    if make_has_fifo_jobserver() {
        // GNU make ≥ 4.4 defaults to a named fifo, which a recipe without
        // `+` can still open; ask for the classic pipe these tests are about.
        cmd.arg("--jobserver-style=pipe");
    }
    cmd.current_dir(dir)
        .arg(format!("-j{jobs}"))
        .arg(format!("WEFT={}", weft_bin()))
        .arg("all");
    let out = run_with_timeout(cmd);
    assert!(
        out.status.success(),
        "make failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether `make` is GNU make 4.4 or newer (fifo jobserver by default).
fn make_has_fifo_jobserver() -> bool {
    let out = Command::new("make")
        .arg("--version")
        .output()
        .expect("GNU make must be installed for these tests");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GNU Make "))
        .unwrap_or_else(|| panic!("not GNU make: {text:?}"));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (4, 4)
}

/// Parses `worker start_ns end_ns` lines.
fn read_busy_log(path: &Path) -> Vec<(usize, u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!(f.len(), 3, "bad busy-log line {line:?}");
            assert!(f[1] <= f[2], "interval ends before it starts: {line:?}");
            (f[0] as usize, f[1], f[2])
        })
        .collect()
}

/// The largest number of intervals open at one instant. An interval that
/// ends at `t` does not overlap one that starts at `t`.
fn max_concurrency(intervals: &[(u64, u64)]) -> usize {
    let mut events: Vec<(u64, i32)> = Vec::new();
    for &(s, e) in intervals {
        events.push((s, 1));
        events.push((e, -1));
    }
    events.sort(); // -1 sorts before +1 at equal times
    let (mut now, mut max) = (0i64, 0i64);
    for (_, d) in events {
        now += i64::from(d);
        max = max.max(now);
    }
    max as usize
}

fn expected_checksum() -> String {
    let mut cmd = Command::new(weft_bin());
    scrub_env(&mut cmd);
    cmd.args(SYNTH.split(' ')).args(["--mode", "serial"]);
    let out = run_with_timeout(cmd);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn make_j2_never_more_than_two_workers_busy() {
    for &mode in POOL_MODES {
        make_j2_in_mode(mode);
    }
}

fn make_j2_in_mode(mode: &str) {
    let dir = TempDir::new("make-j2");
    let out = run_make(dir.path(), 2, true, &["a"], mode);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "unexpected warning:\n{stderr}");
    let log = read_busy_log(&dir.path().join("a.busy"));
    assert!(!log.is_empty(), "no busy intervals recorded");
    let spans: Vec<(u64, u64)> = log.iter().map(|&(_, s, e)| (s, e)).collect();
    let max = max_concurrency(&spans);
    assert!(
        max <= 2,
        "{mode}: {max} workers busy at once under make -j2"
    );
    let stdout = std::fs::read_to_string(dir.path().join("a.out")).unwrap();
    assert_eq!(stdout, expected_checksum());
}

#[test]
fn make_j3_two_processes_never_exceed_three() {
    let dir = TempDir::new("make-j3");
    run_make(dir.path(), 3, true, &["a", "b"], POOL_MODES[0]);
    let mut spans = Vec::new();
    for t in ["a", "b"] {
        let log = read_busy_log(&dir.path().join(format!("{t}.busy")));
        assert!(!log.is_empty(), "no busy intervals recorded for {t}");
        let mine: Vec<(u64, u64)> = log.iter().map(|&(_, s, e)| (s, e)).collect();
        assert!(max_concurrency(&mine) <= 3);
        spans.extend(mine);
    }
    let max = max_concurrency(&spans);
    assert!(
        max <= 3,
        "{max} workers busy at once in two processes under make -j3"
    );
}

#[test]
fn make_without_plus_warns_once_and_completes() {
    let dir = TempDir::new("make-noplus");
    let out = run_make(dir.path(), 2, false, &["a"], POOL_MODES[0]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings = stderr.matches("weft: warning").count();
    assert_eq!(warnings, 1, "expected one warning, stderr:\n{stderr}");
    assert!(stderr.contains("jobserver"), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    let stdout = std::fs::read_to_string(dir.path().join("a.out")).unwrap();
    assert_eq!(stdout, expected_checksum());
    // Without a jobserver, all `-j 8` workers exist (they may all be busy).
    let workers: std::collections::BTreeSet<usize> = read_busy_log(&dir.path().join("a.busy"))
        .iter()
        .map(|&(w, _, _)| w)
        .collect();
    assert!(workers.iter().all(|&w| w < 8), "{workers:?}");
}

/// Runs `weft` with a test-made jobserver of `tokens` tokens and checks that
/// the pipe holds as many tokens afterwards. Returns the child's output.
fn run_with_pipe(tokens: usize, args: &[&str]) -> Output {
    let client = jobserver::Client::new(tokens).expect("jobserver pipe");
    assert_eq!(client.available().unwrap(), tokens);
    let mut cmd = Command::new(weft_bin());
    scrub_env(&mut cmd);
    cmd.args(args);
    client.configure(&mut cmd);
    let out = run_with_timeout(cmd);
    assert_eq!(
        client.available().unwrap(),
        tokens,
        "tokens lost or duplicated by `weft {}`; stderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn pipe_holds_all_tokens_after_a_normal_run() {
    for &mode in POOL_MODES {
        let out = run_with_pipe(
            3,
            &[
                "synth",
                "--shape",
                "random",
                "--nodes",
                "300",
                "--work-us",
                "100",
                "-j",
                "8",
                "--mode",
                mode,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    }
}

#[test]
fn pipe_holds_all_tokens_after_a_query_panic() {
    for &mode in POOL_MODES {
        let out = run_with_pipe(
            2,
            &[
                "synth",
                "--shape",
                "fan-in",
                "--nodes",
                "100",
                "--work-us",
                "200",
                "-j",
                "6",
                "--mode",
                mode,
                "--panic-at",
                "7",
            ],
        );
        assert!(!out.status.success(), "a panicking query must fail the run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("on purpose"), "stderr:\n{stderr}");
    }
}

#[test]
fn pipe_holds_all_tokens_after_an_internal_error() {
    // The busy log cannot be written: the run fails after the graph ran.
    let out = run_with_pipe(
        2,
        &[
            "synth",
            "--shape",
            "layered",
            "--nodes",
            "100",
            "--work-us",
            "100",
            "-j",
            "4",
            "--busy-log",
            "/nonexistent-weft-dir/busy.log",
        ],
    );
    assert!(!out.status.success());
}

#[test]
fn pipe_with_no_tokens_runs_on_the_implicit_token() {
    let out = run_with_pipe(
        0,
        &[
            "synth",
            "--shape",
            "diamond",
            "--nodes",
            "50",
            "--work-us",
            "50",
            "-j",
            "4",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
