//! The engine's storage: one memo table per query type, found by an index
//! that reads take no lock on.
//!
//! A query type's table is created on its first read and never removed or
//! moved while the engine lives. The index from `TypeId` to table is an
//! immutable open-addressing array; adding a table (under a mutex) builds
//! a new array with one more entry and publishes it (`Release`), keeping the
//! old arrays until the storage drops (readers may still probe them). A
//! read loads the current array (`Acquire`) and probes: no lock, no
//! reference count, no shared write. A reader that misses (a table being
//! added) takes the mutex, which orders it after every addition.
//!
//! Query types are few (dozens), so copying the array per addition costs
//! nothing that matters; an array is never more than half full.

use std::any::{Any, TypeId};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use rustc_hash::FxBuildHasher;
use weft_runtime::sync::{AtomicPtr, Mutex, Ordering};

use crate::memo::{Entry, MemoTable};
use crate::{Diagnostic, Input, Query};

/// Per-query-type facts for the memory report (`Engine::memory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMemory {
    /// [`Query::NAME`] (or [`Input::NAME`]).
    pub query: &'static str,
    /// Memo entries (executed or running keys).
    pub memos: usize,
    /// Bytes of one entry besides its key and value: state, owner slot,
    /// memo header (error box, job id, diagnostics), hash, padding.
    pub header_bytes: usize,
    /// `size_of::<Q::Key>()`: bytes of the key held inline (heap data a key
    /// owns, such as a `String`'s text, is not counted).
    pub key_bytes: usize,
    /// `size_of::<Q::Value>()`, inline, as `key_bytes`.
    pub value_bytes: usize,
    /// Bytes of all entries: every dense bucket and hashed slab chunk
    /// made, unwritten places included.
    pub entry_bytes: usize,
    /// Bytes of the hashed entries' index (8 per slot, the old indexes
    /// that growth keeps included) and of its shards.
    pub index_bytes: usize,
}

impl QueryMemory {
    /// All bytes of the table divided by its memos (0 for an empty table).
    pub fn bytes_per_memo(&self) -> f64 {
        if self.memos == 0 {
            return 0.0;
        }
        (self.entry_bytes + self.index_bytes) as f64 / self.memos as f64
    }
}

/// A memo table with its types erased, for whole-engine walks.
pub(crate) trait ErasedTable: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn collect_diagnostics(&self, out: &mut Vec<(&'static str, String, Diagnostic)>);
    fn memory(&self) -> QueryMemory;
}

/// What a memo table stores: the keys and values of a query or an input.
pub(crate) trait Stored: 'static {
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    type Value: Clone + Send + Sync + 'static;
    const NAME: &'static str;
}

/// The table of query `Q`.
pub(crate) struct OfQuery<Q>(PhantomData<Q>);

impl<Q: Query> Stored for OfQuery<Q> {
    type Key = Q::Key;
    type Value = Q::Value;
    const NAME: &'static str = Q::NAME;
}

/// The table of input `I`.
pub(crate) struct OfInput<I>(PhantomData<I>);

impl<I: Input> Stored for OfInput<I> {
    type Key = I::Key;
    type Value = I::Value;
    const NAME: &'static str = I::NAME;
}

pub(crate) struct Table<Q: Stored>(pub(crate) MemoTable<Q::Key, Q::Value>);

impl<Q: Stored> ErasedTable for Table<Q> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn collect_diagnostics(&self, out: &mut Vec<(&'static str, String, Diagnostic)>) {
        self.0.for_each_done(|k, memo| {
            if !memo.diagnostics.as_slice().is_empty() {
                let key = format!("{k:?}");
                out.extend(
                    memo.diagnostics
                        .as_slice()
                        .iter()
                        .map(|d| (Q::NAME, key.clone(), d.clone())),
                );
            }
        });
    }

    fn memory(&self) -> QueryMemory {
        let (memos, entry_bytes, index_bytes) = self.0.footprint();
        let key_bytes = size_of::<Q::Key>();
        let value_bytes = size_of::<Q::Value>();
        QueryMemory {
            query: Q::NAME,
            memos,
            header_bytes: size_of::<Entry<Q::Key, Q::Value>>() - key_bytes - value_bytes,
            key_bytes,
            value_bytes,
            entry_bytes,
            index_bytes,
        }
    }
}

/// One index array: `(TypeId, table)` pairs by open addressing.
struct Index {
    slots: Box<[Option<(TypeId, *const ())>]>,
    mask: usize,
}

impl Index {
    fn find(&self, t: TypeId) -> Option<*const ()> {
        let mut i = FxBuildHasher.hash_one(t) as usize & self.mask;
        loop {
            match self.slots[i] {
                Some((u, p)) if u == t => return Some(p),
                Some(_) => i = (i + 1) & self.mask,
                None => return None,
            }
        }
    }
}

/// What the mutex guards: the tables (owned) and every index array.
struct Owned {
    tables: Vec<(TypeId, Box<dyn ErasedTable>)>,
    /// Boxed: `current` points at one, which must not move when the
    /// vector grows.
    #[allow(clippy::vec_box)]
    indexes: Vec<Box<Index>>,
}

/// The memo tables of one engine (module doc).
pub(crate) struct Storage {
    current: AtomicPtr<Index>,
    owned: Mutex<Owned>,
}

// SAFETY: the raw pointers in the index arrays point at the `ErasedTable`
// boxes `owned` holds, which are `Send + Sync`; the arrays themselves are
// immutable once published.
unsafe impl Send for Storage {}
// SAFETY: as for `Send`; shared access only reads the arrays and the
// tables, and the tables are `Sync`.
unsafe impl Sync for Storage {}

impl Storage {
    pub(crate) fn new() -> Storage {
        let mut first = Box::new(Index {
            slots: vec![None; 4].into_boxed_slice(),
            mask: 3,
        });
        Storage {
            current: AtomicPtr::new(&mut *first as *mut Index),
            owned: Mutex::new(Owned {
                tables: Vec::new(),
                indexes: vec![first],
            }),
        }
    }

    /// The memo table of query `Q`, created on first use.
    #[inline(always)]
    pub(crate) fn query<Q: Query>(&self) -> &MemoTable<Q::Key, Q::Value> {
        self.table::<OfQuery<Q>>()
    }

    /// The table of input `I`, created on first use.
    #[inline(always)]
    pub(crate) fn input<I: Input>(&self) -> &MemoTable<I::Key, I::Value> {
        self.table::<OfInput<I>>()
    }

    /// The memo table of `Q`, created on first use.
    #[inline(always)]
    fn table<Q: Stored>(&self) -> &MemoTable<Q::Key, Q::Value> {
        // Acquire: pairs with the Release store in `add`.
        let index = self.current.load(Ordering::Acquire);
        // SAFETY: `current` points at a box in `owned.indexes`, dropped only
        // with the storage, which `&self` borrows.
        let found = unsafe { &*index }.find(TypeId::of::<Q>());
        let p = match found {
            Some(p) => p,
            None => self.add::<Q>(),
        };
        // SAFETY: an index maps `TypeId::of::<Q>()` only to the address of
        // a boxed `Table<Q>` in `owned.tables` (see `add`), which lives as
        // long as the storage.
        unsafe { &(*(p as *const Table<Q>)).0 }
    }

    /// The slow path of [`Storage::table`]: adds `Q`'s table (once; a
    /// racing caller finds the other's) and publishes a new index.
    #[cold]
    #[inline(never)]
    fn add<Q: Stored>(&self) -> *const () {
        let t = TypeId::of::<Q>();
        let mut owned = self.owned.lock();
        let old = owned.indexes.last().expect("an index");
        if let Some(p) = old.find(t) {
            return p;
        }
        let table: Box<dyn ErasedTable> = Box::new(Table::<Q>(MemoTable::new()));
        let p = table
            .as_any()
            .downcast_ref::<Table<Q>>()
            .expect("the table just made") as *const Table<Q> as *const ();
        owned.tables.push((t, table));
        let n = (owned.tables.len() * 2).next_power_of_two().max(4);
        let mut index = Box::new(Index {
            slots: vec![None; n].into_boxed_slice(),
            mask: n - 1,
        });
        for (u, table) in &owned.tables {
            let q = &**table as *const dyn ErasedTable as *const ();
            let mut i = FxBuildHasher.hash_one(*u) as usize & index.mask;
            while index.slots[i].is_some() {
                i = (i + 1) & index.mask;
            }
            index.slots[i] = Some((*u, q));
        }
        // Release: the new array's slots are seen with it.
        self.current
            .store(&mut *index as *mut Index, Ordering::Release);
        owned.indexes.push(index);
        p
    }

    /// Calls `f` on every table, in creation order.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&dyn ErasedTable)) {
        for (_, t) in &self.owned.lock().tables {
            f(&**t);
        }
    }
}
