//! Shared by the stack-overflow tests (the runtime's and `weft-tests`'):
//! an unbounded recursion, and re-running this test binary as a child so
//! that a scenario that ends the process can be checked from outside.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Recurses until the stack runs out (no `ensure_sufficient_stack`): a
/// 256-byte frame per level that the optimizer can neither drop nor turn
/// into a loop.
#[inline(never)]
pub(crate) fn recurse_forever(n: u64) -> u64 {
    let frame = [n; 32];
    let first = std::hint::black_box(&frame)[0];
    if std::hint::black_box(n) == u64::MAX {
        return first;
    }
    recurse_forever(n + 1).wrapping_add(first)
}

/// Runs this test binary again with only the test `test` selected and
/// `env=value` set (the child side checks `env`), waits for it, echoes its
/// status and stderr (for the failure report) and returns its output.
///
/// # Panics
///
/// If the child cannot be started.
pub(crate) fn run_child(test: &str, env: &str, value: &str) -> Output {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, value)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    eprintln!(
        "child {env}={value}: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
