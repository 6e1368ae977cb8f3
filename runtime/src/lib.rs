//! Weft's runtime: a fixed set of worker threads that run tasks on fibers
//! (stackful coroutines), on blocking OS threads, or serially.
//!
//! See the crate's modules, one protocol each:
//! - `registry`: the worker set, deques, injector and the worker main loop;
//! - `fiber`: tasks on `corosensei` coroutines, suspend and resume;
//! - `latch`: one-shot and counting latches, the wait/wake protocol;
//! - `sleep`: how idle workers park and who wakes them;
//! - `stall`: a worker whose new fibers keep parking on one latch stops
//!   starting tasks until it is set (no pile-up behind one worker);
//! - `stack`: fiber stacks, guard pages, `ensure_sufficient_stack`;
//! - `jobserver`: job tokens from make/cargo;
//! - `join`: `join`, `scope`, `par_for_each`, `par_map`;
//! - `context`: the task context that follows a task across forks and fibers.
//!
//! ```
//! use weft_runtime::{par_map, Mode, Runtime};
//! for mode in [Mode::Threads, Mode::Serial] {
//!     let rt = Runtime::builder().mode(mode).threads(2).build().unwrap();
//!     let squares = rt.block_on(|| par_map(&[1, 2, 3], |_, x| x * x));
//!     assert_eq!(squares, vec![1, 4, 9]);
//! }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod context;
#[cfg(feature = "fibers")]
mod fiber;
mod jobserver;
mod join;
mod latch;
#[cfg(all(test, loom))]
mod loom_models;
mod mode;
mod registry;
mod sleep;
#[cfg_attr(not(feature = "fibers"), allow(dead_code))]
mod stack;
#[cfg(feature = "fibers")]
mod stall;
#[doc(hidden)]
pub mod sync;
pub mod trace;
mod worker_local;

pub use context::{current_context, current_strand, replace_context, ContextGuard, TaskContext};
pub use jobserver::Jobserver;
pub use join::{join, par_for_each, par_map, scope, Scope};
pub use latch::Latch;
pub use mode::{Mode, ParseModeError};
pub use registry::{
    can_block_while_unwinding, current_mode, current_worker_index, BuildError, Builder, Runtime,
    DEFAULT_STACK_SIZE,
};
pub use stack::{
    ensure_sufficient_stack, remaining_stack, set_current_activity, set_current_activity_name,
    ActivityGuard, ActivityNameGuard,
};
pub use worker_local::WorkerLocal;
