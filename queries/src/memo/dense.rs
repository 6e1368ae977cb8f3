//! Dense entries: a key whose dense index is `i` lives inline at position
//! `i` of a bucketed array (as rustc's `VecCache`, and salsa's pages): a
//! read is two loads, a miss allocates nothing but, now and then, a bucket.
//!
//! Bucket `b` holds `FIRST << b` entries (`FIRST` = 1,024) and covers the
//! indices `FIRST·(2^b − 1) .. FIRST·(2^(b+1) − 1)`; a bucket is made the
//! first time one of its indices is met, installed with a compare-exchange
//! (`AcqRel`; a loser frees its own), and never moved or freed before the
//! table. So dense indices should be dense, as ids are: an index `i` costs
//! the bucket holding it, about `i` entries. Indices past
//! [`MAX_INDEX`] (16,776,191) are hashed instead.
//!
//! The claim of an entry is made under the entry's own owner mutex, which
//! orders it against every other claim of the key: `EMPTY` → write the key
//! and the owner → `RUNNING` (`Release`). The rest is `memo.rs`'s protocol.

use std::fmt::Debug;
use std::sync::Arc;

use weft_runtime::sync::{AtomicPtr, Ordering};

use super::{job_key, Claimed, Entry, Memo, DONE, EMPTY, RUNNING};
use crate::job::{Job, JobKey};

/// log2 of the first bucket's entries (small under loom, whose mutexes
/// are costly to make).
const FIRST_BITS: u32 = if cfg!(loom) { 1 } else { 10 };

/// Buckets per table: 14 cover the indices below 16,776,192 (1,024 ·
/// (2^14 − 1)); the largest bucket holds 8,388,608 entries. Larger
/// indices are hashed, so that one stray index costs at most that bucket.
const BUCKETS: usize = if cfg!(loom) { 4 } else { 14 };

/// The largest index stored densely; larger ones are hashed.
pub(super) const MAX_INDEX: usize = (1 << (BUCKETS as u32 + FIRST_BITS)) - (1 << FIRST_BITS) - 1;

/// The bucket and the offset in it of index `i` (`i <= MAX_INDEX`).
#[inline]
fn locate(i: usize) -> (usize, usize) {
    let j = i + (1 << FIRST_BITS);
    let b = usize::BITS - 1 - j.leading_zeros() - FIRST_BITS;
    (b as usize, j - (1 << (b + FIRST_BITS)))
}

/// Entries in bucket `b`.
fn bucket_len(b: usize) -> usize {
    1 << (b as u32 + FIRST_BITS)
}

/// The dense entries of one table.
pub(super) struct Dense<K, V> {
    /// Bucket `b`: null, or `bucket_len(b)` entries from a boxed slice.
    buckets: Box<[AtomicPtr<Entry<K, V>>]>,
}

impl<K, V> Dense<K, V>
where
    K: Eq + Clone + Debug + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(super) fn new() -> Self {
        Dense {
            buckets: (0..BUCKETS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    /// The entry at index `i`, if its bucket exists (it may be `EMPTY`).
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&Entry<K, V>> {
        let (b, offset) = locate(i);
        // Acquire: pairs with the installing compare-exchange; the
        // bucket's entries are seen initialized.
        let p = self.buckets[b].load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null bucket pointer points at `bucket_len(b)`
        // entries that live until the table drops, and `offset` is less
        // than that (`locate`).
        Some(unsafe { &*p.add(offset) })
    }

    /// The entry at index `i`, making its bucket if need be.
    fn get_or_make(&self, i: usize) -> &Entry<K, V> {
        if let Some(e) = self.get(i) {
            return e;
        }
        let (b, offset) = locate(i);
        let n = bucket_len(b);
        let made: Box<[Entry<K, V>]> = (0..n).map(|_| Entry::empty()).collect();
        let made = Box::into_raw(made) as *mut Entry<K, V>;
        let p = match self.buckets[b].compare_exchange(
            std::ptr::null_mut(),
            made,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => made,
            Err(theirs) => {
                // SAFETY: `made` is the boxed slice of `n` entries made
                // above, which no one else saw; freed once, here.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(made, n)) });
                theirs
            }
        };
        // SAFETY: as in `get`.
        unsafe { &*p.add(offset) }
    }

    /// Claims index `i` for `key`: `Ok` with the entry and its owner (made
    /// by `make_owner` under the entry's owner mutex), or `Err` with the
    /// entry another claim made.
    pub(super) fn claim(
        &self,
        i: usize,
        key: K,
        make_owner: impl FnOnce(JobKey) -> Arc<Job>,
    ) -> Claimed<'_, K, V> {
        let e = self.get_or_make(i);
        let mut owner = e.owner.lock();
        // Relaxed: the state leaves `EMPTY` only under this mutex.
        if e.state.load(Ordering::Relaxed) != EMPTY {
            drop(owner);
            return Err(e);
        }
        let job_key = job_key(&key, || Arc::new(key.clone()));
        // SAFETY: under the owner mutex with the state `EMPTY`: no other
        // claim writes the key (they hold this mutex) and no one reads it
        // before the `RUNNING` store below (module doc of `memo.rs`).
        e.key.with_mut(|p| unsafe { (*p).write(key) });
        let job = make_owner(job_key);
        *owner = Some(job.clone());
        // Release: the key happens before any `Acquire` load seeing it.
        e.state.store(RUNNING, Ordering::Release);
        drop(owner);
        Ok((e, job))
    }

    /// Makes index `i` done with `memo` at once (an input: no claim, no
    /// job), unless it was claimed before: then `memo` comes back.
    pub(super) fn insert_done(&self, i: usize, key: K, memo: Memo<V>) -> Result<(), Memo<V>> {
        let e = self.get_or_make(i);
        let owner = e.owner.lock();
        // Relaxed: the state leaves `EMPTY` only under this mutex.
        if e.state.load(Ordering::Relaxed) != EMPTY {
            return Err(memo);
        }
        // SAFETY: under the owner mutex with the state `EMPTY`, as in
        // `claim`: no other write, and no read before the `DONE` store.
        e.key.with_mut(|p| unsafe { (*p).write(key) });
        // SAFETY: as for the key: the memo cell's one write.
        e.memo.with_mut(|p| unsafe { (*p).write(memo) });
        // Release: key and memo happen before any `Acquire` load seeing it.
        e.state.store(DONE, Ordering::Release);
        drop(owner);
        Ok(())
    }

    /// Calls `f` on every claimed entry, by index.
    pub(super) fn for_each(&self, f: &mut impl FnMut(&Entry<K, V>)) {
        for b in 0..BUCKETS {
            let p = self.buckets[b].load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            for offset in 0..bucket_len(b) {
                // SAFETY: as in `get`.
                let e = unsafe { &*p.add(offset) };
                if e.is_claimed() {
                    f(e);
                }
            }
        }
    }

    /// Claimed entries, and bytes of every bucket made.
    pub(super) fn footprint(&self) -> (usize, usize) {
        let mut len = 0;
        self.for_each(&mut |_| len += 1);
        let slots: usize = (0..BUCKETS)
            .filter(|&b| !self.buckets[b].load(Ordering::Acquire).is_null())
            .map(bucket_len)
            .sum();
        (len, slots * size_of::<Entry<K, V>>())
    }
}

impl<K, V> Drop for Dense<K, V> {
    fn drop(&mut self) {
        for (b, bucket) in self.buckets.iter().enumerate() {
            let p = bucket.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: a bucket pointer is the boxed slice of
                // `bucket_len(b)` entries installed by `get_or_make`; the
                // table owns it and frees it once, here.
                drop(unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, bucket_len(b)))
                });
            }
        }
    }
}
