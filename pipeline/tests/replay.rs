//! `weft replay` on a real rustc self-profile (issue 11, acceptance 1).
//!
//! The fixture `fixtures/replay/scopeguard.mm_profdata.gz` is rustc's own
//! profile of `cargo +nightly check` of `scopeguard` 1.2 (recorded here with
//! `bench/replay/record.sh`): 4,596 query executions, 53,924 cache hits,
//! 44 ms of recorded self time.
//!
//! ```text
//!   fixture ── weft replay --export ──► graph.bin
//!   graph.bin × policy {recorded, sites, dataflow}
//!             × mode {serial, threads, fibers} × -j {1, 2, 4}
//!     └─ weft replay graph.bin --check --scale 0.25
//!          stdout: "checksum: 0x…"  ── all equal, and equal to the raw
//!          stderr: "check: ok …"       fixture's replay
//! ```
//!
//! Every `--check` line but the serial wall time must be `ok`; the wall
//! time is a measurement (it depends on the machine and on the build), so
//! it is printed, never asserted. Every child runs under a timeout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod common;

const TIMEOUT: Duration = Duration::from_secs(120);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/scopeguard.mm_profdata.gz")
}

fn weft(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    for var in ["CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS"] {
        cmd.env_remove(var);
    }
    cmd.arg("replay").args(args);
    common::run_with_timeout(cmd, TIMEOUT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `weft replay ARGS --check`; asserts success apart from the serial
/// wall time, and returns stdout.
fn replay_checked(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--check");
    let out = weft(&all);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let checks: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("check: "))
        .collect();
    assert_eq!(checks.len(), 6, "weft replay {all:?}: stderr:\n{stderr}");
    for line in &checks {
        assert!(
            line.starts_with("check: ok") || line.contains("serial replay wall"),
            "weft replay {all:?}: {line}\nstderr:\n{stderr}"
        );
    }
    let wall_failed = checks.iter().any(|l| l.starts_with("check: FAIL"));
    assert_eq!(
        out.status.success(),
        !wall_failed,
        "weft replay {all:?}: exit status {:?} does not match the checks\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.starts_with("checksum: 0x"), "stdout {stdout:?}");
    stdout
}

#[test]
fn fixture_replays_to_one_checksum_in_every_mode_policy_and_thread_count() {
    let dir = std::env::temp_dir().join(format!("weft-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let graph = dir.join("scopeguard.bin");
    let fixture = fixture();
    let out = weft(&[
        fixture.to_str().unwrap(),
        "--export",
        graph.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "export: {}", text(&out.stderr));
    let graph = graph.to_str().unwrap();

    // The raw profile, read through analyzeme, is the reference.
    let expected = replay_checked(&[fixture.to_str().unwrap(), "--mode", "serial"]);
    for policy in ["recorded", "sites", "dataflow"] {
        for mode in ["serial", "threads", "fibers"] {
            if mode == "fibers" && !cfg!(feature = "fibers") {
                continue;
            }
            for jobs in ["1", "2", "4"] {
                let args = [
                    graph, "--policy", policy, "--mode", mode, "-j", jobs, "--scale", "0.25",
                ];
                assert_eq!(
                    replay_checked(&args),
                    expected,
                    "policy {policy}, mode {mode}, -j {jobs}"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_output_is_deterministic_and_names_the_crate() {
    let fixture = fixture();
    let run = |mode: &str, policy: &str| {
        let out = weft(&[
            fixture.to_str().unwrap(),
            "--format",
            "json",
            "--scale",
            "0.1",
            "--mode",
            mode,
            "-j",
            "2",
            "--policy",
            policy,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v
    };
    let serial = run("serial", "dataflow");
    assert_eq!(serial["crate"], "scopeguard");
    assert_eq!(serial["profile"]["query_events"], 4596);
    assert_eq!(serial["profile"]["hit_events"], 53924);
    assert_eq!(serial, run("threads", "dataflow"));
    let recorded = run("threads", "recorded");
    assert_eq!(recorded["checksum"], serial["checksum"]);
    // A serial policy has no parallelism; dataflow has some.
    assert_eq!(recorded["t1_ns"], recorded["tinf_ns"]);
    assert!(serial["tinf_ns"].as_u64() < serial["t1_ns"].as_u64());
}

#[test]
fn sites_listing_names_rustc_parallel_loops() {
    let fixture = fixture();
    let out = weft(&[fixture.to_str().unwrap(), "--sites"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l[5..].starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{stdout}"))
            .to_owned()
    };
    assert!(line("MIR_borrow_checking").starts_with("site"));
    assert!(line("MIR_borrow_checking").contains("mir_borrowck"));
    assert!(line("type_check_crate").starts_with("site"));
}

#[test]
fn bad_input_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("weft-replay-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.mm_profdata");
    std::fs::write(&garbage, b"this is not a profile").unwrap();
    let truncated = dir.join("truncated.mm_profdata.gz");
    let gz = std::fs::read(fixture()).unwrap();
    std::fs::write(&truncated, &gz[..gz.len() / 3]).unwrap();
    let bad_graph = dir.join("bad.bin");
    std::fs::write(&bad_graph, b"WEFTRPG1\x1f\x8b garbage").unwrap();
    let missing = dir.join("missing");
    for (path, words) in [
        (&garbage, "not a rustc self-profile"),
        (&truncated, "gzip"),
        (&bad_graph, "gzip"),
        (&missing, "cannot read"),
        (&dir, "not a regular file"),
    ] {
        for mode in ["serial", "threads"] {
            let out = weft(&[path.to_str().unwrap(), "--mode", mode]);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
            assert!(stderr.contains(words), "{}: {stderr}", path.display());
            assert!(out.stdout.is_empty());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
