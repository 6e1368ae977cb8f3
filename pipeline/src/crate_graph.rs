//! The crate graph: which crates `weft analyze` reads, their roots, and how
//! they name each other.
//!
//! - A directory with a `Cargo.toml` is read through `cargo metadata`: its
//!   workspace members (or, for a member's own directory, that package), and
//!   with `--deps` every package reachable from them
//!   through normal dependencies, resolved for the host platform
//!   (`--filter-platform`). Without `--deps`, `cargo metadata --no-deps` is
//!   used and dependencies are only known by name: paths into them are
//!   external. One crate per package: its library target, else its first
//!   binary target by name.
//! - A directory without a manifest is one crate rooted at `src/lib.rs` or
//!   `src/main.rs`; a `.rs` file is a crate root itself.
//!
//! Crates are sorted by `(name, version, root file)`, and a [`CrateId`] is an
//! index in that order, so ids do not depend on `cargo`'s output order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cargo_metadata::{DependencyKind, Edition, MetadataCommand, TargetKind};

use crate::item_tree::Name;

/// Index of a crate in [`CrateGraph::crates`].
pub type CrateId = u32;

/// One crate to analyze.
#[derive(Debug, Clone)]
pub struct CrateData {
    /// The crate's name as used in paths (`-` replaced by `_`).
    pub name: Name,
    /// Package version, when the crate comes from a manifest.
    pub version: Option<String>,
    /// Crate root file.
    pub root_file: PathBuf,
    /// Edition 2015 (its `use` paths are relative to the crate root).
    pub edition_2015: bool,
    /// Dependencies by the name the crate uses for them, sorted by name;
    /// `None` when the dependency is not analyzed (external).
    pub deps: Vec<(Name, Option<CrateId>)>,
    /// Whether this is a member of the analyzed workspace (or the only crate).
    pub is_member: bool,
}

/// All crates of one analysis.
#[derive(Debug, Clone)]
pub struct CrateGraph {
    /// Crates in id order.
    pub crates: Vec<CrateData>,
    /// Directory that reported paths are relative to.
    pub display_root: PathBuf,
}

/// Why the input cannot be analyzed at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path does not exist or cannot be read.
    #[error("cannot read `{path}`: {message}")]
    Unreadable {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// The path is neither a crate directory nor a `.rs` file.
    #[error("`{0}` is not a crate: expected a directory with `Cargo.toml`, `src/lib.rs` or `src/main.rs`, or a `.rs` file")]
    NotACrate(String),
    /// `cargo metadata` failed.
    #[error("`cargo metadata` failed for `{path}`: {message}")]
    Metadata {
        /// The manifest.
        path: String,
        /// Cargo's error.
        message: String,
    },
}

fn crate_name(s: &str) -> Name {
    Arc::from(s.replace('-', "_"))
}

impl CrateGraph {
    /// Reads the crate graph for `path`.
    pub fn load(path: &Path, deps: bool) -> Result<CrateGraph, InputError> {
        let meta = std::fs::metadata(path).map_err(|e| InputError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if meta.is_file() {
            if path.extension().is_none_or(|e| e != "rs") {
                return Err(InputError::NotACrate(path.display().to_string()));
            }
            std::fs::File::open(path).map_err(|e| InputError::Unreadable {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            return Ok(single(path, stem.as_deref().unwrap_or("main")));
        }
        if !meta.is_dir() {
            // A FIFO, socket or device (`/dev/null`): never opened.
            return Err(InputError::Unreadable {
                path: path.display().to_string(),
                message: format!(
                    "it is {}, not a directory or a `.rs` file",
                    crate::source::file_kind(&meta)
                ),
            });
        }
        std::fs::read_dir(path).map_err(|e| InputError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let manifest = path.join("Cargo.toml");
        if manifest.is_file() {
            return from_metadata(&manifest, deps);
        }
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir_name = abs
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "main".to_string());
        for root in ["src/lib.rs", "src/main.rs"] {
            let file = path.join(root);
            if file.exists() {
                let mut g = single(&file, &dir_name);
                g.display_root = path.to_path_buf();
                return Ok(g);
            }
        }
        Err(InputError::NotACrate(path.display().to_string()))
    }

    /// A crate by id.
    pub fn krate(&self, id: CrateId) -> &CrateData {
        &self.crates[id as usize]
    }

    /// `file` relative to the display root when it lies below it.
    pub fn display_path(&self, file: &Path) -> String {
        use std::path::Component;
        if !file.components().any(|c| c == Component::ParentDir) {
            return file
                .strip_prefix(&self.display_root)
                .unwrap_or(file)
                .display()
                .to_string();
        }
        // `src/../../x.rs` (a `#[path]` out of the crate): resolve the `..`
        // first, so that a file outside the root shows as absolute, as the
        // README says, and one inside it relative.
        let file = lexically_normal(file);
        let root = lexically_normal(&self.display_root);
        match file.strip_prefix(&root) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => file.display().to_string(),
        }
    }
}

/// `path` made absolute, with `.` and `..` resolved lexically (without
/// following symlinks, as rustc's module paths do).
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn single(file: &Path, name: &str) -> CrateGraph {
    let display_root = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    CrateGraph {
        crates: vec![CrateData {
            name: crate_name(name),
            version: None,
            root_file: file.to_path_buf(),
            edition_2015: false,
            deps: Vec::new(),
            is_member: true,
        }],
        display_root,
    }
}

fn host_triple() -> Option<String> {
    let out =
        std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .arg("-vV")
            .output()
            .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
}

/// The target analyzed for a package: its library, else its first binary.
fn crate_target(pkg: &cargo_metadata::Package) -> Option<&cargo_metadata::Target> {
    let lib_kinds = [
        TargetKind::Lib,
        TargetKind::RLib,
        TargetKind::DyLib,
        TargetKind::CDyLib,
        TargetKind::StaticLib,
        TargetKind::ProcMacro,
    ];
    pkg.targets
        .iter()
        .find(|t| t.kind.iter().any(|k| lib_kinds.contains(k)))
        .or_else(|| {
            pkg.targets
                .iter()
                .filter(|t| t.kind.contains(&TargetKind::Bin))
                .min_by(|a, b| a.name.cmp(&b.name))
        })
}

/// Adds every declared dependency (any kind) not yet in `list` as external.
fn add_external_deps(
    pkg: &cargo_metadata::Package,
    list: &mut Vec<(Name, Option<cargo_metadata::PackageId>)>,
) {
    for d in &pkg.dependencies {
        let name = crate_name(d.rename.as_deref().unwrap_or(&d.name));
        if !list.iter().any(|(n, _)| *n == name) {
            list.push((name, None));
        }
    }
}

fn from_metadata(manifest: &Path, deps: bool) -> Result<CrateGraph, InputError> {
    let mut cmd = MetadataCommand::new();
    cmd.manifest_path(manifest);
    if deps {
        if let Some(host) = host_triple() {
            cmd.other_options(vec!["--filter-platform".to_string(), host]);
        }
    } else {
        cmd.no_deps();
    }
    let meta = cmd.exec().map_err(|e| InputError::Metadata {
        path: manifest.display().to_string(),
        message: e.to_string(),
    })?;
    let pkgs: BTreeMap<_, _> = meta.packages.iter().map(|p| (p.id.clone(), p)).collect();
    // The workspace root: every member. A member's own directory: that package.
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let asked = canonical(manifest);
    let mut members: BTreeSet<_> = meta
        .workspace_members
        .iter()
        .filter(|id| canonical(pkgs[*id].manifest_path.as_std_path()) == asked)
        .cloned()
        .collect();
    if members.is_empty()
        || canonical(meta.workspace_root.join("Cargo.toml").as_std_path()) == asked
    {
        members = meta.workspace_members.iter().cloned().collect();
    }

    // Packages to analyze, with their normal dependencies (extern name, package id).
    let mut selected: BTreeMap<
        cargo_metadata::PackageId,
        Vec<(Name, Option<cargo_metadata::PackageId>)>,
    > = BTreeMap::new();
    match (&meta.resolve, deps) {
        (Some(resolve), true) => {
            let nodes: BTreeMap<_, _> = resolve.nodes.iter().map(|n| (n.id.clone(), n)).collect();
            let mut stack: Vec<_> = members.iter().cloned().collect();
            while let Some(id) = stack.pop() {
                if selected.contains_key(&id) {
                    continue;
                }
                let mut list = Vec::new();
                if let Some(node) = nodes.get(&id) {
                    for d in &node.deps {
                        if d.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal) {
                            list.push((crate_name(&d.name), Some(d.pkg.clone())));
                            stack.push(d.pkg.clone());
                        }
                    }
                }
                // Declared dependencies that are not resolved for this host,
                // not enabled (`cfg(loom)`, optional features), or only for
                // tests (`#[cfg(test)]` code is analyzed too) are external.
                if let Some(pkg) = pkgs.get(&id) {
                    add_external_deps(pkg, &mut list);
                }
                selected.insert(id, list);
            }
        }
        _ => {
            for id in &members {
                let pkg = pkgs[id];
                let mut list = Vec::new();
                for d in &pkg.dependencies {
                    if d.kind != DependencyKind::Normal {
                        continue;
                    }
                    let extern_name = crate_name(d.rename.as_deref().unwrap_or(&d.name));
                    // A dependency on another workspace member is analyzed too.
                    let member = members
                        .iter()
                        .find(|m| pkgs[*m].name == d.name && d.path.is_some())
                        .cloned();
                    list.push((extern_name, member));
                }
                add_external_deps(pkg, &mut list);
                selected.insert(id.clone(), list);
            }
        }
    }

    // Build crates, sort, assign ids.
    let mut built = Vec::new();
    for (id, dep_list) in &selected {
        let pkg = pkgs[id];
        let Some(target) = crate_target(pkg) else {
            continue;
        };
        built.push((id.clone(), pkg, target, dep_list));
    }
    built.sort_by(|a, b| {
        (crate_name(&a.2.name), &a.1.version, &a.2.src_path).cmp(&(
            crate_name(&b.2.name),
            &b.1.version,
            &b.2.src_path,
        ))
    });
    let ids: BTreeMap<_, CrateId> = built
        .iter()
        .enumerate()
        .map(|(i, b)| (b.0.clone(), i as CrateId))
        .collect();
    let crates = built
        .iter()
        .map(|(id, pkg, target, dep_list)| {
            let mut deps: Vec<(Name, Option<CrateId>)> = dep_list
                .iter()
                .map(|(n, p)| (n.clone(), p.as_ref().and_then(|p| ids.get(p).copied())))
                .collect();
            deps.sort();
            deps.dedup_by(|a, b| a.0 == b.0);
            CrateData {
                name: crate_name(&target.name),
                version: Some(pkg.version.to_string()),
                root_file: target.src_path.clone().into_std_path_buf(),
                edition_2015: target.edition == Edition::E2015,
                deps,
                is_member: members.contains(id),
            }
        })
        .collect();
    Ok(CrateGraph {
        crates,
        display_root: meta.workspace_root.into_std_path_buf(),
    })
}
