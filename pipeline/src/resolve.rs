//! Path resolution over finished and in-progress def maps.
//!
//! A path's first segment is `crate`, `self`, `super`, a name in the
//! module's scope, a crate of the extern prelude (dependencies and
//! `extern crate` items of the root), a builtin crate (std, core, alloc,
//! proc_macro, test: external) or a primitive integer type; later segments
//! look into module and enum scopes, of this crate or of a dependency's
//! finished def map, and a last segment that names no scope entry may name
//! a method of a type or trait (`Type::new`).

use crate::crate_graph::CrateId;
use crate::db::DefId;
use crate::def_map::{Binding, DefData, DefKind, DefMap, Ns, PathRes, Res, Vis, ALL_NS};
use crate::item_tree::{IntTy, Path};

/// Crates that are always present and never analyzed.
const BUILTIN_CRATES: [&str; 5] = ["std", "core", "alloc", "proc_macro", "test"];

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
    pub(crate) fn visible(&self, owner: CrateId, vis: Vis, module: u32) -> bool {
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

    /// The narrower of an import's visibility and its source binding's
    /// (a glob re-export never makes a name more visible than it was). Both
    /// are visible from the importing module, so one contains the other.
    pub(crate) fn narrower(&self, import: Vis, source: Vis) -> Vis {
        match (import, source) {
            (Vis::Public, v) | (v, Vis::Public) => v,
            (Vis::In(a), Vis::In(b)) => {
                // The deeper of the two modules is the narrower scope.
                let mut m = Some(b);
                while let Some(cur) = m {
                    if cur == a {
                        return Vis::In(b);
                    }
                    m = self.modules[cur as usize].parent;
                }
                Vis::In(a)
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
        let scope_module = if import && self.edition_2015 {
            0
        } else {
            module
        };
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
                    return PathRes::Def(DefId {
                        krate: k,
                        index: *f,
                    });
                }
            }
        }
        PathRes::Unresolved
    }

    /// A named import's target in each namespace (`None`: not found there).
    pub(crate) fn resolve_import(&self, module: u32, path: &Path) -> [Option<Res>; 3] {
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
                return [
                    path_to_res(self.resolve_path(module, path, Ns::Types, true)),
                    None,
                    None,
                ];
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
