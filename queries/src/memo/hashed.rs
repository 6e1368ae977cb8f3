//! Hashed entries: a key without a dense index lives in its own `Arc`'d
//! [`Entry`], found through a sharded, insert-only open-addressing index
//! that reads take no lock on (the protocol is `memo.rs`'s).
//!
//! A table has [`SHARDS`] shards, chosen by the hash's top bits; a shard is
//! an index (linear probing on the hash's low bits) of entry pointers plus
//! a writer mutex. Only the writer stores slots or replaces the index. A
//! full index is copied into one twice its size and published (`Release`);
//! the old one is kept, since readers may still be probing it, until the
//! table drops, so all of them together are less than twice the current
//! one. An index is never more than half full, so every probe meets an
//! empty slot. The table owns one `Arc` count of each entry; a job whose
//! key is large holds another, as its key.
//!
//! A reader probing an old index, or racing an insert, may miss a key that
//! exists: it then claims, and the claim probes the current index again
//! under the writer mutex, which orders it after every insert.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use rustc_hash::FxBuildHasher;
use weft_runtime::sync::{AtomicPtr, Mutex, Ordering};

use super::{job_key, Claimed, Entry, Memo};
use crate::job::{Job, JobKey};

/// Number of shards per table (a power of two; one under loom, so that a
/// model's few keys meet in one index and make it grow).
const SHARDS: usize = if cfg!(loom) { 1 } else { 32 };

/// Slots of a shard's first index (a power of two; under loom the second
/// key grows it).
const INITIAL_SLOTS: usize = if cfg!(loom) { 2 } else { 8 };

/// The hash of a key (FxHash, as rustc's query caches).
#[inline]
pub(super) fn hash<K: Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// One index of a shard: a power-of-two array of entry pointers.
struct Index<K, V> {
    slots: Box<[AtomicPtr<Entry<K, V>>]>,
    mask: usize,
}

impl<K: Eq, V> Index<K, V> {
    fn with_slots(n: usize) -> Index<K, V> {
        Index {
            slots: (0..n)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            mask: n - 1,
        }
    }

    /// The entry of `key`, probing from `hash`'s slot.
    #[inline]
    fn find(&self, hash: u64, key: &K) -> Option<&Entry<K, V>> {
        let mut i = hash as usize & self.mask;
        loop {
            // Acquire: pairs with the Release store in `insert`; the entry
            // (its key included) is seen whole.
            let p = self.slots[i].load(Ordering::Acquire);
            if p.is_null() {
                return None;
            }
            // SAFETY: a non-null slot points at an entry the table owns one
            // `Arc` count of until it drops, and `&self` borrows the table.
            let e = unsafe { &*p };
            if e.hash == hash && e.key() == Some(key) {
                return Some(e);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Stores `p` in the first empty slot from `hash`'s. Only the holder of
    /// the shard's writer mutex calls this, on an index less than half full.
    fn insert(&self, hash: u64, p: *mut Entry<K, V>) {
        let mut i = hash as usize & self.mask;
        // Relaxed: only the writer (us) stores slots.
        while !self.slots[i].load(Ordering::Relaxed).is_null() {
            i = (i + 1) & self.mask;
        }
        // Release: see `find`.
        self.slots[i].store(p, Ordering::Release);
    }

    /// Calls `f` on every entry (the caller holds the writer mutex).
    fn for_each(&self, f: &mut impl FnMut(&Entry<K, V>)) {
        for slot in self.slots.iter() {
            // Relaxed: the writer mutex, which we hold, ordered the store.
            let p = slot.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: as in `find`.
                f(unsafe { &*p });
            }
        }
    }
}

/// What only the holder of a shard's writer mutex touches.
struct Writer<K, V> {
    /// Entries in the shard.
    len: usize,
    /// Every index the shard has had, the current one last. Boxed: the
    /// shard's `current` points at one, which must not move when the
    /// vector grows.
    #[allow(clippy::vec_box)]
    indexes: Vec<Box<Index<K, V>>>,
}

impl<K, V> Writer<K, V> {
    fn current(&self) -> &Index<K, V> {
        self.indexes.last().expect("a shard always has an index")
    }
}

struct Shard<K, V> {
    /// The current index: the last of `writer.indexes`.
    current: AtomicPtr<Index<K, V>>,
    writer: Mutex<Writer<K, V>>,
}

/// The hashed entries of one table.
pub(super) struct Hashed<K, V> {
    shards: Box<[CachePadded<Shard<K, V>>]>,
}

impl<K, V> Hashed<K, V>
where
    K: Eq + Hash + Clone + Debug + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(super) fn new() -> Self {
        Hashed {
            shards: (0..SHARDS)
                .map(|_| {
                    let mut first = Box::new(Index::with_slots(INITIAL_SLOTS));
                    let current = AtomicPtr::new(&mut *first as *mut Index<K, V>);
                    CachePadded::new(Shard {
                        current,
                        writer: Mutex::new(Writer {
                            len: 0,
                            indexes: vec![first],
                        }),
                    })
                })
                .collect(),
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // The high bits: FxHash mixes them best; the low ones pick slots.
        &self.shards[(hash >> 59) as usize % SHARDS]
    }

    /// The entry of `key` (with `hash`), if any: no lock.
    #[inline]
    pub(super) fn find(&self, hash: u64, key: &K) -> Option<&Entry<K, V>> {
        // Acquire: pairs with the Release store of a grown index.
        let index = self.shard(hash).current.load(Ordering::Acquire);
        // SAFETY: `current` always points at a box in `writer.indexes`,
        // which are dropped only with the table.
        unsafe { &*index }.find(hash, key)
    }

    /// Claims `key`: `Ok` with the new entry and its owner (made by
    /// `make_owner`, under the writer mutex), or `Err` with the entry
    /// that another claim made.
    pub(super) fn claim(
        &self,
        hash: u64,
        key: K,
        make_owner: impl FnOnce(JobKey) -> Arc<Job>,
    ) -> Claimed<'_, K, V> {
        let shard = self.shard(hash);
        let mut writer = shard.writer.lock();
        if let Some(e) = writer.current().find(hash, &key) {
            // SAFETY: entries live as long as the table (it owns a count of
            // each), which `&self` borrows: the borrow may outlive the guard.
            return Err(unsafe { &*(e as *const Entry<K, V>) });
        }
        let entry = Arc::new(Entry::<K, V>::running(hash, key));
        let job_key = job_key(entry.key().expect("a running entry has its key"), || {
            entry.clone()
        });
        let job = make_owner(job_key);
        // Set before the entry is published (module doc, point 3).
        *entry.owner.lock() = Some(job.clone());
        let p = Arc::into_raw(entry) as *mut Entry<K, V>;
        self.insert(shard, &mut writer, hash, p);
        drop(writer);
        // SAFETY: `p` came from `Arc::into_raw` above; the table's count
        // keeps it alive as long as `&self`.
        Ok((unsafe { &*p }, job))
    }

    /// Inserts `key` done with `memo` at once (an input: no claim, no job),
    /// unless it is there already: then `memo` comes back.
    pub(super) fn insert_done(&self, hash: u64, key: K, memo: Memo<V>) -> Result<(), Memo<V>> {
        let shard = self.shard(hash);
        let mut writer = shard.writer.lock();
        if writer.current().find(hash, &key).is_some() {
            return Err(memo);
        }
        let p = Arc::into_raw(Arc::new(Entry::<K, V>::done(hash, key, memo))) as *mut Entry<K, V>;
        self.insert(shard, &mut writer, hash, p);
        Ok(())
    }

    /// Stores entry `p` in `shard` (whose writer mutex the caller holds as
    /// `writer`), growing the index first when it would be half full.
    fn insert(
        &self,
        shard: &Shard<K, V>,
        writer: &mut Writer<K, V>,
        hash: u64,
        p: *mut Entry<K, V>,
    ) {
        let slots = writer.current().slots.len();
        if (writer.len + 1) * 2 > slots {
            let grown = Box::new(Index::with_slots(slots * 2));
            writer.current().for_each(&mut |e| {
                grown.insert(e.hash, e as *const Entry<K, V> as *mut _);
            });
            // Release: the grown index's slots are seen with it.
            shard
                .current
                .store(&*grown as *const Index<K, V> as *mut _, Ordering::Release);
            writer.indexes.push(grown);
        }
        writer.current().insert(hash, p);
        writer.len += 1;
    }

    /// Calls `f` on every entry, shard by shard.
    pub(super) fn for_each(&self, f: &mut impl FnMut(&Entry<K, V>)) {
        for shard in self.shards.iter() {
            shard.writer.lock().current().for_each(f);
        }
    }

    /// Entries; bytes of entries with their `Arc` headers; bytes of every
    /// index (old ones included) and of the shards.
    pub(super) fn footprint(&self) -> (usize, usize, usize) {
        let (mut len, mut slots) = (0, 0);
        for shard in self.shards.iter() {
            let writer = shard.writer.lock();
            len += writer.len;
            slots += writer.indexes.iter().map(|i| i.slots.len()).sum::<usize>();
        }
        let entry = 2 * size_of::<usize>() + size_of::<Entry<K, V>>();
        let index = slots * size_of::<AtomicPtr<Entry<K, V>>>()
            + SHARDS * size_of::<CachePadded<Shard<K, V>>>();
        (len, len * entry, index)
    }
}

impl<K, V> Drop for Hashed<K, V> {
    fn drop(&mut self) {
        for shard in self.shards.iter() {
            let writer = shard.writer.lock();
            for slot in writer.current().slots.iter() {
                let p = slot.load(Ordering::Relaxed);
                if !p.is_null() {
                    // SAFETY: each entry is in the current index exactly
                    // once and the table owns one `Arc` count of it, from
                    // `Arc::into_raw` in `claim`; it is given back once.
                    drop(unsafe { Arc::from_raw(p as *const Entry<K, V>) });
                }
            }
        }
    }
}
