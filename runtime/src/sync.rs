//! The synchronization primitives of the latch and sleep protocols, routed
//! through one place so that `RUSTFLAGS="--cfg loom"` model-checks them (as
//! tokio's and crossbeam's `sync` shims do).
//!
//! Normally these are `parking_lot`'s `Mutex`/`Condvar` and std's atomics.
//! Under `cfg(loom)` they are loom's, wrapped to offer `parking_lot`'s API
//! (`lock()` returns the guard; `Condvar::wait(&mut guard)`).
//! Corosensei's stack switch cannot run under loom: the models exercise the
//! thread-waiter paths, which share every lock and flag with the fiber path.
//!
//! Public but hidden: the query engine routes its wait-for graph through
//! the same shim, so that one `--cfg loom` build models both crates. Not a
//! stable API.

#[cfg(not(loom))]
pub use parking_lot::{Condvar, Mutex};
#[cfg(not(loom))]
pub use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(loom)]
pub use self::loom_shim::{Condvar, Mutex};
#[cfg(loom)]
pub use loom::cell::UnsafeCell;
#[cfg(loom)]
pub use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// `std::cell::UnsafeCell` with loom's closure API (`with`, `with_mut`), so
/// that under `cfg(loom)` the model checks every access for data races (as
/// tokio's `loom::cell::UnsafeCell` shim). Zero-cost otherwise.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a pointer for reading. Dereferencing it is the
    /// caller's `unsafe`, under the invariant that no write races the read.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a pointer for writing. Dereferencing it is the
    /// caller's `unsafe`, under the invariant that no other access races it.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Yields to the other threads of a model (loom's scheduler must see a
/// spinning retry); `std::thread::yield_now` otherwise.
#[cfg(not(loom))]
pub fn yield_now() {
    std::thread::yield_now();
}

/// See the other `yield_now`.
#[cfg(loom)]
pub fn yield_now() {
    loom::thread::yield_now();
}

#[cfg(loom)]
mod loom_shim {
    /// `loom::sync::Mutex` with `parking_lot`'s API.
    #[derive(Debug)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    /// The guard of [`Mutex`]; an `Option` so `Condvar::wait` can move it.
    pub struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub fn new(t: T) -> Self {
            Mutex(loom::sync::Mutex::new(t))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().expect("loom mutex poisoned")))
        }
    }

    impl<T> std::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present")
        }
    }

    impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present")
        }
    }

    /// `loom::sync::Condvar` with `parking_lot`'s API.
    #[derive(Debug)]
    pub struct Condvar(loom::sync::Condvar);

    impl Default for Condvar {
        fn default() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
    }

    impl Condvar {
        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let g = guard.0.take().expect("guard present");
            guard.0 = Some(self.0.wait(g).expect("loom mutex poisoned"));
        }

        /// As `parking_lot`'s `wait_until` (callers ignore the result).
        /// loom has no clock: the wait is modelled as a plain one, so a
        /// model still needs its wake-up, which is the stronger check.
        pub fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, _deadline: std::time::Instant) {
            self.wait(guard);
        }

        pub fn notify_one(&self) {
            self.0.notify_one();
        }

        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
