//! Issue 5, "never crash silently, never hang": a query whose provider
//! recurses without bound (and without `ensure_sufficient_stack`) ends the
//! process with a message that names the worker and the query, and a
//! non-zero exit status.
//!
//! ```text
//!  test (parent)                      child (this binary, re-executed)
//!  ─────────────                      ────────────────────────────────
//!  spawn child WEFT_OVERFLOW_MODE=m   Engine in mode m, get::<runaway>(0)
//!                                       runaway: recurse_forever() ... SIGSEGV
//!                                       fibers:  our handler: message, _exit(134)
//!                                       threads: our note, then std's abort
//!  assert status and stderr  ◀──────  exit
//! ```

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use std::process::Output;

use common::recurse_forever;

use weft_queries::{query, Cx, Engine};
use weft_runtime::Mode;
use weft_tests::runtime;

const CHILD_ENV: &str = "WEFT_OVERFLOW_MODE";

#[query]
fn runaway(_cx: &Cx<()>, _key: u32) -> u64 {
    recurse_forever(0)
}

/// The child side; does nothing unless started by a test below.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mode: Mode = mode.parse().unwrap();
    let engine = Engine::new(runtime(mode, 2), ());
    let _ = engine.get::<runaway>(0);
    unreachable!("the provider should have overflowed its stack");
}

fn run_child(mode: Mode) -> Output {
    common::run_child("child_entry", CHILD_ENV, &mode.to_string())
}

#[cfg(feature = "fibers")]
#[test]
fn fiber_stack_overflow_names_worker_and_query() {
    let out = run_child(Mode::Fibers);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(134), "{stderr}");
    assert!(
        stderr.contains("weft: fiber stack overflow on worker "),
        "{stderr}"
    );
    assert!(stderr.contains(" while computing runaway"), "{stderr}");
    assert!(
        stderr.contains("Runtime::builder().stack_size()"),
        "{stderr}"
    );
}

#[test]
fn thread_stack_overflow_is_reported() {
    let out = run_child(Mode::Threads);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    if cfg!(feature = "fibers") {
        // The runtime installs weft's handler, which names the query first.
        assert!(
            stderr.contains("weft: thread stack overflow on worker "),
            "{stderr}"
        );
        assert!(stderr.contains(" while computing runaway"), "{stderr}");
    }
}

#[test]
fn serial_stack_overflow_is_reported() {
    let out = run_child(Mode::Serial);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
}
