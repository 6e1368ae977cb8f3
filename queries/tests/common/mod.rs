//! What the engine's integration tests share.

use weft_runtime::{Mode, Runtime};

/// One runtime per configuration the tests hold to the same results:
/// serial, then threads and fibers (where this build has them) at 1, 2 and
/// 4 workers.
pub(crate) fn runtimes() -> Vec<Runtime> {
    let mut out = vec![Runtime::builder().mode(Mode::Serial).build().unwrap()];
    for mode in [Mode::Threads, Mode::Fibers] {
        if mode == Mode::Fibers && !Mode::fibers_available() {
            continue;
        }
        for threads in [1, 2, 4] {
            out.push(
                Runtime::builder()
                    .mode(mode)
                    .threads(threads)
                    .build()
                    .unwrap(),
            );
        }
    }
    out
}
