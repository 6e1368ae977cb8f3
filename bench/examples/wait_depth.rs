//! Instructions per wait at a chain depth, for callgrind (issue 10):
//!
//! ```sh
//! cargo build --release -p weft-bench --example wait_depth
//! for d in 10 1000 100000; do for n in 0 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/wait_depth $d $n 2>&1 | grep Collected
//! done; done
//! ```
//!
//! (instructions at `n` waits − at 0 waits) / `n` is the cost of one wait at
//! depth `d`: publishing it, the cycle search, the suspend and the resume,
//! the owner's finish and wake-up (fibers, 1 worker; the same schedule for
//! every wait). Prints the time per wait on stderr.

use weft_bench::runtime;
use weft_bench::wait_depth::waits_at_depth;
use weft_runtime::Mode;

fn main() {
    let mut args = std::env::args().skip(1);
    let depth: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let waits: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rt = runtime(Mode::Fibers, 1);
    let spent = waits_at_depth(&rt, depth, waits);
    let per = spent.as_nanos() as f64 / waits.max(1) as f64;
    eprintln!("depth {depth}: {waits} waits, {per:.0} ns per wait");
}
