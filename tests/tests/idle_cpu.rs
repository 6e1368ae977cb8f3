//! An idle runtime does not spin (issue 6, acceptance 4; rayon#642).
//!
//! ```text
//!   build 4 workers ─► block_on(small join tree) ─► everyone parks
//!   getrusage(SELF) ─► sleep 2 s ─► getrusage(SELF): Δ(user+sys) < 1% of 2 s
//! ```
//!
//! Measured for fibers and threads mode, without a jobserver and with one
//! (the token helper thread must not spin either). One `#[test]` runs the
//! cases one after the other, so no other runtime in this process adds CPU
//! time to the measurement.

use std::time::Duration;

use weft_runtime::{Jobserver, Mode, Runtime};

/// User + system CPU time of the whole process.
fn process_cpu() -> Duration {
    // SAFETY: `usage` is zeroed plain data and `getrusage` only writes it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn fib(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = weft_runtime::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

fn idle_cpu(mode: Mode, jobserver: Jobserver) -> Option<Duration> {
    let runtime = match Runtime::builder()
        .mode(mode)
        .threads(4)
        .jobserver(jobserver)
        .build()
    {
        Ok(rt) => rt,
        Err(e) if mode == Mode::Fibers => {
            eprintln!("skipping fibers mode: {e}");
            return None;
        }
        Err(e) => panic!("build {mode}: {e}"),
    };
    // Wake every worker once, then let them all go idle.
    assert_eq!(runtime.block_on(|| fib(18)), 2584);
    std::thread::sleep(Duration::from_millis(100));
    let before = process_cpu();
    std::thread::sleep(Duration::from_secs(2));
    let used = process_cpu() - before;
    drop(runtime);
    Some(used)
}

#[test]
fn idle_runtime_uses_under_one_percent_of_a_core() {
    let budget = Duration::from_millis(20); // 1% of one core over 2 s
    for mode in [Mode::Fibers, Mode::Threads] {
        let with_pipe = Jobserver::Client(jobserver_client());
        for (name, js) in [
            ("no jobserver", Jobserver::Disabled),
            ("jobserver", with_pipe),
        ] {
            if let Some(used) = idle_cpu(mode, js) {
                eprintln!("{mode}, 4 workers, {name}: {used:?} CPU over 2 s idle");
                assert!(
                    used < budget,
                    "{mode} ({name}): idle runtime used {used:?} CPU in 2 s"
                );
            }
        }
    }
}

/// A private jobserver with 3 tokens (4 workers: implicit + 3).
fn jobserver_client() -> jobserver::Client {
    jobserver::Client::new(3).expect("jobserver pipe")
}
