//! The `crate_report(crate)` query and the two output formats.
//!
//! Everything printed is sorted here (crates by id, consts and functions by
//! path, diagnostics by file, line, column, severity and message), so the
//! output never depends on hash order or on which task finished first.
//!
//! Text format (stdout):
//!
//! ```text
//! crate NAME VERSION
//!   root: FILE
//!   files: N
//!   modules: N
//!   items: N
//!   functions: N
//!   unresolved imports: N
//!     FILE:LINE:COL: PATH
//!   consts: N evaluated, M unknown
//!     PATH = VALUE
//!   may panic: N public functions
//!     PATH: STEP -> STEP -> SITE
//!
//! FILE:LINE:COL: SEVERITY: MESSAGE
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use serde::Serialize;
use weft_queries::{query, Diagnostic, Severity};

use crate::consts::{cycle_message, ConstValue, ConstValueQuery};
use crate::crate_graph::CrateId;
use crate::db::{ConstKey, Cx, DefId};
use crate::def_map::{describe_crate, DefKind, DefMapQuery};
use crate::panics::{MayPanicQuery, PanicGraphQuery, Witness, WITNESS_TAIL};

/// An unresolved import in a report.
#[derive(Debug, Clone, Serialize)]
pub struct UnresolvedOut {
    /// The path as written.
    pub path: String,
    /// File.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// An evaluated const.
#[derive(Debug, Clone, Serialize)]
pub struct ConstOut {
    /// Path within the crate.
    pub path: String,
    /// Value in decimal.
    pub value: String,
}

/// A public function that may panic.
#[derive(Debug, Clone, Serialize)]
pub struct PanicOut {
    /// Path within the crate.
    pub path: String,
    /// Its witness: the index of its first step in the crate's
    /// [`CrateReport::witness_table`].
    pub witness: usize,
    /// The witness itself: crate-qualified functions from this one to the
    /// panic site, then the site.
    #[serde(skip)]
    pub chain: Arc<Witness>,
}

/// One step of a witness in [`CrateReport::witness_table`]: witnesses
/// share their rest (the witness of the next function), so the table of a
/// call chain of `N` functions has `N` rows, not `N²/2`.
#[derive(Debug, Clone, Serialize)]
pub struct WitnessStep {
    /// A crate-qualified function path, or, last, the panic site.
    pub step: String,
    /// The row of the next step; `null` after the site.
    pub next: Option<usize>,
}

/// One crate's findings.
#[derive(Debug, Clone, Serialize)]
pub struct CrateReport {
    /// Crate name.
    pub name: String,
    /// Package version (`null` without a manifest).
    pub version: Option<String>,
    /// Root file.
    pub root: String,
    /// Why the root file could not be read or parsed (`file:line:col:
    /// message`), if so: the crate's items are then unknown.
    pub root_error: Option<String>,
    /// Source files read.
    pub files: usize,
    /// Modules (inline and file modules, the root included).
    pub modules: usize,
    /// Items (declarations other than `use` and item macros).
    pub items: usize,
    /// Functions with bodies.
    pub functions: usize,
    /// Imports that resolve to nothing.
    pub unresolved_imports: Vec<UnresolvedOut>,
    /// Evaluated integer consts and statics.
    pub consts: Vec<ConstOut>,
    /// Integer consts and statics that could not be evaluated.
    pub unknown_consts: usize,
    /// Public functions that may panic.
    pub may_panic: Vec<PanicOut>,
    /// The steps of the `may_panic` witnesses, each once.
    pub witness_table: Vec<WitnessStep>,
    /// This crate's diagnostics (printed after all crates).
    #[serde(skip)]
    pub diagnostics: Vec<Diagnostic>,
}

/// The `crate_report(crate)` query.
#[query(describe = describe_crate)]
pub fn crate_report(cx: &Cx<'_>, krate: CrateId) -> Arc<CrateReport> {
    Arc::new(build_report(cx, krate))
}

fn build_report(cx: &Cx<'_>, krate: CrateId) -> CrateReport {
    let db = cx.db();
    let data = db.graph.krate(krate);
    let map = cx.def_map(krate);
    if db.inject_panic.as_deref() == Some(&*data.name) {
        panic!("injected by WEFT_INJECT_PANIC");
    }
    let mut diagnostics = map.diagnostics.clone();

    // Consts, evaluated in parallel.
    let consts: Vec<ConstKey> = map
        .defs
        .iter()
        .enumerate()
        .filter(|(_, d)| match &d.kind {
            DefKind::Const(c) | DefKind::Static(c) => c.ty.is_some(),
            _ => false,
        })
        .map(|(i, d)| ConstKey {
            def: DefId {
                krate,
                index: i as u32,
            },
            path: d.path.clone(),
        })
        .collect();
    let values = weft_runtime::par_map(&consts, |_, k| cx.const_value(k.clone()));
    let mut evaluated = Vec::new();
    let mut unknown = 0;
    let mut cycles_seen = HashSet::new();
    for (key, value) in consts.iter().zip(&values) {
        let def = map.def(key.def);
        let file = db.display_path(&map.files[def.file as usize].0);
        match value {
            ConstValue::Known(v) => evaluated.push(ConstOut {
                path: key.path.to_string(),
                value: v.to_decimal(),
            }),
            ConstValue::Error(e) => {
                unknown += 1;
                diagnostics.push(Diagnostic {
                    file,
                    line: e.pos.line,
                    col: e.pos.col,
                    severity: e.severity,
                    message: format!("cannot evaluate constant `{}`: {}", key.path, e.message),
                });
            }
            ConstValue::DependsOnError => unknown += 1,
            ConstValue::Cycle(cycle) => {
                unknown += 1;
                if !cycles_seen.insert(cycle.clone()) {
                    continue;
                }
                // Reported at the cycle's first const (its canonical start).
                let first = cycle.frames.first().map(|f| f.key.as_str());
                let at = consts
                    .iter()
                    .zip(&values)
                    .find(|(k, v)| Some(&*k.path) == first && matches!(v, ConstValue::Cycle(_)))
                    .map(|(k, _)| map.def(k.def))
                    .unwrap_or(def);
                diagnostics.push(Diagnostic {
                    file: db.display_path(&map.files[at.file as usize].0),
                    line: at.pos.line,
                    col: at.pos.col,
                    severity: Severity::Error,
                    message: cycle_message(cycle),
                });
            }
        }
    }
    evaluated.sort_by(|a, b| a.path.cmp(&b.path).then(a.value.cmp(&b.value)));

    // Public functions that may panic.
    cx.panic_graph(krate);
    let public: Vec<DefId> = map
        .defs
        .iter()
        .enumerate()
        .filter(|(_, d)| matches!(d.kind, DefKind::Fn { public: true, .. }))
        .map(|(i, _)| DefId {
            krate,
            index: i as u32,
        })
        .collect();
    let witnesses = weft_runtime::par_map(&public, |_, f| cx.may_panic(*f));
    let mut may_panic: Vec<PanicOut> = public
        .iter()
        .zip(witnesses)
        .filter_map(|(f, w)| {
            w.map(|chain| PanicOut {
                path: map.def(*f).path.to_string(),
                witness: 0,
                chain,
            })
        })
        .collect();
    may_panic.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then_with(|| a.chain.steps().cmp(b.chain.steps()))
    });
    let witness_table = witness_table(&mut may_panic);

    diagnostics.sort();
    diagnostics.dedup();
    CrateReport {
        name: data.name.to_string(),
        version: data.version.clone(),
        root: db.display_path(&data.root_file),
        root_error: map.root_error.clone(),
        files: map.files_read,
        modules: map.modules.iter().filter(|m| !m.is_enum).count(),
        items: map.items,
        functions: map.functions,
        unresolved_imports: map
            .unresolved
            .iter()
            .map(|u| UnresolvedOut {
                path: u.path.clone(),
                file: u.file.clone(),
                line: u.pos.line,
                col: u.pos.col,
            })
            .collect(),
        consts: evaluated,
        unknown_consts: unknown,
        may_panic,
        witness_table,
        diagnostics,
    }
}

/// A diagnostic in the JSON document.
#[derive(Debug, Serialize)]
pub struct DiagnosticOut {
    /// File.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// `error`, `warning` or `note`.
    pub severity: String,
    /// Message.
    pub message: String,
}

/// The whole JSON document.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// Crates in report order.
    pub crates: Vec<&'a CrateReport>,
    /// All diagnostics, sorted.
    pub diagnostics: Vec<DiagnosticOut>,
}

/// All diagnostics of all reports, sorted and deduplicated.
pub fn all_diagnostics(reports: &[Arc<CrateReport>]) -> Vec<Diagnostic> {
    let mut all: Vec<Diagnostic> = reports
        .iter()
        .flat_map(|r| r.diagnostics.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Numbers every witness node once, in the order of the (sorted)
/// `may_panic` list and then along each chain, sets each entry's
/// `witness`, and returns the table. Nodes are shared by the memoized
/// `may_panic` queries, the same in every mode, so the table is too.
fn witness_table(may_panic: &mut [PanicOut]) -> Vec<WitnessStep> {
    let mut index: FxHashMap<*const Witness, usize> = FxHashMap::default();
    let mut nodes: Vec<Arc<Witness>> = Vec::new();
    for p in may_panic.iter_mut() {
        let mut at = Some(p.chain.clone());
        let mut start = None;
        while let Some(node) = at {
            if let Some(&i) = index.get(&Arc::as_ptr(&node)) {
                start.get_or_insert(i);
                break;
            }
            let i = nodes.len();
            index.insert(Arc::as_ptr(&node), i);
            start.get_or_insert(i);
            at = node.next.clone();
            nodes.push(node);
        }
        p.witness = start.expect("a witness has a step");
    }
    nodes
        .iter()
        .map(|n| WitnessStep {
            step: n.step.to_string(),
            next: n.next.as_ref().map(|x| index[&Arc::as_ptr(x)]),
        })
        .collect()
}

/// A witness for the text report: whole when short, else its first and
/// last [`WITNESS_TAIL`] steps around a count (the JSON keeps it whole).
fn short_witness(w: &Witness) -> String {
    if w.len <= 2 * WITNESS_TAIL + 1 {
        return w.steps().map(|s| &**s).collect::<Vec<_>>().join(" -> ");
    }
    let head: Vec<&str> = w.steps().take(WITNESS_TAIL).map(|s| &**s).collect();
    let tail: Vec<&str> = w.tail.iter().map(|s| &**s).collect();
    format!(
        "{} -> … {} more … -> {}",
        head.join(" -> "),
        w.len - 2 * WITNESS_TAIL,
        tail.join(" -> ")
    )
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The text report.
pub fn render_text(reports: &[Arc<CrateReport>]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = write!(out, "crate {}", r.name);
        if let Some(v) = &r.version {
            let _ = write!(out, " {v}");
        }
        out.push('\n');
        if let Some(e) = &r.root_error {
            let _ = writeln!(out, "  root not analyzed: {e}");
        }
        let _ = writeln!(out, "  root: {}", r.root);
        let _ = writeln!(out, "  files: {}", r.files);
        let _ = writeln!(out, "  modules: {}", r.modules);
        let _ = writeln!(out, "  items: {}", r.items);
        let _ = writeln!(out, "  functions: {}", r.functions);
        let _ = writeln!(out, "  unresolved imports: {}", r.unresolved_imports.len());
        for u in &r.unresolved_imports {
            let _ = writeln!(out, "    {}:{}:{}: {}", u.file, u.line, u.col, u.path);
        }
        let _ = writeln!(
            out,
            "  consts: {} evaluated, {} unknown",
            r.consts.len(),
            r.unknown_consts
        );
        for c in &r.consts {
            let _ = writeln!(out, "    {} = {}", c.path, c.value);
        }
        let _ = writeln!(
            out,
            "  may panic: {}",
            plural(r.may_panic.len(), "public function", "public functions")
        );
        for p in &r.may_panic {
            let _ = writeln!(out, "    {}: {}", p.path, short_witness(&p.chain));
        }
        out.push('\n');
    }
    for d in all_diagnostics(reports) {
        let _ = writeln!(
            out,
            "{}:{}:{}: {}: {}",
            d.file, d.line, d.col, d.severity, d.message
        );
    }
    summary(&mut out, reports);
    out
}

/// The text report's last lines: totals, and the crates with the most
/// findings (diagnostics, unresolved imports, public functions that may
/// panic), up to five, most first (ties: report order).
fn summary(out: &mut String, reports: &[Arc<CrateReport>]) {
    let sum = |f: &dyn Fn(&CrateReport) -> usize| reports.iter().map(|r| f(r)).sum::<usize>();
    let diagnostics = all_diagnostics(reports);
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let _ = writeln!(
        out,
        "\nsummary: {}, {}, {}, {}; {} ({}); {}, {} that may panic",
        plural(reports.len(), "crate", "crates"),
        plural(sum(&|r| r.files), "file", "files"),
        plural(sum(&|r| r.items), "item", "items"),
        plural(
            sum(&|r| r.unresolved_imports.len()),
            "unresolved import",
            "unresolved imports"
        ),
        plural(diagnostics.len(), "diagnostic", "diagnostics"),
        plural(errors, "error", "errors"),
        plural(sum(&|r| r.functions), "function", "functions"),
        sum(&|r| r.may_panic.len())
    );
    let mut ranked: Vec<(usize, &CrateReport)> = reports
        .iter()
        .map(|r| {
            let n = r.diagnostics.len() + r.unresolved_imports.len() + r.may_panic.len();
            (n, &**r)
        })
        .filter(|(n, _)| *n > 0)
        .collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    if !ranked.is_empty() {
        let top: Vec<String> = ranked
            .iter()
            .take(5)
            .map(|(n, r)| match &r.version {
                Some(v) => format!("{} {v} ({n})", r.name),
                None => format!("{} ({n})", r.name),
            })
            .collect();
        let _ = writeln!(out, "most findings: {}", top.join(", "));
    }
}

/// The JSON report (one document, pretty-printed, newline-terminated).
pub fn render_json(reports: &[Arc<CrateReport>]) -> String {
    let doc = JsonReport {
        crates: reports.iter().map(|r| &**r).collect(),
        diagnostics: all_diagnostics(reports)
            .into_iter()
            .map(|d| DiagnosticOut {
                file: d.file,
                line: d.line,
                col: d.col,
                severity: d.severity.to_string(),
                message: d.message,
            })
            .collect(),
    };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
