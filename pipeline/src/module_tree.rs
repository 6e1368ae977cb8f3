//! Module tree collection for `def_map`: loading module files level by level
//! (each level parsed in parallel) and binding every item in its module.
//!
//! `mod x;` is looked up as `x.rs`, then `x/mod.rs`, in the declaring module's
//! directory: `dir/` for a crate root, a `mod.rs` file or a `#[path]` file;
//! `dir/name/` for a non-`mod.rs` file `name.rs`; extended by the names of
//! enclosing inline modules. `#[path = ".."]` is relative to the declaring
//! file's directory (or to the inline module's directory inside one). A file
//! reached a second time (a `#[path]` loop) is not loaded again.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use weft_queries::{Diagnostic, Severity};

use crate::db::{Cx, DefId, FileKey};
use crate::def_map::{
    bind, Binding, Builder, DefData, DefKind, Import, ModuleData, Ns, PendingImpl, Res, Scope, Vis,
};
use crate::item_tree::{count_items, Item, ItemKind, Name, Pos, RawVis};
use crate::source::ParseQuery;

/// A module file to load.
pub(crate) struct FileJob {
    pub(crate) file: PathBuf,
    pub(crate) module: u32,
    pub(crate) child_dir: PathBuf,
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
    pub(crate) fn load_modules(&mut self, cx: &Cx<'_>, mut level: Vec<FileJob>) {
        while !level.is_empty() {
            let parsed = weft_runtime::par_map(&level, |_, job| {
                cx.parse(FileKey(Arc::from(job.file.as_path())))
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
                    if file == 0 {
                        self.map.root_error =
                            Some(format!("{shown}:{}:{}: {msg}", pos.line, pos.col));
                    }
                    self.map
                        .diagnostics
                        .push(diag(shown, *pos, Severity::Error, msg.to_string()));
                }
                let (items, fns) = count_items(&pf.tree.items);
                self.map.items += items;
                self.map.functions += fns;
                let file_dir = job
                    .file
                    .parent()
                    .map(FsPath::to_path_buf)
                    .unwrap_or_default();
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
        bind(
            &mut self.map.modules[module as usize].scope,
            ns,
            name,
            binding,
        );
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
                    let def =
                        self.add_def(name.clone(), DefKind::Module(0), module, file, item.pos);
                    let m = self.new_module(module, def, false);
                    self.map.defs[def as usize].kind = DefKind::Module(m);
                    self.bind_item(module, Ns::Types, name, def, vis);
                    match body {
                        Some(body) => {
                            let dir = child_dir.join(path_attr.as_deref().unwrap_or(name));
                            self.collect(body, m, file, &dir, file_dir, true, next);
                        }
                        None => self.out_of_line(
                            name, path_attr, m, file, item.pos, child_dir, file_dir, inline, next,
                        ),
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
                    bind(
                        &mut self.map.modules[module as usize].scope,
                        Ns::Types,
                        name,
                        binding,
                    );
                    if module == 0 {
                        self.map.extern_prelude.entry(name.clone()).or_insert(res);
                    }
                }
                ItemKind::Const(c) => {
                    let def = self.add_def(
                        name.clone(),
                        DefKind::Const(c.clone()),
                        module,
                        file,
                        item.pos,
                    );
                    self.bind_item(module, Ns::Values, name, def, vis);
                }
                ItemKind::Static(c) => {
                    let def = self.add_def(
                        name.clone(),
                        DefKind::Static(c.clone()),
                        module,
                        file,
                        item.pos,
                    );
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
                let f = if inline {
                    child_dir.join(p)
                } else {
                    file_dir.join(p)
                };
                let dir = f.parent().map(FsPath::to_path_buf).unwrap_or_default();
                Some((f, dir))
            }
            None => {
                let flat = child_dir.join(format!("{name}.rs"));
                let nested = child_dir.join(&**name).join("mod.rs");
                // "Exists" as rustc means it: present, even if unreadable
                // (a symlink loop is found, then reported as what it is).
                let present = |p: &FsPath| !matches!(std::fs::metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
                if present(&flat) {
                    Some((flat, child_dir.join(&**name)))
                } else if present(&nested) {
                    Some((nested, child_dir.join(&**name)))
                } else {
                    let shown = self.db.display_path(&self.map.files[file as usize].0);
                    let msg = format!(
                        "file not found for module `{name}` (looked for `{}` and `{}`)",
                        self.db.display_path(&flat),
                        self.db.display_path(&nested)
                    );
                    self.map
                        .diagnostics
                        .push(diag(shown, pos, Severity::Error, msg));
                    None
                }
            }
        };
        if let Some((f, dir)) = found {
            let shown = self.db.display_path(&self.map.files[file as usize].0);
            // Anything but a regular file is refused at the `mod` line,
            // before anything opens it (opening a FIFO blocks until a
            // writer comes): a directory, a FIFO, a socket, a device, a
            // symlink loop, a path that cannot be followed.
            let refused = match std::fs::metadata(&f) {
                Ok(meta) if meta.is_file() => None,
                Ok(meta) if meta.is_dir() => Some("is a directory".to_string()),
                Ok(meta) => Some(format!(
                    "is {}, not a regular file",
                    crate::source::file_kind(&meta)
                )),
                // Missing (a `#[path]` to nothing): reading reports it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(format!("cannot be read: {e}")),
            };
            if let Some(why) = refused {
                let msg = format!(
                    "cannot load module `{name}`: `{}` {why}",
                    self.db.display_path(&f)
                );
                self.map
                    .diagnostics
                    .push(diag(shown, pos, Severity::Error, msg));
                return;
            }
            let canonical = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if let Some(&owner) = self.loaded.get(&canonical) {
                // The file of this module or of one of its ancestors: a
                // circular module, as rustc reports it; else a second
                // `#[path]` to a file loaded elsewhere.
                let circular =
                    std::iter::successors(Some(module), |&m| self.map.modules[m as usize].parent)
                        .any(|m| m == owner);
                let (severity, msg) = if circular {
                    (
                        Severity::Error,
                        format!(
                            "circular modules: `{shown}` -> `{}`",
                            self.db.display_path(&f)
                        ),
                    )
                } else {
                    (
                        Severity::Warning,
                        format!(
                            "file `{}` is already loaded as another module; not loaded again",
                            self.db.display_path(&f)
                        ),
                    )
                };
                self.map.diagnostics.push(diag(shown, pos, severity, msg));
                return;
            }
            self.loaded.insert(canonical, module);
            next.push(FileJob {
                file: f,
                module,
                child_dir: dir,
            });
        }
    }
}
