//! The `def_map(crate)` query: a crate's module tree, its definitions, and the
//! resolution of its `use` imports.
//!
//! # Module tree
//!
//! Starting at the crate root, `mod x;` is looked up as `x.rs` then `x/mod.rs`
//! in the declaring module's directory (`dir/` for a crate root, `mod.rs` or
//! `#[path]` file, `dir/name/` for a non-`mod.rs` file `name.rs`, extended by
//! inline `mod` names), or at `#[path = ".."]`. Files are parsed level by
//! level, each level in parallel (`par_map` over `parse`). A missing file is a
//! diagnostic at the `mod` item; the module then exists but is empty. A file
//! reached twice (a `#[path]` loop) is loaded once.
//!
//! # Names
//!
//! Each module has a scope with three namespaces (types, values, macros);
//! enums are modules of their variants. Items are bound first, then imports
//! are resolved to a fixed point inside this one query: every round retries
//! every import; named imports and items shadow glob imports; a glob copies
//! the bindings of its module that are visible from the importing module. The
//! round loop ends when a round binds nothing new (bindings only grow, so it
//! ends). Paths into dependency crates look into those crates' finished def
//! maps, which this query waits on first (the crate graph is acyclic, so this
//! is never a query cycle). Imports still without a binding are unresolved,
//! unless the path leads into a crate that is not analyzed (std, core, alloc,
//! or a dependency without `--deps`): those are external.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use weft_queries::{Diagnostic, Query, Severity};

use crate::crate_graph::CrateId;
use crate::db::{Cx, Db, DefId, FileKey};
use crate::item_tree::{
    count_items, ConstItem, FnBody, IntTy, Item, ItemKind, Name, Path, Pos, RawVis, UseKind,
};
use crate::source::ParseQuery;

/// Crates that are always present and never analyzed.
const BUILTIN_CRATES: [&str; 5] = ["std", "core", "alloc", "proc_macro", "test"];

/// A namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// Modules, types, traits, crates.
    Types,
    /// Functions, consts, statics.
    Values,
    /// Macros.
    Macros,
}

const ALL_NS: [Ns; 3] = [Ns::Types, Ns::Values, Ns::Macros];

/// What a name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Res {
    /// A definition in an analyzed crate.
    Def(DefId),
    /// Something in a crate that is not analyzed.
    External,
}

/// Visibility of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vis {
    /// `pub`.
    Public,
    /// Visible in this module (of the binding's crate) and its descendants.
    In(u32),
}

/// A name bound in a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// What it names.
    pub res: Res,
    /// Who may see it.
    pub vis: Vis,
    /// Bound by a glob import (shadowed by anything else).
    pub glob: bool,
}

/// The names of one module.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    types: BTreeMap<Name, Binding>,
    values: BTreeMap<Name, Binding>,
    macros: BTreeMap<Name, Binding>,
}

impl Scope {
    fn ns(&self, ns: Ns) -> &BTreeMap<Name, Binding> {
        match ns {
            Ns::Types => &self.types,
            Ns::Values => &self.values,
            Ns::Macros => &self.macros,
        }
    }

    fn ns_mut(&mut self, ns: Ns) -> &mut BTreeMap<Name, Binding> {
        match ns {
            Ns::Types => &mut self.types,
            Ns::Values => &mut self.values,
            Ns::Macros => &mut self.macros,
        }
    }

    /// The binding of `name` in `ns`.
    pub fn get(&self, ns: Ns, name: &str) -> Option<&Binding> {
        self.ns(ns).get(name)
    }
}

/// A module (or the variant scope of an enum).
#[derive(Debug, Clone)]
pub struct ModuleData {
    /// Parent module.
    pub parent: Option<u32>,
    /// The definition of this module (or enum).
    pub def: u32,
    /// Whether this is an enum's variant scope.
    pub is_enum: bool,
    /// The names bound here.
    pub scope: Scope,
}

/// What a definition is.
#[derive(Debug, Clone)]
pub enum DefKind {
    /// A module; its index in [`DefMap::modules`].
    Module(u32),
    /// An enum; the index of its variant scope.
    Enum(u32),
    /// An enum variant.
    Variant,
    /// A struct, union, trait or type alias.
    Type,
    /// A trait.
    Trait,
    /// A function with a body.
    Fn {
        /// Body summary.
        body: Arc<FnBody>,
        /// For a method: the type of its `impl`, when resolved.
        self_ty: Option<DefId>,
        /// A free function or inherent method declared `pub`.
        public: bool,
    },
    /// A `const`.
    Const(Arc<ConstItem>),
    /// A `static`.
    Static(Arc<ConstItem>),
    /// A macro.
    Macro,
    /// An `extern crate` item.
    ExternCrate,
}

/// One definition.
#[derive(Debug, Clone)]
pub struct DefData {
    /// Name.
    pub name: Name,
    /// What it is.
    pub kind: DefKind,
    /// The module it is declared in.
    pub module: u32,
    /// Index into [`DefMap::files`].
    pub file: u32,
    /// Position of its name.
    pub pos: Pos,
    /// Path within the crate (`a::b::C`; `""` for the crate root).
    pub path: Arc<str>,
}

/// An import that resolved to nothing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnresolvedImport {
    /// The path as written (`a::b::*` for a glob).
    pub path: String,
    /// File, as displayed.
    pub file: String,
    /// Position.
    pub pos: Pos,
}

/// Result of resolving a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRes {
    /// A definition.
    Def(DefId),
    /// Into a crate that is not analyzed.
    External,
    /// A primitive integer type (`u32` in `u32::MAX`).
    Primitive(IntTy),
    /// Nothing.
    Unresolved,
}

/// A crate's module tree, definitions and resolved names.
#[derive(Debug)]
pub struct DefMap {
    /// The crate.
    pub krate: CrateId,
    /// Modules; index 0 is the crate root.
    pub modules: Vec<ModuleData>,
    /// Definitions; index 0 is the crate root module.
    pub defs: Vec<DefData>,
    /// Module files in discovery order.
    pub files: Vec<FileKey>,
    /// Files whose text was read.
    pub files_read: usize,
    /// Items (see `item_tree::count_items`).
    pub items: usize,
    /// Functions with bodies.
    pub functions: usize,
    /// Imports that resolved to nothing, sorted.
    pub unresolved: Vec<UnresolvedImport>,
    /// File, parse and module diagnostics.
    pub diagnostics: Vec<Diagnostic>,
    /// Methods by the type (or trait) they belong to.
    assoc: FxHashMap<DefId, Vec<(Name, u32)>>,
    /// Names of crates usable as a path's first segment.
    extern_prelude: BTreeMap<Name, Res>,
    /// Every crate this one depends on, transitively, finished.
    dep_maps: FxHashMap<CrateId, Arc<DefMap>>,
    edition_2015: bool,
}

/// The `def_map(crate)` query.
pub struct DefMapQuery;

impl Query for DefMapQuery {
    type Db = Db;
    type Key = CrateId;
    type Value = Arc<DefMap>;
    const NAME: &'static str = "def_map";

    fn compute(cx: &Cx<'_>, krate: &CrateId) -> Arc<DefMap> {
        Arc::new(build(cx, *krate))
    }
}

/// An import waiting for resolution.
struct Import {
    module: u32,
    path: Path,
    kind: UseKind,
    vis: Vis,
    file: u32,
    pos: Pos,
}

/// An `impl` whose methods need their self type resolved.
struct PendingImpl {
    module: u32,
    self_ty: Path,
    fns: Vec<u32>,
}

/// A module file to load.
struct FileJob {
    file: PathBuf,
    module: u32,
    child_dir: PathBuf,
}

struct Builder<'a> {
    map: DefMap,
    db: &'a Db,
    imports: Vec<Import>,
    impls: Vec<PendingImpl>,
    loaded: BTreeSet<PathBuf>,
}

fn build(cx: &Cx<'_>, krate: CrateId) -> DefMap {
    let db = cx.db();
    let data = db.graph.krate(krate);

    // Wait for every dependency's def map (transitively) first, in parallel.
    let mut closure = BTreeSet::new();
    let mut stack: Vec<CrateId> = data.deps.iter().filter_map(|d| d.1).collect();
    while let Some(k) = stack.pop() {
        if closure.insert(k) {
            stack.extend(db.graph.krate(k).deps.iter().filter_map(|d| d.1));
        }
    }
    let closure: Vec<CrateId> = closure.into_iter().collect();
    let maps = weft_runtime::par_map(&closure, |_, k| cx.get::<DefMapQuery>(*k));
    let dep_maps: FxHashMap<CrateId, Arc<DefMap>> = closure.into_iter().zip(maps).collect();

    let mut extern_prelude = BTreeMap::new();
    for (name, dep) in &data.deps {
        let res = match dep {
            Some(k) => Res::Def(DefId {
                krate: *k,
                index: 0,
            }),
            None => Res::External,
        };
        extern_prelude.insert(name.clone(), res);
    }

    let mut b = Builder {
        map: DefMap {
            krate,
            modules: Vec::new(),
            defs: Vec::new(),
            files: Vec::new(),
            files_read: 0,
            items: 0,
            functions: 0,
            unresolved: Vec::new(),
            diagnostics: Vec::new(),
            assoc: FxHashMap::default(),
            extern_prelude,
            dep_maps,
            edition_2015: data.edition_2015,
        },
        db,
        imports: Vec::new(),
        impls: Vec::new(),
        loaded: BTreeSet::new(),
    };
    b.map.defs.push(DefData {
        name: data.name.clone(),
        kind: DefKind::Module(0),
        module: 0,
        file: 0,
        pos: Pos { line: 1, col: 1 },
        path: Arc::from(""),
    });
    b.map.modules.push(ModuleData {
        parent: None,
        def: 0,
        is_enum: false,
        scope: Scope::default(),
    });
    let root = data.root_file.clone();
    let child_dir = root.parent().map(FsPath::to_path_buf).unwrap_or_default();
    b.load_modules(
        cx,
        vec![FileJob {
            file: root,
            module: 0,
            child_dir,
        }],
    );
    b.resolve_imports();
    b.resolve_impls();
    b.map.unresolved.sort();
    b.map.diagnostics.sort();
    b.map
}

fn diag(file: String, pos: Pos, severity: Severity, message: String) -> Diagnostic {
    Diagnostic {
        file,
        line: pos.line,
        col: pos.col,
        severity,
        message,
    }
}

impl Builder<'_> {
    /// Loads module files level by level; each level is parsed in parallel.
    fn load_modules(&mut self, cx: &Cx<'_>, mut level: Vec<FileJob>) {
        while !level.is_empty() {
            let parsed = weft_runtime::par_map(&level, |_, job| {
                cx.get::<ParseQuery>(FileKey(Arc::from(job.file.as_path())))
            });
            let mut next = Vec::new();
            for (job, pf) in level.iter().zip(parsed) {
                let file = self.map.files.len() as u32;
                self.map.files.push(FileKey(Arc::from(job.file.as_path())));
                if pf.read {
                    self.map.files_read += 1;
                }
                if let Some((pos, msg)) = &pf.error {
                    let shown = self.db.display_path(&job.file);
                    self.map
                        .diagnostics
                        .push(diag(shown, *pos, Severity::Error, msg.to_string()));
                }
                let (items, fns) = count_items(&pf.tree.items);
                self.map.items += items;
                self.map.functions += fns;
                let file_dir = job.file.parent().map(FsPath::to_path_buf).unwrap_or_default();
                self.collect(
                    &pf.tree.items,
                    job.module,
                    file,
                    &job.child_dir,
                    &file_dir,
                    false,
                    &mut next,
                );
            }
            level = next;
        }
    }

    fn vis(&self, raw: &RawVis, module: u32) -> Vis {
        match raw {
            RawVis::Public => Vis::Public,
            RawVis::Private | RawVis::SelfMod => Vis::In(module),
            RawVis::Crate => Vis::In(0),
            RawVis::Super => Vis::In(self.map.modules[module as usize].parent.unwrap_or(0)),
        }
    }

    fn path_in(&self, module: u32, name: &str) -> Arc<str> {
        let m = &self.map.defs[self.map.modules[module as usize].def as usize].path;
        if m.is_empty() {
            Arc::from(name)
        } else {
            Arc::from(format!("{m}::{name}"))
        }
    }

    fn add_def(&mut self, name: Name, kind: DefKind, module: u32, file: u32, pos: Pos) -> u32 {
        let path = self.path_in(module, &name);
        self.add_def_at(name, kind, module, file, pos, path)
    }

    fn add_def_at(
        &mut self,
        name: Name,
        kind: DefKind,
        module: u32,
        file: u32,
        pos: Pos,
        path: Arc<str>,
    ) -> u32 {
        let index = self.map.defs.len() as u32;
        self.map.defs.push(DefData {
            name,
            kind,
            module,
            file,
            pos,
            path,
        });
        index
    }

    fn new_module(&mut self, parent: u32, def: u32, is_enum: bool) -> u32 {
        let index = self.map.modules.len() as u32;
        self.map.modules.push(ModuleData {
            parent: Some(parent),
            def,
            is_enum,
            scope: Scope::default(),
        });
        index
    }

    fn bind_item(&mut self, module: u32, ns: Ns, name: &Name, index: u32, vis: Vis) {
        let binding = Binding {
            res: Res::Def(DefId {
                krate: self.map.krate,
                index,
            }),
            vis,
            glob: false,
        };
        bind(&mut self.map.modules[module as usize].scope, ns, name, binding);
    }

    #[allow(clippy::too_many_arguments)]
    fn collect(
        &mut self,
        items: &[Item],
        module: u32,
        file: u32,
        child_dir: &FsPath,
        file_dir: &FsPath,
        inline: bool,
        next: &mut Vec<FileJob>,
    ) {
        for item in items {
            let vis = self.vis(&item.vis, module);
            let name = &item.name;
            match &item.kind {
                ItemKind::Mod { body, path_attr } => {
                    let def = self.add_def(name.clone(), DefKind::Module(0), module, file, item.pos);
                    let m = self.new_module(module, def, false);
                    self.map.defs[def as usize].kind = DefKind::Module(m);
                    self.bind_item(module, Ns::Types, name, def, vis);
                    match body {
                        Some(body) => {
                            let dir = child_dir.join(path_attr.as_deref().unwrap_or(name));
                            self.collect(body, m, file, &dir, file_dir, true, next);
                        }
                        None => self.out_of_line(name, path_attr, m, file, item.pos, child_dir, file_dir, inline, next),
                    }
                }
                ItemKind::Use(imports) => {
                    for imp in imports {
                        self.imports.push(Import {
                            module,
                            path: imp.path.clone(),
                            kind: imp.kind.clone(),
                            vis,
                            file,
                            pos: imp.pos,
                        });
                    }
                }
                ItemKind::ExternCrate { krate } => {
                    let res = if &**krate == "self" {
                        Res::Def(DefId {
                            krate: self.map.krate,
                            index: 0,
                        })
                    } else {
                        self.map
                            .extern_prelude
                            .get(krate)
                            .copied()
                            .unwrap_or(Res::External)
                    };
                    self.add_def(name.clone(), DefKind::ExternCrate, module, file, item.pos);
                    let binding = Binding {
                        res,
                        vis,
                        glob: false,
                    };
                    bind(&mut self.map.modules[module as usize].scope, Ns::Types, name, binding);
                    if module == 0 {
                        self.map.extern_prelude.entry(name.clone()).or_insert(res);
                    }
                }
                ItemKind::Const(c) => {
                    let def = self.add_def(name.clone(), DefKind::Const(c.clone()), module, file, item.pos);
                    self.bind_item(module, Ns::Values, name, def, vis);
                }
                ItemKind::Static(c) => {
                    let def = self.add_def(name.clone(), DefKind::Static(c.clone()), module, file, item.pos);
                    self.bind_item(module, Ns::Values, name, def, vis);
                }
                ItemKind::Fn { body, proc_macro } => {
                    let kind = DefKind::Fn {
                        body: body.clone(),
                        self_ty: None,
                        public: item.vis == RawVis::Public,
                    };
                    let def = self.add_def(name.clone(), kind, module, file, item.pos);
                    self.bind_item(module, Ns::Values, name, def, vis);
                    if let Some(mac) = proc_macro {
                        let def = self.add_def(mac.clone(), DefKind::Macro, 0, file, item.pos);
                        self.bind_item(0, Ns::Macros, mac, def, Vis::Public);
                    }
                }
                ItemKind::Struct | ItemKind::Union | ItemKind::TypeAlias => {
                    let def = self.add_def(name.clone(), DefKind::Type, module, file, item.pos);
                    self.bind_item(module, Ns::Types, name, def, vis);
                }
                ItemKind::Enum { variants } => {
                    let def = self.add_def(name.clone(), DefKind::Enum(0), module, file, item.pos);
                    let m = self.new_module(module, def, true);
                    self.map.defs[def as usize].kind = DefKind::Enum(m);
                    self.bind_item(module, Ns::Types, name, def, vis);
                    for v in variants {
                        let vdef = self.add_def(v.clone(), DefKind::Variant, m, file, item.pos);
                        self.bind_item(m, Ns::Types, v, vdef, Vis::Public);
                        self.bind_item(m, Ns::Values, v, vdef, Vis::Public);
                    }
                }
                ItemKind::Trait { fns } => {
                    let def = self.add_def(name.clone(), DefKind::Trait, module, file, item.pos);
                    self.bind_item(module, Ns::Types, name, def, vis);
                    let trait_path = self.map.defs[def as usize].path.clone();
                    let mut list = Vec::new();
                    for f in fns {
                        let kind = DefKind::Fn {
                            body: f.body.clone(),
                            self_ty: None,
                            public: false,
                        };
                        let path = Arc::from(format!("{trait_path}::{}", f.name));
                        let fdef = self.add_def_at(f.name.clone(), kind, module, file, f.pos, path);
                        list.push((f.name.clone(), fdef));
                    }
                    let key = DefId {
                        krate: self.map.krate,
                        index: def,
                    };
                    self.map.assoc.entry(key).or_default().extend(list);
                }
                ItemKind::MacroRules { exported } => {
                    let def = self.add_def(name.clone(), DefKind::Macro, module, file, item.pos);
                    self.bind_item(module, Ns::Macros, name, def, Vis::In(module));
                    if *exported {
                        self.bind_item(0, Ns::Macros, name, def, Vis::Public);
                    }
                }
                ItemKind::Impl {
                    self_ty,
                    is_trait_impl,
                    fns,
                } => {
                    let ty_name = self_ty
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "<impl>".to_string());
                    let mut defs = Vec::new();
                    for f in fns {
                        let kind = DefKind::Fn {
                            body: f.body.clone(),
                            self_ty: None,
                            public: !is_trait_impl && f.vis == RawVis::Public,
                        };
                        let path = self.path_in(module, &format!("{ty_name}::{}", f.name));
                        defs.push(self.add_def_at(f.name.clone(), kind, module, file, f.pos, path));
                    }
                    if let Some(p) = self_ty {
                        self.impls.push(PendingImpl {
                            module,
                            self_ty: p.clone(),
                            fns: defs,
                        });
                    }
                }
                ItemKind::Other => {}
            }
        }
    }

    /// Finds the file of `mod name;` and queues it.
    #[allow(clippy::too_many_arguments)]
    fn out_of_line(
        &mut self,
        name: &Name,
        path_attr: &Option<String>,
        module: u32,
        file: u32,
        pos: Pos,
        child_dir: &FsPath,
        file_dir: &FsPath,
        inline: bool,
        next: &mut Vec<FileJob>,
    ) {
        let found = match path_attr {
            Some(p) => {
                let f = if inline { child_dir.join(p) } else { file_dir.join(p) };
                let dir = f.parent().map(FsPath::to_path_buf).unwrap_or_default();
                Some((f, dir))
            }
            None => {
                let flat = child_dir.join(format!("{name}.rs"));
                let nested = child_dir.join(&**name).join("mod.rs");
                if flat.exists() {
                    Some((flat, child_dir.join(&**name)))
                } else if nested.exists() {
                    Some((nested, child_dir.join(&**name)))
                } else {
                    let shown = self.db.display_path(&self.map.files[file as usize].0);
                    let msg = format!(
                        "file not found for module `{name}` (looked for `{}` and `{}`)",
                        self.db.display_path(&flat),
                        self.db.display_path(&nested)
                    );
                    self.map.diagnostics.push(diag(shown, pos, Severity::Error, msg));
                    None
                }
            }
        };
        if let Some((f, dir)) = found {
            let canonical = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if !self.loaded.insert(canonical) {
                let shown = self.db.display_path(&self.map.files[file as usize].0);
                let msg = format!(
                    "file `{}` is already loaded as another module; not loaded again",
                    self.db.display_path(&f)
                );
                self.map.diagnostics.push(diag(shown, pos, Severity::Warning, msg));
                return;
            }
            next.push(FileJob {
                file: f,
                module,
                child_dir: dir,
            });
        }
    }

    /// The import fixed point (see the module doc).
    fn resolve_imports(&mut self) {
        let mut done = vec![false; self.imports.len()];
        loop {
            let mut changed = false;
            for (i, imp) in self.imports.iter().enumerate() {
                if done[i] {
                    continue;
                }
                match &imp.kind {
                    UseKind::Named { alias } => {
                        let found = self.map.resolve_import(imp.module, &imp.path);
                        if found.iter().all(Option::is_some) {
                            done[i] = true;
                        }
                        if &**alias == "_" {
                            continue;
                        }
                        for (ns, res) in ALL_NS.iter().zip(found) {
                            if let Some(res) = res {
                                let binding = Binding {
                                    res,
                                    vis: imp.vis,
                                    glob: false,
                                };
                                let scope = &mut self.map.modules[imp.module as usize].scope;
                                changed |= bind(scope, *ns, alias, binding);
                            }
                        }
                    }
                    UseKind::Glob => {
                        let target = self.map.resolve_path(imp.module, &imp.path, Ns::Types, true);
                        let PathRes::Def(d) = target else {
                            if target != PathRes::Unresolved {
                                done[i] = true;
                            }
                            continue;
                        };
                        let Some((k, m)) = self.map.as_module(d) else {
                            continue;
                        };
                        if k == self.map.krate && m == imp.module {
                            continue;
                        }
                        let mut copies = Vec::new();
                        let src = &self.map.map(k).modules[m as usize].scope;
                        for ns in ALL_NS {
                            for (name, b) in src.ns(ns) {
                                if self.map.visible(k, b.vis, imp.module) {
                                    copies.push((ns, name.clone(), b.res));
                                }
                            }
                        }
                        if k != self.map.krate {
                            done[i] = true;
                        }
                        let scope = &mut self.map.modules[imp.module as usize].scope;
                        for (ns, name, res) in copies {
                            let binding = Binding {
                                res,
                                vis: imp.vis,
                                glob: true,
                            };
                            changed |= bind(scope, ns, &name, binding);
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        // What is still unresolved now stays so.
        for imp in &self.imports {
            let resolved = match &imp.kind {
                UseKind::Named { .. } => self
                    .map
                    .resolve_import(imp.module, &imp.path)
                    .iter()
                    .any(Option::is_some),
                UseKind::Glob => match self.map.resolve_path(imp.module, &imp.path, Ns::Types, true) {
                    PathRes::Def(d) => self.map.as_module(d).is_some(),
                    PathRes::External => true,
                    _ => false,
                },
            };
            if !resolved {
                let mut path = imp.path.to_string();
                if imp.kind == UseKind::Glob {
                    path.push_str(if path.is_empty() { "*" } else { "::*" });
                }
                let file = self.db.display_path(&self.map.files[imp.file as usize].0);
                self.map.unresolved.push(UnresolvedImport {
                    path,
                    file,
                    pos: imp.pos,
                });
            }
        }
    }

    /// Resolves the self types of `impl` blocks and records their methods.
    fn resolve_impls(&mut self) {
        for imp in std::mem::take(&mut self.impls) {
            let PathRes::Def(ty) = self.map.resolve_path(imp.module, &imp.self_ty, Ns::Types, false)
            else {
                continue;
            };
            for f in &imp.fns {
                let def = &mut self.map.defs[*f as usize];
                if let DefKind::Fn { self_ty, .. } = &mut def.kind {
                    *self_ty = Some(ty);
                }
                let name = def.name.clone();
                self.map.assoc.entry(ty).or_default().push((name, *f));
            }
        }
    }
}

/// Binds `name` unless something at least as strong is bound; returns whether
/// the scope changed. Items and named imports shadow glob imports.
fn bind(scope: &mut Scope, ns: Ns, name: &Name, binding: Binding) -> bool {
    let map = scope.ns_mut(ns);
    match map.get(name) {
        None => {
            map.insert(name.clone(), binding);
            true
        }
        Some(old) if old.glob && !binding.glob => {
            map.insert(name.clone(), binding);
            true
        }
        Some(_) => false,
    }
}

impl DefMap {
    /// The def map of `krate`: this one or a (transitive) dependency's.
    pub fn map(&self, krate: CrateId) -> &DefMap {
        if krate == self.krate {
            self
        } else {
            &self.dep_maps[&krate]
        }
    }

    /// A definition of this crate or of a dependency.
    pub fn def(&self, id: DefId) -> &DefData {
        &self.map(id.krate).defs[id.index as usize]
    }

    /// The module (or enum scope) that `d` is, as `(crate, module)`.
    pub fn as_module(&self, d: DefId) -> Option<(CrateId, u32)> {
        match self.def(d).kind {
            DefKind::Module(m) | DefKind::Enum(m) => Some((d.krate, m)),
            _ => None,
        }
    }

    /// Whether a binding of crate `owner` with `vis` is visible from `module` of this crate.
    fn visible(&self, owner: CrateId, vis: Vis, module: u32) -> bool {
        match vis {
            Vis::Public => true,
            Vis::In(v) => {
                if owner != self.krate {
                    return false;
                }
                let mut m = Some(module);
                while let Some(cur) = m {
                    if cur == v {
                        return true;
                    }
                    m = self.modules[cur as usize].parent;
                }
                false
            }
        }
    }

    fn lookup(&self, (krate, module): (CrateId, u32), name: &str, ns: Ns) -> Option<Binding> {
        self.map(krate).modules[module as usize]
            .scope
            .get(ns, name)
            .copied()
    }

    fn parent_module(&self, res: PathRes) -> PathRes {
        match res {
            PathRes::Def(d) => match self.as_module(d) {
                Some((k, m)) => match self.map(k).modules[m as usize].parent {
                    Some(p) => PathRes::Def(DefId {
                        krate: k,
                        index: self.map(k).modules[p as usize].def,
                    }),
                    None => PathRes::Unresolved,
                },
                None => PathRes::Unresolved,
            },
            _ => PathRes::Unresolved,
        }
    }

    fn module_def(&self, module: u32) -> PathRes {
        PathRes::Def(DefId {
            krate: self.krate,
            index: self.modules[module as usize].def,
        })
    }

    /// Resolves a path's first (plain) segment seen from `module`.
    fn resolve_first(&self, module: u32, name: &str, ns: Ns, import: bool) -> PathRes {
        let scope_module = if import && self.edition_2015 { 0 } else { module };
        if let Some(b) = self.lookup((self.krate, scope_module), name, ns) {
            return res_to_path(b.res);
        }
        self.resolve_crate_name(name, ns)
    }

    fn resolve_crate_name(&self, name: &str, ns: Ns) -> PathRes {
        if ns == Ns::Types {
            if let Some(res) = self.extern_prelude.get(name) {
                return res_to_path(*res);
            }
            if BUILTIN_CRATES.contains(&name) {
                return PathRes::External;
            }
            if let Some(ty) = IntTy::from_name(name) {
                return PathRes::Primitive(ty);
            }
        }
        PathRes::Unresolved
    }

    /// Resolves `path` from `module`; the last segment in `ns`, the others as
    /// modules. `import` selects `use` path rules (edition 2015: crate-relative).
    pub fn resolve_path(&self, module: u32, path: &Path, ns: Ns, import: bool) -> PathRes {
        let segs = &path.segments;
        let n = segs.len();
        if n == 0 {
            return if import && !path.global {
                self.module_def(module)
            } else {
                PathRes::Unresolved
            };
        }
        let ns_at = |i: usize| if i + 1 == n { ns } else { Ns::Types };
        let mut cur = match &*segs[0] {
            "crate" | "$crate" => self.module_def(0),
            "self" => self.module_def(module),
            "super" => self.parent_module(self.module_def(module)),
            first if path.global => {
                if self.edition_2015 {
                    self.lookup((self.krate, 0), first, ns_at(0))
                        .map(|b| res_to_path(b.res))
                        .unwrap_or_else(|| self.resolve_crate_name(first, Ns::Types))
                } else {
                    self.resolve_crate_name(first, Ns::Types)
                }
            }
            first => self.resolve_first(module, first, ns_at(0), import),
        };
        for (i, seg) in segs.iter().enumerate().skip(1) {
            match &**seg {
                "super" => {
                    cur = self.parent_module(cur);
                    continue;
                }
                "self" => continue,
                _ => {}
            }
            cur = match cur {
                PathRes::Def(d) => match self.as_module(d) {
                    Some(mk) => match self.lookup(mk, seg, ns_at(i)) {
                        Some(b) => res_to_path(b.res),
                        None if i + 1 == n => self.assoc_fn(d, seg),
                        None => PathRes::Unresolved,
                    },
                    None if i + 1 == n => self.assoc_fn(d, seg),
                    None => PathRes::Unresolved,
                },
                PathRes::External | PathRes::Primitive(_) => return PathRes::External,
                PathRes::Unresolved => return PathRes::Unresolved,
            };
        }
        cur
    }

    /// A method of type (or trait) `ty`, from the type's crate or this one.
    pub fn assoc_fn(&self, ty: DefId, name: &str) -> PathRes {
        let mut crates = vec![ty.krate];
        if ty.krate != self.krate {
            crates.push(self.krate);
        }
        for k in crates {
            if let Some(list) = self.map(k).assoc.get(&ty) {
                if let Some((_, f)) = list.iter().find(|(n, _)| &**n == name) {
                    return PathRes::Def(DefId { krate: k, index: *f });
                }
            }
        }
        PathRes::Unresolved
    }

    /// A named import's target in each namespace (`None`: not found there).
    fn resolve_import(&self, module: u32, path: &Path) -> [Option<Res>; 3] {
        let Some((last, prefix)) = path.segments.split_last() else {
            return [None; 3];
        };
        let scope = if prefix.is_empty() && !path.global {
            match &**last {
                "crate" | "self" | "super" => {
                    let r = self.resolve_path(module, path, Ns::Types, true);
                    return [path_to_res(r), None, None];
                }
                _ => {
                    let mut out = [None; 3];
                    for (i, ns) in ALL_NS.iter().enumerate() {
                        out[i] = path_to_res(self.resolve_first(module, last, *ns, true));
                    }
                    // `use serde;`: a crate name binds in every namespace it exists in.
                    return out;
                }
            }
        } else {
            let p = Path {
                global: path.global,
                segments: prefix.to_vec(),
            };
            if prefix.is_empty() {
                // `use ::name;`
                return [path_to_res(self.resolve_path(module, path, Ns::Types, true)), None, None];
            }
            self.resolve_path(module, &p, Ns::Types, true)
        };
        match scope {
            PathRes::External | PathRes::Primitive(_) => [Some(Res::External); 3],
            PathRes::Def(d) => match self.as_module(d) {
                Some(mk) => {
                    let mut out = [None; 3];
                    for (i, ns) in ALL_NS.iter().enumerate() {
                        out[i] = self.lookup(mk, last, *ns).map(|b| b.res);
                    }
                    out
                }
                None => [None; 3],
            },
            PathRes::Unresolved => [None; 3],
        }
    }
}

fn res_to_path(res: Res) -> PathRes {
    match res {
        Res::Def(d) => PathRes::Def(d),
        Res::External => PathRes::External,
    }
}

fn path_to_res(p: PathRes) -> Option<Res> {
    match p {
        PathRes::Def(d) => Some(Res::Def(d)),
        PathRes::External | PathRes::Primitive(_) => Some(Res::External),
        PathRes::Unresolved => None,
    }
}
