//! Inputs: values the engine does not compute but is given from outside
//! ([`Engine::set_input`]), read by providers like queries
//! ([`Cx::input`]), as salsa's inputs. They are the first step of
//! incremental recomputation: a later revision will change them and
//! recompute what read them (red/green); until then an input is set once.
//!
//! An input lives in a memo table of its own, as an entry made done at
//! once: no claim, no job, no latch (`memo.rs`, `insert_done`). A read is
//! the lock-free read of a memo. Reading an input that is not set is
//! [`QueryError::MissingInput`]; nothing is memoized for the input itself,
//! so it can still be set afterwards (a query that read it missing keeps
//! that error: without revisions nothing recomputes it).

use std::fmt::Debug;
use std::hash::Hash;

use crate::engine::{Cx, Engine};
use crate::memo::{Entry, Memo, MemoTable};
use crate::QueryError;

/// An input: values keyed like a query's, set from outside with
/// [`Engine::set_input`] and read with [`Cx::input`] (as salsa's
/// `#[salsa::input]`). The type itself is only a name:
///
/// ```
/// use weft_queries::{query, Cx, Engine, Input};
/// use weft_runtime::Runtime;
///
/// /// The text of a source file, by file id.
/// struct SourceText;
/// impl Input for SourceText {
///     type Key = u32;
///     type Value = String;
///     const NAME: &'static str = "source_text";
///     fn dense_index(file: &u32) -> Option<usize> {
///         Some(*file as usize)
///     }
/// }
///
/// #[query]
/// fn lines(cx: &Cx<()>, file: u32) -> usize {
///     cx.input::<SourceText>(&file).lines().count()
/// }
///
/// let engine = Engine::new(Runtime::builder().build()?, ());
/// engine.set_input::<SourceText>(0, "fn main() {\n}\n".into()).unwrap();
/// assert_eq!(engine.get::<lines>(0), Ok(2));
/// assert!(engine.get::<lines>(1).is_err(), "file 1 was never set");
/// # Ok::<(), weft_runtime::BuildError>(())
/// ```
pub trait Input: 'static {
    /// The key, as [`Query::Key`](crate::Query::Key).
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// The value; cloned on every read, so keep it cheap (an `Arc`).
    type Value: Clone + Send + Sync + 'static;
    /// The input's name in errors and memory reports.
    const NAME: &'static str;

    /// A dense index for ids, as [`Query::dense_index`](crate::Query::dense_index).
    #[inline]
    fn dense_index(key: &Self::Key) -> Option<usize> {
        let _ = key;
        None
    }
}

/// Why [`Engine::set_input`] refused a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The input already has a value for this key. Changing an input needs
    /// revisions (recomputing what read it), which this engine does not
    /// have yet.
    #[error("input `{input}({key})` is already set; changing an input needs revisions, which are not built yet")]
    AlreadySet {
        /// [`Input::NAME`].
        input: &'static str,
        /// `Debug` form of the key.
        key: String,
    },
}

fn place<I: Input>(key: &I::Key) -> crate::memo::Place {
    MemoTable::<I::Key, I::Value>::place(key, I::dense_index(key))
}

impl<D: Send + Sync + 'static> Engine<D> {
    /// Sets input `I` at `key` to `value`; it is read from then on by
    /// [`Cx::input`] in every query. Takes no lock that readers take.
    ///
    /// # Errors
    ///
    /// [`InputError::AlreadySet`] when `key` already has a value (the
    /// value given is dropped; the old one stays).
    pub fn set_input<I: Input>(&self, key: I::Key, value: I::Value) -> Result<(), InputError> {
        let table = self.storage().input::<I>();
        let at = place::<I>(&key);
        let shown = format!("{key:?}");
        let memo = Memo {
            result: Ok(value),
            job: 0,
            diagnostics: crate::memo::Diagnostics::NONE,
        };
        table
            .insert_done(at, key, memo)
            .map_err(|_| InputError::AlreadySet {
                input: I::NAME,
                key: shown,
            })
    }

    /// The value of input `I` at `key`, read outside any query.
    ///
    /// # Errors
    ///
    /// [`QueryError::MissingInput`] when it was never set.
    pub fn input<I: Input>(&self, key: &I::Key) -> Result<I::Value, QueryError> {
        read::<I>(self.storage().input::<I>(), key)
    }
}

fn read<I: Input>(
    table: &MemoTable<I::Key, I::Value>,
    key: &I::Key,
) -> Result<I::Value, QueryError> {
    match table.find(place::<I>(key), key).and_then(Entry::memo) {
        Some(memo) => memo.result(),
        None => Err(QueryError::MissingInput {
            input: I::NAME,
            key: format!("{key:?}"),
        }),
    }
}

impl<D: Send + Sync + 'static> Cx<'_, D> {
    /// The value of input `I` at `key`: a lock-free read.
    ///
    /// # Panics
    ///
    /// Unwinds, as [`Cx::get`] does for a failed query, when the input was
    /// never set: the calling query's result is then
    /// [`QueryError::MissingInput`]. Use [`Cx::try_input`] to handle it.
    pub fn input<I: Input>(&self, key: &I::Key) -> I::Value {
        match self.try_input::<I>(key) {
            Ok(v) => v,
            Err(e) => crate::engine::unwind_error(e),
        }
    }

    /// The value of input `I` at `key`, or why there is none.
    ///
    /// # Errors
    ///
    /// [`QueryError::MissingInput`] when it was never set.
    pub fn try_input<I: Input>(&self, key: &I::Key) -> Result<I::Value, QueryError> {
        read::<I>(self.storage().input::<I>(), key)
    }
}
