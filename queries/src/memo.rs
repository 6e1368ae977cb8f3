//! Memo tables: one per query type, sharded by key hash.
//!
//! A slot is `InProgress` (the owner job and the latch its waiters wait on)
//! or `Done` (the result and the diagnostics its execution emitted). A
//! result is immutable once `Done`; an error result (a panic, or a cycle
//! without recovery) is the slot's *poisoned* state and is returned to every
//! later caller.
//!
//! # Claiming
//!
//! [`MemoTable::claim`] looks a key up under its shard's mutex and, on a
//! miss, inserts `InProgress` in the same critical section, as salsa's
//! `SyncTable::try_claim`: of many callers of one key exactly one gets
//! [`Claim::Claimed`] and runs the provider. Shard mutexes are never held
//! while a provider runs or while anyone waits.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use rustc_hash::{FxBuildHasher, FxHashMap};
use weft_runtime::Latch;

use crate::job::Job;
use crate::{Diagnostic, QueryError};

/// Number of shards per table (a power of two).
const SHARDS: usize = 32;

/// A finished execution.
pub(crate) struct Memo<V> {
    pub(crate) result: Result<V, QueryError>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// The job that computed it (for profiles: dependency edges by id).
    pub(crate) job: u64,
}

pub(crate) enum Slot<V> {
    InProgress { owner: Arc<Job>, latch: Latch },
    Done(Arc<Memo<V>>),
}

/// The outcome of [`MemoTable::claim`].
pub(crate) enum Claim<V> {
    /// Memoized: the result (a clone) and the job that computed it.
    Hit(Result<V, QueryError>, u64),
    /// In progress in `owner`; wait on `latch`.
    Running { owner: Arc<Job>, latch: Latch },
    /// The caller must compute it, then [`MemoTable::publish`].
    Claimed { latch: Latch },
}

/// One shard: a map from key to slot under its own mutex.
type Shard<K, V> = Mutex<FxHashMap<K, Slot<V>>>;

/// The memo table of one query type.
pub(crate) struct MemoTable<K, V> {
    shards: Box<[CachePadded<Shard<K, V>>]>,
}

impl<K: Eq + Hash + Clone, V: Clone> MemoTable<K, V> {
    pub(crate) fn new() -> Self {
        MemoTable {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(FxHashMap::default())))
                .collect(),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, V> {
        let h = FxBuildHasher.hash_one(key);
        // The high bits: FxHash mixes them best.
        &self.shards[(h >> 59) as usize % SHARDS]
    }

    /// Looks `key` up; on a miss, claims it for `make_owner()` (see module doc).
    pub(crate) fn claim(&self, key: &K, make_owner: impl FnOnce() -> Arc<Job>) -> Claim<V> {
        let mut shard = self.shard(key).lock();
        match shard.get(key) {
            Some(Slot::Done(memo)) => Claim::Hit(memo.result.clone(), memo.job),
            Some(Slot::InProgress { owner, latch }) => Claim::Running {
                owner: owner.clone(),
                latch: latch.clone(),
            },
            None => {
                let latch = Latch::new();
                shard.insert(
                    key.clone(),
                    Slot::InProgress {
                        owner: make_owner(),
                        latch: latch.clone(),
                    },
                );
                Claim::Claimed { latch }
            }
        }
    }

    /// The finished result for `key`, if any.
    pub(crate) fn finished(&self, key: &K) -> Option<(Result<V, QueryError>, u64)> {
        match self.shard(key).lock().get(key) {
            Some(Slot::Done(memo)) => Some((memo.result.clone(), memo.job)),
            _ => None,
        }
    }

    /// Stores the result of a claimed key; the caller then sets the latch.
    pub(crate) fn publish(&self, key: &K, memo: Memo<V>) {
        self.shard(key)
            .lock()
            .insert(key.clone(), Slot::Done(Arc::new(memo)));
    }

    /// Calls `f` on every finished memo.
    pub(crate) fn for_each_done(&self, mut f: impl FnMut(&K, &Memo<V>)) {
        for shard in self.shards.iter() {
            for (k, slot) in shard.lock().iter() {
                if let Slot::Done(m) = slot {
                    f(k, m);
                }
            }
        }
    }
}
