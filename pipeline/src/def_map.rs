//! The `def_map(crate)` query: a crate's module tree, its definitions, and the
//! resolution of its `use` imports.
//!
//! # Module tree
//!
//! Built by [`crate::module_tree`]: module files are found from `mod x;`
//! (`x.rs`, `x/mod.rs`, `#[path]`) and parsed level by level, each level in
//! parallel. A missing file is a diagnostic at the `mod` item; the module then
//! exists but is empty.
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
use weft_queries::{query, Diagnostic};

use crate::crate_graph::CrateId;
use crate::db::{Cx, Db, DefId, FileKey};
use crate::item_tree::{ConstItem, FnBody, IntTy, Name, Path, Pos, UseKind};

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

pub(crate) const ALL_NS: [Ns; 3] = [Ns::Types, Ns::Values, Ns::Macros];

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
    pub(crate) fn ns(&self, ns: Ns) -> &BTreeMap<Name, Binding> {
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
    /// File, as displayed.
    pub file: String,
    /// Position.
    pub pos: Pos,
    /// The path as written (`a::b::*` for a glob).
    pub path: String,
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
    /// Why the crate's root file could not be read or parsed, if it could
    /// not (`file:line:col: message`): then none of its items are known.
    pub root_error: Option<String>,
    /// Methods by the type (or trait) they belong to.
    pub(crate) assoc: FxHashMap<DefId, Vec<(Name, u32)>>,
    /// Names of crates usable as a path's first segment.
    pub(crate) extern_prelude: BTreeMap<Name, Res>,
    /// Every crate this one depends on, transitively, finished.
    pub(crate) dep_maps: FxHashMap<CrateId, Arc<DefMap>>,
    /// Edition 2015: `use` paths are crate-relative.
    pub(crate) edition_2015: bool,
}

/// The `def_map(crate)` query.
#[query(describe = describe_crate)]
pub fn def_map(cx: &Cx<'_>, krate: CrateId) -> Arc<DefMap> {
    Arc::new(build(cx, krate))
}

/// How profiles name a crate key: `name version` (as `Db::crate_label`).
pub(crate) fn describe_crate(db: &Db, krate: &CrateId) -> String {
    db.crate_label(*krate)
}

/// An import waiting for resolution.
pub(crate) struct Import {
    pub(crate) module: u32,
    pub(crate) path: Path,
    pub(crate) kind: UseKind,
    pub(crate) vis: Vis,
    pub(crate) file: u32,
    pub(crate) pos: Pos,
}

/// An `impl` whose methods need their self type resolved.
pub(crate) struct PendingImpl {
    pub(crate) module: u32,
    pub(crate) self_ty: Path,
    pub(crate) fns: Vec<u32>,
}

/// The def map under construction.
pub(crate) struct Builder<'a> {
    pub(crate) map: DefMap,
    pub(crate) db: &'a Db,
    pub(crate) imports: Vec<Import>,
    pub(crate) impls: Vec<PendingImpl>,
    /// Every module file loaded so far (canonical path) and the module it
    /// is the file of: a file reached again is not loaded twice.
    pub(crate) loaded: BTreeMap<PathBuf, u32>,
}

fn build(cx: &Cx<'_>, krate: CrateId) -> DefMap {
    let db = cx.db();
    let data = db.graph.krate(krate);

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
            root_error: None,
            assoc: FxHashMap::default(),
            extern_prelude,
            dep_maps: FxHashMap::default(),
            edition_2015: data.edition_2015,
        },
        db,
        imports: Vec::new(),
        impls: Vec::new(),
        loaded: BTreeMap::new(),
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
    b.loaded.insert(
        std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone()),
        0,
    );
    b.load_modules(
        cx,
        vec![crate::module_tree::FileJob {
            file: root,
            module: 0,
            child_dir,
        }],
    );
    // Only now wait for every dependency's def map (transitively), in
    // parallel: parsing this crate's files needs none of them, so a crate's
    // files are read while its dependencies are still being analyzed.
    let mut closure = BTreeSet::new();
    let mut stack: Vec<CrateId> = data.deps.iter().filter_map(|d| d.1).collect();
    while let Some(k) = stack.pop() {
        if closure.insert(k) {
            stack.extend(db.graph.krate(k).deps.iter().filter_map(|d| d.1));
        }
    }
    let closure: Vec<CrateId> = closure.into_iter().collect();
    let maps = weft_runtime::par_map(&closure, |_, k| cx.def_map(*k));
    b.map.dep_maps = closure.into_iter().zip(maps).collect();
    b.resolve_imports();
    b.resolve_impls();
    b.map.unresolved.sort();
    b.map.diagnostics.sort();
    b.map
}

impl Builder<'_> {
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
                        let target = self
                            .map
                            .resolve_path(imp.module, &imp.path, Ns::Types, true);
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
                                    copies.push((
                                        ns,
                                        name.clone(),
                                        b.res,
                                        self.map.narrower(imp.vis, b.vis),
                                    ));
                                }
                            }
                        }
                        if k != self.map.krate {
                            done[i] = true;
                        }
                        let scope = &mut self.map.modules[imp.module as usize].scope;
                        for (ns, name, res, vis) in copies {
                            let binding = Binding {
                                res,
                                vis,
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
                UseKind::Glob => match self
                    .map
                    .resolve_path(imp.module, &imp.path, Ns::Types, true)
                {
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
            let PathRes::Def(ty) =
                self.map
                    .resolve_path(imp.module, &imp.self_ty, Ns::Types, false)
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
pub(crate) fn bind(scope: &mut Scope, ns: Ns, name: &Name, binding: Binding) -> bool {
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
