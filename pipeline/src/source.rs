//! The `file_text` and `parse` queries: reading a source file and lowering it.
//!
//! Bad input never fails a query: a file that cannot be read, is a directory,
//! is not UTF-8, is larger than [`MAX_FILE_BYTES`] or does not parse becomes a
//! diagnostic on the file, and the file then contributes no items.

use std::io::Read;
use std::sync::Arc;

use weft_queries::Query;

use crate::db::{Cx, Db, FileKey, MAX_FILE_BYTES};
use crate::item_tree::{ItemTree, Pos};

/// Text of a file, or why there is none.
#[derive(Debug, Clone)]
pub enum FileText {
    /// The file's text.
    Text(Arc<str>),
    /// Why it could not be read (the diagnostic message).
    Error(Arc<str>),
}

/// The `file_text(path)` query.
pub struct FileTextQuery;

impl Query for FileTextQuery {
    type Db = Db;
    type Key = FileKey;
    type Value = FileText;
    const NAME: &'static str = "file_text";

    fn compute(_cx: &Cx<'_>, key: &FileKey) -> FileText {
        match read(&key.0) {
            Ok(t) => FileText::Text(t),
            Err(msg) => FileText::Error(Arc::from(msg)),
        }
    }
}

fn read(path: &std::path::Path) -> Result<Arc<str>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read file: {e}"))?;
    if meta.is_dir() {
        return Err("cannot read file: it is a directory".to_string());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file too large: {} bytes (the limit is {} bytes); skipped",
            meta.len(),
            MAX_FILE_BYTES
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "file too large: more than {MAX_FILE_BYTES} bytes; skipped"
        ));
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(Arc::from(s)),
        Err(e) => Err(format!(
            "file is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )),
    }
}

/// A parsed and lowered file.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// The items (empty when the file could not be read or parsed).
    pub tree: ItemTree,
    /// Whether the text was read.
    pub read: bool,
    /// The error of reading or parsing, with its position.
    pub error: Option<(Pos, Arc<str>)>,
}

/// The `parse(path)` query.
pub struct ParseQuery;

impl Query for ParseQuery {
    type Db = Db;
    type Key = FileKey;
    type Value = Arc<ParsedFile>;
    const NAME: &'static str = "parse";

    fn compute(cx: &Cx<'_>, key: &FileKey) -> Arc<ParsedFile> {
        let text = match cx.get::<FileTextQuery>(key.clone()) {
            FileText::Text(t) => t,
            FileText::Error(msg) => {
                return Arc::new(ParsedFile {
                    error: Some((Pos { line: 1, col: 1 }, msg)),
                    ..ParsedFile::default()
                })
            }
        };
        cx.db().progress.files_done(1);
        Arc::new(parse_text(&text))
    }
}

/// Parses and lowers `text`. Does not wait on any query: proc-macro2's span
/// locations live in a thread-local source map, which is cleared afterwards
/// so that a long run does not keep every file's text alive.
pub fn parse_text(text: &str) -> ParsedFile {
    let result = match syn::parse_file(text) {
        Ok(file) => ParsedFile {
            tree: crate::lower::lower_file(&file),
            read: true,
            error: None,
        },
        Err(e) => {
            let lc = e.span().start();
            ParsedFile {
                tree: ItemTree::default(),
                read: true,
                error: Some((
                    Pos {
                        line: lc.line.max(1) as u32,
                        col: lc.column as u32 + 1,
                    },
                    Arc::from(format!("syntax error: {e}")),
                )),
            }
        }
    };
    proc_macro2::extra::invalidate_current_thread_spans();
    result
}
