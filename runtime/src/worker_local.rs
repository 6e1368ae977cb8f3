//! [`WorkerLocal`]: one value per worker, as rustc keeps its arenas.

use crossbeam_utils::CachePadded;

use crate::registry::current_worker;
use crate::Runtime;

/// One value of `T` per worker of a runtime (one in serial mode), reachable
/// from any task on that worker and all together at the end (e.g. to merge
/// per-worker statistics), as rustc's `WorkerLocal`.
///
/// Each value is only ever reached from its own worker: [`get`] panics
/// elsewhere (on a thread that is not a worker of *this* runtime, as
/// rustc-rayon's `WorkerLocal` does). In serial mode the runtime's one
/// worker is the serial [`Runtime::block_on`] that holds its identity; a
/// second thread in a serial `block_on` of the same runtime at the same
/// time is not a worker (see `block_on`).
///
/// Several fibers of one worker share its value: a `RefCell` borrow held
/// across a wait can meet another fiber's borrow (a panic, never UB).
///
/// [`get`]: WorkerLocal::get
pub struct WorkerLocal<T> {
    /// [`Runtime::id`] of the runtime the slots belong to.
    runtime: u64,
    slots: Box<[CachePadded<T>]>,
}

// SAFETY: a `&WorkerLocal<T>` hands out `&T` only for the slot of the worker
// running the current code (`get` checks the runtime's identity, and a
// worker identity is held by one thread at a time: a pool worker's own
// thread, or the one serial `block_on` that claimed it), so a slot is only
// reached from one thread at a time; the `&T` cannot leave that thread
// unless `T: Sync`. `T: Send` lets each slot live on (and be dropped from)
// any thread. `iter` hands out `&T` to any thread, so it needs `T: Sync`;
// `iter_mut` and `into_vec` need exclusive access.
unsafe impl<T: Send> Sync for WorkerLocal<T> {}

impl<T> WorkerLocal<T> {
    /// One value per worker of `runtime`, made by `init(worker_index)`.
    pub fn new(runtime: &Runtime, init: impl FnMut(usize) -> T) -> WorkerLocal<T> {
        WorkerLocal {
            runtime: runtime.id(),
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
    /// When called anywhere but on a worker of the runtime this was made
    /// for: outside any runtime, on another runtime's worker, or in a
    /// serial `block_on` that does not hold the runtime's worker identity.
    pub fn get(&self) -> &T {
        match current_worker() {
            Some((runtime, index)) if runtime == self.runtime => &self.slots[index],
            _ => panic!("WorkerLocal::get called outside the workers of its runtime"),
        }
    }

    /// Number of slots (workers).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots (never, for a built runtime).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// All values by worker index, possibly while workers use them (hence
    /// `T: Sync`, e.g. atomics or a mutex).
    pub fn iter(&self) -> impl Iterator<Item = &T>
    where
        T: Sync,
    {
        self.slots.iter().map(|s| &**s)
    }

    /// All values by worker index, mutably (no worker can reach them now).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().map(|s| &mut **s)
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
