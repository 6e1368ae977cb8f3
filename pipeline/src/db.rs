//! The analysis database: the engine's user data (`Query::Db`) shared by every
//! analysis query, and the small keys those queries use.
//!
//! The database is immutable during a run except for the progress counters,
//! which only feed the progress bar on stderr and never the report.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use indicatif::ProgressBar;

use crate::crate_graph::{CrateGraph, CrateId};

/// Files larger than this are reported as too large instead of parsed.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The engine's user data for `weft analyze`.
pub struct Db {
    /// The crates analyzed.
    pub graph: CrateGraph,
    /// Progress reporting (stderr only).
    pub progress: Progress,
    /// Crate whose `crate_report` panics on purpose (`WEFT_INJECT_PANIC`),
    /// to test the internal-failure path end to end.
    pub inject_panic: Option<String>,
}

/// The engine type of the analysis.
pub type Engine = weft_queries::Engine<Db>;
/// The query context of the analysis.
pub type Cx<'a> = weft_queries::Cx<'a, Db>;

impl Db {
    /// How profiles name crate `id`: `name` or `name-version`.
    pub fn crate_label(&self, id: crate::crate_graph::CrateId) -> String {
        let data = self.graph.krate(id);
        match &data.version {
            Some(v) => format!("{}-{v}", data.name),
            None => data.name.to_string(),
        }
    }

    /// How profiles name definition `def`: `crate-version#index`.
    pub fn def_label(&self, def: DefId) -> String {
        format!("{}#{}", self.crate_label(def.krate), def.index)
    }

    /// A database for `graph`, with an optional progress bar.
    pub fn new(graph: CrateGraph, bar: Option<ProgressBar>) -> Db {
        Db {
            graph,
            progress: Progress {
                files: AtomicUsize::new(0),
                crates: AtomicUsize::new(0),
                bar,
            },
            inject_panic: std::env::var("WEFT_INJECT_PANIC").ok(),
        }
    }

    /// `file` as reported: relative to the display root when below it.
    pub fn display_path(&self, file: &Path) -> String {
        self.graph.display_path(file)
    }
}

/// Counters behind the progress bar.
pub struct Progress {
    files: AtomicUsize,
    crates: AtomicUsize,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Records `n` more files read.
    pub fn files_done(&self, n: usize) {
        // Relaxed: a display counter, ordered with nothing else.
        let files = self.files.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{files} files"));
        }
    }

    /// Records one more crate finished.
    pub fn crate_done(&self) {
        // Relaxed: a display counter, ordered with nothing else.
        self.crates.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Files read so far.
    pub fn files(&self) -> usize {
        self.files.load(Ordering::Relaxed)
    }

    /// Clears the bar, if any.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A source file, by path (the key of `file_text` and `parse`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FileKey(pub Arc<Path>);

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// A definition: a crate and an index into that crate's `DefMap::defs`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefId {
    /// The crate.
    pub krate: CrateId,
    /// Index into the crate's definitions.
    pub index: u32,
}

impl fmt::Debug for DefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.krate, self.index)
    }
}

/// Key of `const_value`: a definition with its path, for readable cycles.
/// Its `Debug` is the path alone (`a::A`), which is what a `Cycle` shows.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConstKey {
    /// The const or static.
    pub def: DefId,
    /// Its path within its crate.
    pub path: Arc<str>,
}

impl fmt::Debug for ConstKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}
