//! [`WorkerLocal`]: one value per worker, as rustc keeps its arenas.

use crossbeam_utils::CachePadded;

use crate::{current_worker_index, Runtime};

/// One value of `T` per worker of a runtime (one in serial mode), reachable
/// from any task on that worker and all together at the end (e.g. to merge
/// per-worker statistics), as rustc's `WorkerLocal`.
///
/// Several fibers of one worker share its value: a `RefCell` borrow held
/// across a wait can meet another fiber's borrow (a panic, never UB).
pub struct WorkerLocal<T> {
    slots: Box<[CachePadded<T>]>,
}

// SAFETY: a `&WorkerLocal<T>` hands out `&T` only for the slot of the worker
// running the current code (`get`), so two threads never share a `&T` of the
// same slot at once; `T: Send` lets each slot live on (and be dropped from)
// any thread. `iter`/`into_vec` need `&self`/`self` after the tasks ended,
// which is the caller's synchronization (e.g. `block_on` returned).
unsafe impl<T: Send> Sync for WorkerLocal<T> {}

impl<T> WorkerLocal<T> {
    /// One value per worker of `runtime`, made by `init(worker_index)`.
    pub fn new(runtime: &Runtime, init: impl FnMut(usize) -> T) -> WorkerLocal<T> {
        WorkerLocal {
            slots: (0..runtime.num_threads())
                .map(init)
                .map(CachePadded::new)
                .collect(),
        }
    }

    /// The current worker's value.
    ///
    /// # Panics
    ///
    /// When called outside a worker of the runtime (or outside a serial
    /// `block_on`), or on a worker of a larger runtime than this was made for.
    pub fn get(&self) -> &T {
        let i =
            current_worker_index().expect("WorkerLocal::get called outside a runtime's workers");
        &self.slots[i]
    }

    /// Number of slots (workers).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots (never, for a built runtime).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// All values by worker index. Call it once the tasks using the values
    /// are done (e.g. after `block_on` returned).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &**s)
    }

    /// All values by worker index.
    pub fn into_vec(self) -> Vec<T> {
        self.slots
            .into_vec()
            .into_iter()
            .map(CachePadded::into_inner)
            .collect()
    }
}
