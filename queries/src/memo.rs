//! Memo tables: one per query type, sharded by key hash, read without a
//! lock; a miss claims its key with one probe and publishes in place.
//!
//! # Layout
//!
//! A table has [`SHARDS`] shards, chosen by the key hash's top bits. A
//! shard is an open-addressing index (linear probing on the hash's low
//! bits) of pointers to [`Entry`]s, plus a writer mutex. An entry holds the
//! key, its hash, a state byte, the memo (written once, in place) and,
//! while it runs, its owner job. Entries live in an `Arc` (the table holds
//! one count; the owner job holds one as its key, so a cycle report can
//! name the key without a copy of it) and are never removed or moved while
//! the table lives. Indexes only grow: a full index is copied into one of
//! twice the size, published, and the old one is kept (readers may still
//! be probing it) until the table drops, so all of them together are less
//! than twice the current one.
//!
//! # The protocol
//!
//! - **Read** ([`MemoTable::find`], no lock): load the shard's current
//!   index (`Acquire`), probe until the key or an empty slot, and load the
//!   entry's state (`Acquire`); `DONE` means the memo may be read.
//! - **Claim** ([`MemoTable::claim`]): lock the shard's writer, probe the
//!   current index again; if the key is absent, insert a new `RUNNING`
//!   entry whose owner is set *before* its pointer is stored (`Release`)
//!   into an empty slot. Of many callers of one key exactly one inserts
//!   (the writer mutex orders them), as salsa's `SyncTable::try_claim`; the
//!   others find the entry under the same mutex. Only the holder of the
//!   writer mutex stores slots or replaces the index.
//! - **Publish** ([`ClaimGuard::publish`]): write the memo into the entry,
//!   store `DONE` (`Release`), take the owner out (under the entry's owner
//!   mutex), mark the job finished, set its latch. Every waiter then sees
//!   the memo: a waiter's latch wait returns after `set`, which happens
//!   after the `DONE` store.
//!
//! Why this is sound:
//!
//! 1. *A reader never sees a half-built entry or memo.* An entry is fully
//!    built before the `Release` store of its pointer; a reader's `Acquire`
//!    load of that pointer sees it whole. A memo is written before the
//!    `Release` store of `DONE`; it is read only after an `Acquire` load
//!    that sees `DONE`, and it is never written again. So the memo cell has
//!    one write, which happens before every read.
//! 2. *A reader that misses a key is never wrong.* A reader probing an old
//!    index, or racing an insert, may not find a key that exists; it then
//!    claims, and the claim re-probes the current index under the writer
//!    mutex, which orders it after every insert: it finds the entry.
//! 3. *Every probe ends.* An index is never more than half full (it grows
//!    first), so each probe meets an empty slot.
//! 4. *A waiter always finds the owner or the memo.* The owner is taken out
//!    only after `DONE` is stored, so a waiter that finds no owner under the
//!    owner mutex (which orders it after the take) sees `DONE`.
//! 5. *Every claim publishes exactly once.* The claimant holds the only
//!    [`ClaimGuard`]; publishing consumes it, and dropping it unpublished
//!    (an unwinding through the engine itself) publishes a poisoned memo,
//!    so no waiter waits forever.
//!
//! `loom_models.rs` model-checks the real code (claims racing claims,
//! readers racing the insert, the publish and an index growth).

use std::fmt::{self, Debug};
use std::hash::{BuildHasher, Hash};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use rustc_hash::FxBuildHasher;
use weft_runtime::sync::{AtomicPtr, AtomicU8, Mutex, Ordering, UnsafeCell};

use crate::job::Job;
use crate::{Diagnostic, QueryError};

/// Number of shards per table (a power of two).
pub(crate) const SHARDS: usize = 32;

/// Slots of a shard's first index (a power of two).
const INITIAL_SLOTS: usize = 8;

/// A finished execution.
pub(crate) struct Memo<V> {
    /// The value, or the error every caller gets (boxed: errors are rare,
    /// and a `QueryError` is 64 bytes).
    pub(crate) result: Result<V, Box<QueryError>>,
    /// Diagnostics its execution emitted (empty: no allocation).
    pub(crate) diagnostics: Box<[Diagnostic]>,
    /// The job that computed it (for profiles: dependency edges by id).
    pub(crate) job: u64,
}

impl<V: Clone> Memo<V> {
    /// The result as callers get it: a clone of the value or of the error.
    #[inline]
    pub(crate) fn result(&self) -> Result<V, QueryError> {
        match &self.result {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err((**e).clone()),
        }
    }
}

/// [`Entry::state`]: the provider runs; the memo cell is uninitialized.
const RUNNING: u8 = 0;
/// [`Entry::state`]: the memo is written and never changes again.
const DONE: u8 = 1;

/// One key of a table: see the module doc.
pub(crate) struct Entry<K, V> {
    hash: u64,
    pub(crate) key: K,
    /// `RUNNING` or `DONE`.
    state: AtomicU8,
    /// Initialized exactly when `state` is `DONE`.
    memo: UnsafeCell<MaybeUninit<Memo<V>>>,
    /// The job computing it, while `RUNNING`; `None` before the entry is
    /// published and after the memo is.
    owner: Mutex<Option<Arc<Job>>>,
}

// SAFETY: the only field that is not `Sync` by itself is `memo`, and the
// protocol (module doc, point 1) makes its one write happen before every
// read, so sharing `&Entry` between threads is data-race free; the key,
// value and job are `Send + Sync` themselves.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Entry<K, V> {}
// SAFETY: an `Entry` owns its key, memo and owner job outright; moving it
// to another thread moves them, which their `Send` bounds allow.
unsafe impl<K: Send, V: Send> Send for Entry<K, V> {}

impl<K, V> Entry<K, V> {
    /// The memo, once published.
    #[inline]
    pub(crate) fn memo(&self) -> Option<&Memo<V>> {
        // Acquire: pairs with the Release store of `DONE` in `publish`.
        if self.state.load(Ordering::Acquire) == DONE {
            // SAFETY: `DONE` is stored only after the memo was written, and
            // it is never written again (module doc, point 1): the cell is
            // initialized and no write races this read.
            Some(self.memo.with(|p| unsafe { (*p).assume_init_ref() }))
        } else {
            None
        }
    }

    /// The job computing this key, or `None` once the memo is published.
    pub(crate) fn owner(&self) -> Option<Arc<Job>> {
        self.owner.lock().clone()
    }

    /// Writes the memo and stores `DONE`; returns the owner job.
    ///
    /// # Safety
    ///
    /// The caller is this entry's claimant and calls this at most once
    /// (that is what makes the memo cell's write unique).
    unsafe fn publish(&self, memo: Memo<V>) -> Option<Arc<Job>> {
        // SAFETY: by the caller's contract this is the cell's only write,
        // and no reader reads it before the `DONE` store below.
        self.memo.with_mut(|p| unsafe { (*p).write(memo) });
        // Release: the memo happens before any `Acquire` load seeing `DONE`.
        self.state.store(DONE, Ordering::Release);
        self.owner.lock().take()
    }
}

impl<K, V> Drop for Entry<K, V> {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) == DONE {
            // SAFETY: `DONE`: the memo is initialized (point 1), and `&mut
            // self` excludes every other access; it is dropped once, here.
            self.memo.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

/// An entry names its key in cycle and panic reports (it is a job's key).
impl<K: Debug, V> Debug for Entry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key.fmt(f)
    }
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
            // is seen whole.
            let p = self.slots[i].load(Ordering::Acquire);
            if p.is_null() {
                return None;
            }
            // SAFETY: a non-null slot points at an entry the table owns one
            // `Arc` count of until it drops, and `&self` borrows the table.
            let e = unsafe { &*p };
            if e.hash == hash && e.key == *key {
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
}

/// What only the holder of a shard's writer mutex touches.
struct Writer<K, V> {
    /// Entries in the shard.
    len: usize,
    /// Every index the shard has had, the current one last (readers may
    /// still probe the older ones; they go when the table drops).
    indexes: Vec<Box<Index<K, V>>>,
}

struct Shard<K, V> {
    /// The current index: the last of `writer.indexes`.
    current: AtomicPtr<Index<K, V>>,
    writer: Mutex<Writer<K, V>>,
}

/// The outcome of [`MemoTable::claim`].
pub(crate) enum Claim<'t, K: Debug, V> {
    /// Memoized.
    Done(&'t Memo<V>),
    /// In progress in the job; wait for it, then read the entry's memo.
    Running(&'t Entry<K, V>, Arc<Job>),
    /// The caller computes it and publishes through the guard.
    Claimed(ClaimGuard<'t, K, V>),
}

/// The memo table of one query type.
pub(crate) struct MemoTable<K, V> {
    shards: Box<[CachePadded<Shard<K, V>>]>,
}

impl<K, V> MemoTable<K, V>
where
    K: Eq + Hash + Debug + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(crate) fn new() -> Self {
        MemoTable {
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

    /// The hash that [`find`](MemoTable::find) and
    /// [`claim`](MemoTable::claim) take.
    #[inline]
    pub(crate) fn hash(key: &K) -> u64 {
        FxBuildHasher.hash_one(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // The high bits: FxHash mixes them best; the low ones pick slots.
        &self.shards[(hash >> 59) as usize % SHARDS]
    }

    /// The entry of `key` (with `hash`), if any: no lock (module doc).
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<&Entry<K, V>> {
        // Acquire: pairs with the Release store of a grown index.
        let index = self.shard(hash).current.load(Ordering::Acquire);
        // SAFETY: `current` always points at a box in `writer.indexes`,
        // which are dropped only with the table.
        unsafe { &*index }.find(hash, key)
    }

    /// Finds `key` or claims it for the job `make_owner` builds from the
    /// new entry (module doc). `make_owner` runs under the shard's writer
    /// mutex, so it must not read this table.
    pub(crate) fn claim(
        &self,
        hash: u64,
        key: K,
        query: &'static str,
        make_owner: impl FnOnce(Arc<dyn Debug + Send + Sync>) -> Arc<Job>,
    ) -> Claim<'_, K, V> {
        let shard = self.shard(hash);
        let mut writer = shard.writer.lock();
        let index: &Index<K, V> = writer.indexes.last().expect("an index");
        if let Some(e) = index.find(hash, &key) {
            // SAFETY: entries live as long as the table (it owns a count of
            // each), which `&self` borrows: the borrow may outlive the guard.
            let e: &Entry<K, V> = unsafe { &*(e as *const Entry<K, V>) };
            drop(writer);
            return match e.owner() {
                Some(owner) => Claim::Running(e, owner),
                // No owner: published (module doc, point 4).
                None => Claim::Done(e.memo().unwrap_or_else(|| {
                    crate::engine::internal_error("an entry with neither owner nor memo")
                })),
            };
        }
        let entry = Arc::new(Entry {
            hash,
            key,
            state: AtomicU8::new(RUNNING),
            memo: UnsafeCell::new(MaybeUninit::<Memo<V>>::uninit()),
            owner: Mutex::new(None),
        });
        let job = make_owner(entry.clone());
        *entry.owner.lock() = Some(job.clone());
        let p = Arc::into_raw(entry) as *mut Entry<K, V>;
        let slots = writer.indexes.last().expect("an index").slots.len();
        if (writer.len + 1) * 2 > slots {
            let old = writer.indexes.last().expect("an index");
            let grown = Box::new(Index::with_slots(slots * 2));
            for slot in old.slots.iter() {
                // Relaxed: only the writer (us) stores slots.
                let q = slot.load(Ordering::Relaxed);
                if !q.is_null() {
                    // SAFETY: as in `Index::find`.
                    grown.insert(unsafe { (*q).hash }, q);
                }
            }
            // Release: the grown index's slots are seen with it.
            shard
                .current
                .store(&*grown as *const Index<K, V> as *mut _, Ordering::Release);
            writer.indexes.push(grown);
        }
        writer.indexes.last().expect("an index").insert(hash, p);
        writer.len += 1;
        drop(writer);
        // SAFETY: `p` came from `Arc::into_raw` above; the table's count
        // keeps it alive as long as `&self`.
        let entry = unsafe { &*p };
        Claim::Claimed(ClaimGuard {
            entry,
            job: ManuallyDrop::new(job),
            query,
            published: false,
        })
    }

    /// Calls `f` on every published memo, shard by shard.
    pub(crate) fn for_each_done(&self, mut f: impl FnMut(&K, &Memo<V>)) {
        for shard in self.shards.iter() {
            let writer = shard.writer.lock();
            for slot in writer.indexes.last().expect("an index").slots.iter() {
                // Relaxed: we hold the writer mutex, which ordered the store.
                let p = slot.load(Ordering::Relaxed);
                if !p.is_null() {
                    // SAFETY: as in `Index::find`.
                    let e = unsafe { &*p };
                    if let Some(m) = e.memo() {
                        f(&e.key, m);
                    }
                }
            }
        }
    }

    /// Bytes of one entry with its `Arc` header (two counts).
    pub(crate) fn entry_bytes() -> usize {
        2 * std::mem::size_of::<usize>() + std::mem::size_of::<Entry<K, V>>()
    }

    /// Bytes of the table's shards (without their indexes).
    pub(crate) fn shard_bytes() -> usize {
        SHARDS * std::mem::size_of::<CachePadded<Shard<K, V>>>()
    }

    /// Entries, and bytes of index slots (every index, old ones included).
    pub(crate) fn footprint(&self) -> (usize, usize) {
        let (mut len, mut slots) = (0, 0);
        for shard in self.shards.iter() {
            let writer = shard.writer.lock();
            len += writer.len;
            slots += writer.indexes.iter().map(|i| i.slots.len()).sum::<usize>();
        }
        (len, slots * std::mem::size_of::<AtomicPtr<Entry<K, V>>>())
    }
}

impl<K, V> Drop for MemoTable<K, V> {
    fn drop(&mut self) {
        for shard in self.shards.iter() {
            let writer = shard.writer.lock();
            for slot in writer.indexes.last().expect("an index").slots.iter() {
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

/// The claimant's right and duty to publish one entry's memo, as a value:
/// [`publish`](ClaimGuard::publish) consumes it; dropping it unpublished
/// (unwinding through the engine's own code) publishes a poisoned memo, so
/// "every job publishes exactly once" holds by construction.
pub(crate) struct ClaimGuard<'t, K: Debug, V> {
    entry: &'t Entry<K, V>,
    /// Taken by `publish`, dropped by `drop` otherwise.
    job: ManuallyDrop<Arc<Job>>,
    query: &'static str,
    published: bool,
}

impl<'t, K: Debug, V> ClaimGuard<'t, K, V> {
    /// The claimed entry (its key is the provider's).
    pub(crate) fn entry(&self) -> &'t Entry<K, V> {
        self.entry
    }

    /// The job that computes it.
    pub(crate) fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// Publishes the memo, marks the job finished and wakes its waiters;
    /// hands the job record back (for `job::recycle`).
    pub(crate) fn publish(mut self, memo: Memo<V>) -> Arc<Job> {
        self.finish(memo);
        // SAFETY: `published` is now true, so `drop` does not touch `job`:
        // it is taken exactly once, here.
        unsafe { ManuallyDrop::take(&mut self.job) }
    }

    fn finish(&mut self, memo: Memo<V>) {
        debug_assert!(!self.published);
        self.published = true;
        // SAFETY: the guard is the entry's only claimant (only `claim`
        // makes one, for the entry it inserted), and `published` makes
        // this its only publication.
        let owner = unsafe { self.entry.publish(memo) };
        drop(owner);
        self.job.finish();
        self.job.latch.set();
    }
}

impl<K: Debug, V> Drop for ClaimGuard<'_, K, V> {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        let memo = Memo {
            result: Err(Box::new(QueryError::Panicked {
                query: self.query,
                key: format!("{:?}", self.entry.key),
                message: "weft: internal error: the job ended without publishing a result".into(),
            })),
            diagnostics: Box::new([]),
            job: self.job.id,
        };
        self.finish(memo);
        // SAFETY: the guard was not published (`publish` sets `published`
        // before taking `job`), so `job` is still here; dropped once.
        unsafe { ManuallyDrop::drop(&mut self.job) };
    }
}
