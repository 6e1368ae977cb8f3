//! Hashed entries: a key without a dense index lives in an [`Entry`] of its
//! shard's slab, found through a sharded, insert-only open-addressing index
//! that reads take no lock on (the protocol is `memo.rs`'s).
//!
//! A table has [`SHARDS`] shards, chosen by the hash's top bits; a shard is
//! an index (linear probing on the hash's low bits) of entry pointers plus
//! a writer mutex. Only the writer stores slots or replaces the index. A
//! full index is copied into one twice its size and published (`Release`);
//! the old one is kept, since readers may still be probing it, until the
//! table drops, so all of them together are less than twice the current
//! one. An index is never more than half full, so every probe meets an
//! empty slot. Entries are written into slab chunks (8, 16, ... up to
//! 4,096 entries each) that never move or shrink before the table drops: a
//! miss allocates nothing but, now and then, a chunk. A job whose key is
//! too large to copy inline (`InlineKey`) gets its own `Arc` of a clone.
//!
//! A reader probing an old index, or racing an insert, may miss a key that
//! exists: it then claims, and the claim probes the current index again
//! under the writer mutex, which orders it after every insert.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::mem::MaybeUninit;
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
            // SAFETY: a non-null slot points at an entry of the shard's
            // slab, which lives until the table drops; `&self` borrows the
            // index, which the table holds as long.
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

/// Entries of one shard, in chunks that never move: raw pointers (not
/// boxes), so that writing one entry makes no `&mut` to a chunk whose other
/// entries readers borrow.
struct Slab<T> {
    /// `(start, len)` of each chunk, from `Box::<[MaybeUninit<T>]>::into_raw`.
    chunks: Vec<(*mut MaybeUninit<T>, usize)>,
    /// Entries written into the last chunk.
    used: usize,
}

// SAFETY: a slab owns its `T`s (through raw pointers); sending it sends
// them, which `T: Send` allows.
unsafe impl<T: Send> Send for Slab<T> {}
// SAFETY: `&Slab` gives access to no `T` (only `push`, through `&mut`, and
// the holders of the raw pointers it returns reach them); `T: Sync` covers
// those shared readers.
unsafe impl<T: Sync> Sync for Slab<T> {}

/// Entries of the largest chunk.
const MAX_CHUNK: usize = 4096;

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab {
            chunks: Vec::new(),
            used: 0,
        }
    }

    /// Moves `value` into the next free place; its address is stable
    /// until the slab drops.
    fn push(&mut self, value: T) -> *mut T {
        let full = self.chunks.last().is_none_or(|&(_, len)| self.used == len);
        if full {
            let len = self
                .chunks
                .last()
                .map_or(INITIAL_SLOTS, |&(_, len)| (len * 2).min(MAX_CHUNK));
            let chunk = Box::<[T]>::new_uninit_slice(len);
            self.chunks
                .push((Box::into_raw(chunk) as *mut MaybeUninit<T>, len));
            self.used = 0;
        }
        let (start, _) = *self.chunks.last().expect("a chunk");
        // SAFETY: `used < len` (a full chunk was replaced above), so the
        // place is inside the chunk's allocation and not yet written.
        let place = unsafe { start.add(self.used) };
        self.used += 1;
        // SAFETY: `place` is a valid, unaliased `MaybeUninit<T>` (nobody
        // has a reference to an unwritten place).
        unsafe { (*place).write(value) }
    }
}

impl<T> Drop for Slab<T> {
    fn drop(&mut self) {
        let last = self.chunks.len().saturating_sub(1);
        for (i, &(start, len)) in self.chunks.iter().enumerate() {
            let written = if i == last { self.used } else { len };
            for j in 0..written {
                // SAFETY: places `0..written` of a chunk were written by
                // `push` (every chunk but the last is full) and are dropped
                // once, here; `&mut self` excludes every reader.
                unsafe { (*start.add(j)).assume_init_drop() };
            }
            // SAFETY: `(start, len)` came from `Box::into_raw` of a boxed
            // slice of `len` places; freed once, here.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(start, len)) });
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
    /// The shard's entries.
    slab: Slab<Entry<K, V>>,
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
                            slab: Slab::new(),
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
            // SAFETY: entries live in the slab as long as the table, which
            // `&self` borrows: the borrow may outlive the guard.
            return Err(unsafe { &*(e as *const Entry<K, V>) });
        }
        let job = make_owner(job_key(&key, || Arc::new(key.clone())));
        let entry = Entry::<K, V>::running(hash, key);
        // Set before the entry is published (module doc, point 3).
        *entry.owner.lock() = Some(job.clone());
        let p = writer.slab.push(entry);
        self.insert(shard, &mut writer, hash, p);
        drop(writer);
        // SAFETY: `p` is in the slab, which lives as long as `&self`.
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
        let p = writer.slab.push(Entry::<K, V>::done(hash, key, memo));
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

    /// Entries; bytes of the slab chunks (unwritten places included);
    /// bytes of every index (old ones included) and of the shards.
    pub(super) fn footprint(&self) -> (usize, usize, usize) {
        let (mut len, mut slots, mut places) = (0, 0, 0);
        for shard in self.shards.iter() {
            let writer = shard.writer.lock();
            len += writer.len;
            slots += writer.indexes.iter().map(|i| i.slots.len()).sum::<usize>();
            places += writer.slab.chunks.iter().map(|&(_, n)| n).sum::<usize>();
        }
        let index = slots * size_of::<AtomicPtr<Entry<K, V>>>()
            + SHARDS * size_of::<CachePadded<Shard<K, V>>>();
        (len, places * size_of::<Entry<K, V>>(), index)
    }
}
