//! `weft synth` prints the same checksum in every mode and at every `-j`
//! (acceptance 5 of issue 6), for every shape.
//!
//! ```text
//!   shape × mode {serial, threads, fibers} × -j {1, 2, 4, 8}
//!     └─ weft synth --shape S --nodes 64 --work-us 20 --mode M -j J
//!          stdout: "checksum: 0x…"  ── all equal per shape
//! ```
//!
//! Every child runs under a timeout: a hang fails the test.

use std::process::{Command, Output};
use std::time::Duration;

mod common;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` to completion under `TIMEOUT` (see `common`).
fn run_with_timeout(cmd: Command) -> Output {
    common::run_with_timeout(cmd, TIMEOUT)
}

fn weft() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    // No jobserver from the test runner: every run gets its `-j` workers.
    for var in ["CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS"] {
        cmd.env_remove(var);
    }
    cmd
}

fn checksum(shape: &str, mode: &str, jobs: usize) -> String {
    let mut cmd = weft();
    cmd.args([
        "synth",
        "--shape",
        shape,
        "--nodes",
        "64",
        "--work-us",
        "20",
    ])
    .args(["--seed", "3", "--mode", mode, "-j", &jobs.to_string()]);
    let out = run_with_timeout(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "weft synth --shape {shape} --mode {mode} -j {jobs} failed: {:?}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("checksum: 0x"),
        "unexpected stdout {stdout:?}"
    );
    stdout
}

#[test]
fn same_checksum_in_every_mode_and_thread_count() {
    for shape in ["chain", "fan-in", "diamond", "layered", "random"] {
        let expected = checksum(shape, "serial", 1);
        for mode in ["serial", "threads", "fibers"] {
            if mode == "fibers" && !cfg!(feature = "fibers") {
                continue;
            }
            for jobs in [1, 2, 4, 8] {
                assert_eq!(
                    checksum(shape, mode, jobs),
                    expected,
                    "shape {shape}, mode {mode}, -j {jobs}"
                );
            }
        }
    }
}

#[test]
fn shapes_have_distinct_checksums() {
    let sums: Vec<String> = ["chain", "fan-in", "diamond", "layered", "random"]
        .iter()
        .map(|s| checksum(s, "serial", 1))
        .collect();
    for (i, a) in sums.iter().enumerate() {
        for b in &sums[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
