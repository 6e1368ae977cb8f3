//! The `file_text` and `parse` queries: reading a source file and lowering it.
//!
//! Bad input never fails a query: a file that cannot be read, is a directory,
//! is not UTF-8, is larger than [`MAX_FILE_BYTES`] or does not parse becomes a
//! diagnostic on the file, and the file then contributes no items.

use std::io::Read;
use std::sync::Arc;

use weft_queries::query;

use crate::db::{Cx, FileKey, MAX_FILE_BYTES};
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
#[query]
pub fn file_text(_cx: &Cx<'_>, key: &FileKey) -> FileText {
    match read(&key.0) {
        Ok(t) => FileText::Text(t),
        Err(msg) => FileText::Error(Arc::from(msg)),
    }
}

fn read(path: &std::path::Path) -> Result<Arc<str>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read file: {e}"))?;
    if meta.is_dir() {
        return Err("cannot read file: it is a directory".to_string());
    }
    if !meta.is_file() {
        // Never opened: opening a FIFO blocks until a writer comes.
        return Err(format!(
            "cannot read file: it is {}, not a regular file",
            file_kind(&meta)
        ));
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

/// What a file that is neither a regular file nor a directory is, for
/// messages ("a FIFO", "a socket", ...).
pub(crate) fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    let _ = meta;
    "a special file"
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
#[query]
pub fn parse(cx: &Cx<'_>, key: &FileKey) -> Arc<ParsedFile> {
    let text = match cx.file_text(key.clone()) {
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

/// Parses and lowers `text`. Does not wait on any query: proc-macro2's span
/// locations live in a thread-local source map, which is cleared afterwards
/// so that a long run does not keep every file's text alive.
pub fn parse_text(text: &str) -> ParsedFile {
    if let Err((pos, msg)) = check_shape(text) {
        return ParsedFile {
            tree: ItemTree::default(),
            read: true,
            error: Some((pos, Arc::from(msg))),
        };
    }
    let result = match syn::parse_file(text) {
        Ok(file) => ParsedFile {
            tree: crate::lower::lower_file(&file),
            read: true,
            error: None,
        },
        Err(e) => {
            let lc = e.span().start();
            let at = Pos {
                line: lc.line.max(1) as u32,
                col: lc.column as u32 + 1,
            };
            // The lexer's error has no position and says only "cannot
            // parse string into token stream": find what it met.
            let (at, msg) = match lex_problem(text) {
                Some((p, why)) if e.to_string().contains("token stream") => (p, why),
                _ => (at, e.to_string()),
            };
            ParsedFile {
                tree: ItemTree::default(),
                read: true,
                error: Some((at, Arc::from(format!("syntax error: {msg}")))),
            }
        }
    };
    proc_macro2::extra::invalidate_current_thread_spans();
    result
}

/// Deepest delimiter nesting that is parsed.
pub const MAX_NESTING: u32 = 256;

/// Most tokens in one statement: between two `;` or `,` of one block, or
/// item keywords; a `{ .. }` block inside counts as one.
pub const MAX_STATEMENT_TOKENS: u32 = 4096;

/// Item and statement keywords that start a new statement for
/// [`MAX_STATEMENT_TOKENS`] (resetting is only ever more lenient).
const STATEMENT_KEYWORDS: &[&str] = &[
    "fn", "pub", "impl", "struct", "enum", "union", "mod", "trait", "use", "const", "static",
    "type", "let", "extern",
];

/// Refuses text whose shape would make the recursive parser (or the drop
/// of its tree, or the lowering) overflow its stack: delimiters nested
/// deeper than [`MAX_NESTING`], or one statement of more than
/// [`MAX_STATEMENT_TOKENS`] tokens. Every deep syntax tree is one of the
/// two: nesting through delimiters, or a long chain within one statement —
/// of operators (`!!!…x`, `(1)+(1)+…`, `a = b = …`), postfix calls
/// (`x.map(f).flatten()…`, `x??…`) or keywords (`x as u8 as u8 …`,
/// `return return …`) — whatever the delimiters around its operands.
/// Comments, strings and char literals are skipped. Real code is far from
/// both limits; the result is the same in every mode, whatever the stack.
pub fn check_shape(text: &str) -> Result<(), (Pos, String)> {
    scan(text).0
}

/// Where and why text does not even split into tokens — an unclosed,
/// unexpected or mismatched delimiter, or a NUL byte — for a file that syn
/// refused with its bare "cannot parse string into token stream".
pub fn lex_problem(text: &str) -> Option<(Pos, String)> {
    scan(text).1
}

/// A position and what is wrong there.
type Problem = (Pos, String);

/// The scanner of [`check_shape`] and [`lex_problem`]: the shape error, and
/// the first lexing problem seen.
fn scan(text: &str) -> (Result<(), Problem>, Option<Problem>) {
    let b = text.as_bytes();
    let mut problem: Option<Problem> = None;
    // Open delimiters and where they opened.
    let mut open: Vec<(u8, Pos)> = Vec::new();
    let (mut i, mut line, mut line_start) = (0usize, 1u32, 0usize);
    let mut depth = 0u32;
    // Tokens of the current statement, one counter per open `{` block.
    let mut tokens: Vec<u32> = vec![0];
    let pos = |i: usize, line: u32, line_start: usize| Pos {
        line,
        col: text[line_start..i].chars().count() as u32 + 1,
    };
    macro_rules! count {
        ($i:expr) => {{
            let t = tokens.last_mut().expect("the file level is never popped");
            *t += 1;
            if *t > MAX_STATEMENT_TOKENS {
                return (
                    Err((
                        pos($i, line, line_start),
                        format!(
                            "more than {MAX_STATEMENT_TOKENS} tokens in one statement; file skipped"
                        ),
                    )),
                    problem,
                );
            }
        }};
    }
    while i < b.len() {
        match b[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut level = 0u32;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        level += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        level -= 1;
                        i += 2;
                        if level == 0 {
                            break;
                        }
                    } else {
                        if b[i] == b'\n' {
                            line += 1;
                            line_start = i + 1;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            b'r' if matches!(b.get(i + 1), Some(b'#' | b'"'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // Raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) == Some(&b'"') {
                    j += 1;
                    while j < b.len() {
                        if b[j] == b'"'
                            && b[j + 1..]
                                .iter()
                                .take(hashes)
                                .filter(|c| **c == b'#')
                                .count()
                                == hashes
                        {
                            j += 1 + hashes;
                            break;
                        }
                        if b[j] == b'\n' {
                            line += 1;
                            line_start = j + 1;
                        }
                        j += 1;
                    }
                    i = j;
                    continue;
                }
            }
            b'"' => {
                count!(i);
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    } else if b[i] == b'\n' {
                        line += 1;
                        line_start = i + 1;
                    }
                    i += 1;
                }
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}'), else a lifetime.
                if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' && b[i] != b'\n' {
                        i += 1;
                    }
                } else if let Some(c) = text[i + 1..].chars().next() {
                    if text[i + 1 + c.len_utf8()..].starts_with('\'') {
                        i += c.len_utf8() + 1;
                    }
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return (
                        Err((
                            pos(i, line, line_start),
                            format!("delimiters nested more than {MAX_NESTING} deep; file skipped"),
                        )),
                        problem,
                    );
                }
                open.push((b[i], pos(i, line, line_start)));
                if b[i] == b'{' {
                    tokens.push(0);
                } else {
                    count!(i);
                }
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                let closing = b[i] as char;
                match open.pop() {
                    Some((o, at)) if matching(o) != b[i] => {
                        problem.get_or_insert((
                            pos(i, line, line_start),
                            format!(
                                "mismatched closing delimiter `{closing}` for `{}` opened at {}:{}",
                                o as char, at.line, at.col
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        problem.get_or_insert((
                            pos(i, line, line_start),
                            format!("unexpected closing delimiter `{closing}`"),
                        ));
                    }
                }
                if b[i] == b'}' && tokens.len() > 1 {
                    tokens.pop();
                }
                // A closed block is one token of the statement around it.
                count!(i);
            }
            b';' | b',' => *tokens.last_mut().expect("file level") = 0,
            0 => {
                problem.get_or_insert((
                    pos(i, line, line_start),
                    "the file contains a NUL byte".into(),
                ));
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                if STATEMENT_KEYWORDS.contains(&&text[start..i]) {
                    *tokens.last_mut().expect("file level") = 0;
                } else {
                    count!(start);
                }
                continue;
            }
            c if !c.is_ascii_whitespace() => count!(i),
            _ => {}
        }
        i += 1;
    }
    if let Some((o, at)) = open.first() {
        problem.get_or_insert((*at, format!("unclosed delimiter `{}`", *o as char)));
    }
    (Ok(()), problem)
}

/// The closing delimiter of an opening one.
fn matching(open: u8) -> u8 {
    match open {
        b'(' => b')',
        b'[' => b']',
        _ => b'}',
    }
}

#[cfg(test)]
mod tests {
    use super::check_shape;

    #[test]
    fn real_shapes_pass() {
        let text = "fn f() { let s = \"(((\"; let c = '('; let r = r#\"[[\"#; /* { */ }\n// ((((\n";
        assert!(check_shape(text).is_ok());
        assert!(check_shape("fn f<'a>(x: &'a str) -> char { '\\'' }").is_ok());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("const A: u32 = {}1{};", "(".repeat(300), ")".repeat(300));
        let err = check_shape(&text).unwrap_err();
        assert_eq!(err.0.line, 1);
        assert!(err.1.contains("nested"));
    }

    #[test]
    fn long_chains_in_one_statement_are_refused() {
        let chains = [
            format!("const A: u32 = {};", vec!["1"; 5000].join("+")),
            format!("const B: bool = {}true;", "!".repeat(5000)),
            format!("const C: i64 = {};", vec!["(1)"; 5000].join("+")),
            format!("const D: i64 = {};", vec!["{1}"; 5000].join("+")),
            format!(
                "fn f() {{ let _ = x{}; }}",
                ".map(Some).flatten()".repeat(1000)
            ),
            format!("fn f() {{ let _ = x{}; }}", " as u8".repeat(3000)),
            format!("fn f() -> R {{ x{} }}", "?".repeat(5000)),
        ];
        for text in chains {
            let err = check_shape(&text).unwrap_err();
            assert!(err.1.contains("tokens in one statement"), "{}", &text[..40]);
        }
    }

    #[test]
    fn many_items_and_statements_pass() {
        let fns: String = (0..3000)
            .map(|i| format!("    pub fn f{i}(&self) -> u32 {{ self.x.y(1, 2) + {i} }}\n"))
            .collect();
        assert!(check_shape(&format!("impl X {{\n{fns}}}\n")).is_ok());
        let stmts: String = (0..3000)
            .map(|i| format!("let a{i} = b.c(d) + e;\n"))
            .collect();
        assert!(check_shape(&format!("fn f() {{\n{stmts}}}\n")).is_ok());
    }
}
