//! Shared helpers of the CLI tests: run the `weft` binary under a timeout.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest a single `weft` run may take before the test fails as a hang.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(120);

/// The modes every determinism test runs in: all three, or without the
/// `fibers` feature (`--no-default-features`) threads and serial.
pub(crate) const MODES: &[&str] = if cfg!(feature = "fibers") {
    &["fibers", "threads", "serial"]
} else {
    &["threads", "serial"]
};

/// The thread counts every determinism test runs at.
pub(crate) const JOBS: [&str; 3] = ["1", "2", "4"];

/// What one run of `weft` did.
#[derive(Debug)]
pub(crate) struct Run {
    /// Exit status (`-1` when killed by a signal).
    pub(crate) status: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

/// The `weft` binary built for this test run.
pub(crate) fn weft_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft"))
}

/// `tests/fixtures/` of the repository.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Runs `weft args...`; kills it and fails the test after [`TIMEOUT`].
pub(crate) fn weft<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let mut cmd = Command::new(weft_bin());
    cmd.args(args);
    let out = run_with_timeout(cmd, TIMEOUT);
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` (stdin closed) to completion and returns its output; kills it
/// and fails the test after `timeout`, so a hang is a failure. stdout and
/// stderr are read on their own threads, so a child that writes a lot never
/// blocks on a full pipe.
pub(crate) fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_t.join().unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {timeout:?} (hang?); stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

/// Runs `weft analyze <extra...> --mode m -j n` in every mode and at every
/// thread count, asserts exit status 0 and identical stdout, and returns it.
pub(crate) fn analyze_everywhere(extra: &[&str]) -> String {
    let mut first: Option<(String, String)> = None;
    for &mode in MODES {
        for jobs in JOBS {
            let mut args = vec!["analyze"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--mode", mode, "-j", jobs]);
            let run = weft(&args);
            let label = format!("--mode {mode} -j {jobs}");
            assert_eq!(
                run.status, 0,
                "{label}: exit status; stderr:\n{}",
                run.stderr
            );
            match &first {
                None => first = Some((label, run.stdout)),
                Some((first_label, expected)) => {
                    if *expected != run.stdout {
                        panic!(
                            "stdout differs between `{first_label}` and `{label}`:\n{}",
                            first_difference(expected, &run.stdout)
                        );
                    }
                }
            }
        }
    }
    first.expect("at least one run").1
}

/// The first differing line of two outputs, for failure messages.
pub(crate) fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}:\n  - {x}\n  + {y}", i + 1);
        }
    }
    format!(
        "one output is a prefix of the other ({} vs {} lines)",
        a.lines().count(),
        b.lines().count()
    )
}

/// A scratch directory for one test, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `name`.
    pub(crate) fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weft-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A path inside the directory.
    pub(crate) fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// Writes `contents` to `p` (creating parent directories).
    pub(crate) fn write(&self, p: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
