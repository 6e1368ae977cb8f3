//! Memo tables: one per query type, read without a lock; a miss claims
//! its key with one probe and publishes in place.
//!
//! # Layout
//!
//! A table stores [`Entry`]s two ways:
//!
//! - **dense** (`dense.rs`, as rustc's `VecCache`): a key whose
//!   [`Query::dense_index`](crate::Query::dense_index) is `Some(i)` lives
//!   inline at position `i` of a bucketed array whose buckets never move.
//!   A read indexes: no hash, no probe, no pointer chase; a scan in id
//!   order reads memory in order. A miss allocates nothing.
//! - **hashed** (`hashed.rs`): every other key lives in an entry of its
//!   shard's slab, found through a sharded open-addressing index of
//!   pointers. A miss allocates nothing either (but a chunk now and then).
//!
//! An entry holds its state byte, the key, the memo (written once, in
//! place) and, while it runs, its owner job. Entries are never removed or
//! moved while the table lives.
//!
//! # The protocol
//!
//! An entry's state goes `EMPTY` → `RUNNING` → `DONE`, each step once:
//!
//! - **Read** (no lock): find the entry (`dense.rs`, `hashed.rs`: an
//!   `Acquire` load of a bucket or slot pointer) and load its state
//!   (`Acquire`); `DONE` means the memo may be read.
//! - **Claim**: under the lock that orders claims of the key (the entry's
//!   owner mutex for a dense entry, the shard's writer mutex for a hashed
//!   one), an `EMPTY` entry gets its key and owner job, then `RUNNING`
//!   (`Release`). Of many callers of one key exactly one claims it, as
//!   salsa's `SyncTable::try_claim`; the others find it running or done.
//! - **Publish** ([`ClaimGuard::publish`]): write the memo, store `DONE`
//!   (`Release`), take the owner out (under the owner mutex), mark the job
//!   finished, set its latch. A waiter's latch wait returns after `set`,
//!   which comes after the `DONE` store: it sees the memo.
//!
//! Why this is sound:
//!
//! 1. *No one reads a half-written key or memo.* The key is written before
//!    the `Release` store of `RUNNING` (or, hashed, before the entry's
//!    pointer is stored with `Release`); it is read only after an
//!    `Acquire` load seeing the state past `EMPTY` (or the pointer). The
//!    memo is written before the `Release` store of `DONE` and read only
//!    after an `Acquire` load seeing `DONE`. Neither is written again. So
//!    each cell has one write, which happens before every read.
//! 2. *A read that misses is never wrong.* A read may miss a key that a
//!    racing claim is inserting; it then claims, and the claim looks again
//!    under the lock that ordered the other claim: it finds the entry.
//! 3. *A waiter always finds the owner or the memo.* The owner is set
//!    before `RUNNING` under the owner mutex and taken out only after
//!    `DONE` is stored, under it again; so a claimant that finds the entry
//!    past `EMPTY` and no owner (under the mutex) sees `DONE`.
//! 4. *Every claim publishes exactly once.* The claimant holds the only
//!    [`ClaimGuard`]; publishing consumes it, and dropping it unpublished
//!    (an unwinding through the engine itself) publishes a poisoned memo,
//!    so no waiter waits forever.
//!
//! `loom_models.rs` model-checks the real code (claims racing claims and
//! reads, a publish racing reads, an index growing, a bucket installed).

mod dense;
mod hashed;

use std::fmt::{self, Debug};
use std::hash::Hash;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::Arc;

use weft_runtime::sync::{AtomicU8, Mutex, Ordering, UnsafeCell};

use crate::job::{InlineKey, Job, JobKey};
use crate::{Diagnostic, QueryError};

use self::dense::Dense;
use self::hashed::Hashed;

/// A finished execution.
pub(crate) struct Memo<V> {
    /// The value, or the error every caller gets (boxed: errors are rare,
    /// and a `QueryError` is 64 bytes).
    pub(crate) result: Result<V, Box<QueryError>>,
    /// The job that computed it (for profiles: dependency edges by id).
    pub(crate) job: u64,
    /// Diagnostics its execution emitted.
    pub(crate) diagnostics: Diagnostics,
}

/// A memo's diagnostics in one word: most executions emit none, so an
/// empty list is a null pointer and costs no allocation (a `Box<[_]>`
/// would take two words in every memo).
#[derive(Default)]
// The box is the point: one word in the memo instead of a `Vec`'s three.
#[allow(clippy::box_collection)]
pub(crate) struct Diagnostics(Option<Box<Vec<Diagnostic>>>);

impl Diagnostics {
    /// No diagnostics.
    pub(crate) const NONE: Diagnostics = Diagnostics(None);

    /// `list`, without an allocation when it is empty.
    pub(crate) fn from_vec(list: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics((!list.is_empty()).then(|| Box::new(list)))
    }

    /// The diagnostics, in emission order.
    pub(crate) fn as_slice(&self) -> &[Diagnostic] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
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

/// [`Entry::state`]: no claim yet; key and memo are uninitialized.
const EMPTY: u8 = 0;
/// [`Entry::state`]: claimed, the provider runs; the key is written.
const RUNNING: u8 = 1;
/// [`Entry::state`]: the memo is written and never changes again.
const DONE: u8 = 2;

/// One key of a table: see the module doc. `repr(C)`: a read touches the
/// state, key and result, which come first.
#[repr(C)]
pub(crate) struct Entry<K, V> {
    /// `EMPTY`, `RUNNING` or `DONE`.
    state: AtomicU8,
    /// Initialized once `state` is past `EMPTY`.
    key: UnsafeCell<MaybeUninit<K>>,
    /// Initialized exactly when `state` is `DONE`.
    memo: UnsafeCell<MaybeUninit<Memo<V>>>,
    /// The job computing it, while `RUNNING`.
    owner: Mutex<Option<Arc<Job>>>,
    /// The key's hash (hashed entries; 0 in dense ones).
    hash: u64,
}

// SAFETY: the fields that are not `Sync` by themselves are the `key` and
// `memo` cells, and the protocol (module doc, point 1) makes each cell's
// one write happen before every read, so sharing `&Entry` between threads
// is data-race free; the key, value and job are `Send + Sync` themselves.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Entry<K, V> {}
// SAFETY: an `Entry` owns its key, memo and owner job outright; moving it
// to another thread moves them, which their `Send` bounds allow.
unsafe impl<K: Send, V: Send> Send for Entry<K, V> {}

impl<K, V> Entry<K, V> {
    /// An unclaimed entry (dense tables make them by the bucket).
    fn empty() -> Entry<K, V> {
        Entry {
            state: AtomicU8::new(EMPTY),
            key: UnsafeCell::new(MaybeUninit::uninit()),
            memo: UnsafeCell::new(MaybeUninit::uninit()),
            owner: Mutex::new(None),
            hash: 0,
        }
    }

    /// A claimed entry for `key`, owner still to be set (hashed tables
    /// make one per claim, before publishing its pointer).
    fn running(hash: u64, key: K) -> Entry<K, V> {
        Entry {
            state: AtomicU8::new(RUNNING),
            key: UnsafeCell::new(MaybeUninit::new(key)),
            memo: UnsafeCell::new(MaybeUninit::uninit()),
            owner: Mutex::new(None),
            hash,
        }
    }

    /// A done entry for `key` with `memo` (hashed inputs: `hashed.rs`
    /// publishes its pointer with `Release`, which orders both).
    fn done(hash: u64, key: K, memo: Memo<V>) -> Entry<K, V> {
        Entry {
            state: AtomicU8::new(DONE),
            key: UnsafeCell::new(MaybeUninit::new(key)),
            memo: UnsafeCell::new(MaybeUninit::new(memo)),
            owner: Mutex::new(None),
            hash,
        }
    }

    /// The key, once claimed.
    #[inline]
    pub(crate) fn key(&self) -> Option<&K> {
        // Acquire: pairs with the Release store of `RUNNING` (or of the
        // entry's pointer, for a hashed entry made `RUNNING`).
        if self.state.load(Ordering::Acquire) == EMPTY {
            return None;
        }
        // SAFETY: past `EMPTY` the key is written and never written again
        // (module doc, point 1).
        Some(self.key.with(|p| unsafe { (*p).assume_init_ref() }))
    }

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

    /// Whether a claim has been made (the key is written).
    pub(crate) fn is_claimed(&self) -> bool {
        self.state.load(Ordering::Acquire) != EMPTY
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

    /// What a claimant that found this entry past `EMPTY` gets: the memo
    /// or the running owner.
    fn found(&self) -> Claim<'_, K, V>
    where
        K: Debug,
    {
        if let Some(memo) = self.memo() {
            return Claim::Done(memo);
        }
        match self.owner.lock().clone() {
            Some(owner) => Claim::Running(self, owner),
            // No owner past `EMPTY`: published (module doc, point 3).
            None => Claim::Done(self.memo().unwrap_or_else(|| {
                crate::engine::internal_error("an entry with neither owner nor memo")
            })),
        }
    }
}

impl<K, V> Drop for Entry<K, V> {
    fn drop(&mut self) {
        let state = self.state.load(Ordering::Acquire);
        if state != EMPTY {
            // SAFETY: past `EMPTY` the key is initialized (point 1); `&mut
            // self` excludes every other access; dropped once, here.
            self.key.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
        if state == DONE {
            // SAFETY: as for the key, with `DONE` for the memo.
            self.memo.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

/// An entry names its key in cycle and panic reports (it is a job's key).
impl<K: Debug, V> Debug for Entry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key() {
            Some(k) => k.fmt(f),
            None => f.write_str("(unclaimed)"),
        }
    }
}

/// What `dense.rs` and `hashed.rs` claims give: the claimed entry and its
/// new owner, or the entry that another claim made.
type Claimed<'t, K, V> = Result<(&'t Entry<K, V>, Arc<Job>), &'t Entry<K, V>>;

/// The outcome of [`MemoTable::claim`].
pub(crate) enum Claim<'t, K: Debug, V> {
    /// Memoized.
    Done(&'t Memo<V>),
    /// In progress in the job; wait for it, then read the entry's memo.
    Running(&'t Entry<K, V>, Arc<Job>),
    /// The caller computes it and publishes through the guard.
    Claimed(ClaimGuard<'t, K, V>),
}

/// The memo table of one query type: dense and hashed entries.
pub(crate) struct MemoTable<K, V> {
    dense: Dense<K, V>,
    hashed: Hashed<K, V>,
    /// The table owns entries (through raw pointers): it is `Send` and
    /// `Sync` exactly when they are.
    _owns: PhantomData<Entry<K, V>>,
}

/// Where a key lives: its dense index, or its hash.
#[derive(Clone, Copy)]
pub(crate) enum Place {
    Dense(usize),
    Hashed(u64),
}

impl<K, V> MemoTable<K, V>
where
    K: Eq + Hash + Clone + Debug + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(crate) fn new() -> Self {
        MemoTable {
            dense: Dense::new(),
            hashed: Hashed::new(),
            _owns: PhantomData,
        }
    }

    /// Where `key` lives, given its [`Query::dense_index`](crate::Query::dense_index).
    #[inline]
    pub(crate) fn place(key: &K, dense_index: Option<usize>) -> Place {
        match dense_index {
            Some(i) if i <= dense::MAX_INDEX => Place::Dense(i),
            _ => Place::Hashed(hashed::hash(key)),
        }
    }

    /// The entry of `key` at `place`, if any: no lock (module doc).
    #[inline]
    pub(crate) fn find(&self, place: Place, key: &K) -> Option<&Entry<K, V>> {
        match place {
            Place::Dense(i) => self.dense.get(i),
            Place::Hashed(h) => self.hashed.find(h, key),
        }
    }

    /// Finds `key` or claims it for the job `make_owner` builds from the
    /// job key (module doc). `make_owner` runs under the claim's lock, so
    /// it must not read this table.
    pub(crate) fn claim(
        &self,
        place: Place,
        key: K,
        query: &'static str,
        make_owner: impl FnOnce(JobKey) -> Arc<Job>,
    ) -> Claim<'_, K, V> {
        let claimed = match place {
            Place::Dense(i) => self.dense.claim(i, key, make_owner),
            Place::Hashed(h) => self.hashed.claim(h, key, make_owner),
        };
        match claimed {
            Ok((entry, job)) => Claim::Claimed(ClaimGuard {
                entry,
                job: ManuallyDrop::new(job),
                query,
                published: false,
            }),
            Err(entry) => entry.found(),
        }
    }

    /// Makes `key` done with `memo` at once, without a claim or a job (an
    /// input, `input.rs`); `Err` gives `memo` back when the key is there
    /// already (set, or claimed).
    pub(crate) fn insert_done(&self, place: Place, key: K, memo: Memo<V>) -> Result<(), Memo<V>> {
        match place {
            Place::Dense(i) => self.dense.insert_done(i, key, memo),
            Place::Hashed(h) => self.hashed.insert_done(h, key, memo),
        }
    }

    /// Calls `f` on every published memo: dense entries by index, then
    /// hashed ones shard by shard.
    pub(crate) fn for_each_done(&self, mut f: impl FnMut(&K, &Memo<V>)) {
        let mut visit = |e: &Entry<K, V>| {
            if let (Some(k), Some(m)) = (e.key(), e.memo()) {
                f(k, m);
            }
        };
        self.dense.for_each(&mut visit);
        self.hashed.for_each(&mut visit);
    }

    /// Claimed entries; bytes of the entries (their `Arc` headers
    /// included, unclaimed dense ones too); bytes of the indexes.
    pub(crate) fn footprint(&self) -> (usize, usize, usize) {
        let (dense_len, dense_bytes) = self.dense.footprint();
        let (hashed_len, hashed_bytes, index_bytes) = self.hashed.footprint();
        (
            dense_len + hashed_len,
            dense_bytes + hashed_bytes,
            index_bytes,
        )
    }
}

/// The job key of an entry being claimed: a copy of a small key, else
/// `shared()`, an `Arc` of a clone (the one allocation of such a miss).
fn job_key<K: Clone + Debug + Send + Sync>(
    key: &K,
    shared: impl FnOnce() -> Arc<dyn Debug + Send + Sync>,
) -> JobKey {
    match InlineKey::new(key) {
        Some(k) => JobKey::Inline(k),
        None => JobKey::Shared(shared()),
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
    /// The claimed key.
    pub(crate) fn key(&self) -> &'t K {
        self.entry
            .key()
            .unwrap_or_else(|| crate::engine::internal_error("a claimed entry without its key"))
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
        // makes one, for the entry it claimed), and `published` makes this
        // its only publication.
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
                key: format!("{:?}", self.entry),
                message: "weft: internal error: the job ended without publishing a result".into(),
            })),
            job: self.job.id,
            diagnostics: Diagnostics::NONE,
        };
        self.finish(memo);
        // SAFETY: the guard was not published (`publish` sets `published`
        // before taking `job`), so `job` is still here; dropped once.
        unsafe { ManuallyDrop::drop(&mut self.job) };
    }
}
